"""``python -m chaos [--only 1,3] [--quick | --smoke] [--strict] [--gateway-env K=V ...]``.

Runs the scenarios (``chaos.scenarios``; 5 and 6, the fleet worlds, in ``chaos.fleet``), prints the
table, writes ``bench/results/chaos.json``.
Exit status: 0 when every scenario ran (missed targets are in the table), 2 when one broke, 1
with ``--strict`` when a target was missed.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # gRPC core logs a line for every child process spawned

import argparse
import asyncio
import json
import platform
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.__main__ import _git, machine
from bench.config import RESULTS_DIR
from bench.processes import Processes, stop_everything_now
from chaos.fleet import FLEET_SCENARIOS
from chaos.report import Row, rows_for, table
from chaos.scenarios import FULL, QUICK, SMOKE, Params
from chaos.scenarios import SCENARIOS as SINGLE_PROCESS

SCENARIOS = {**SINGLE_PROCESS, **FLEET_SCENARIOS}
"""The single-process scenarios, then the fleet ones (PostgreSQL and three replicas)."""

OUTPUT = RESULTS_DIR / "chaos.json"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated scenario numbers, e.g. 1,3")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer timings and cycles (about 3 minutes)")
    size.add_argument("--smoke", action="store_true", help="tiny counts: checks the harness, not agentgw")
    parser.add_argument("--settle", type=float, default=None, help="seconds to wait for ZEGO to run nothing")
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra agentgw setting, e.g. AGENTGW_SOMETHING=1 (repeatable)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--workdir", type=Path, default=None, help="keep ledgers and process logs here")
    return parser.parse_args(argv)


async def run(
    numbers: list[int], params: Params, gateway_env: dict[str, str], root: Path
) -> tuple[list[Row], dict[str, Any], list[str]]:
    """Run the scenarios; returns the rows, the raw numbers per world and the errors."""
    procs = Processes(root)
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    errors: list[str] = []
    try:
        for number in numbers:
            title, scenario = SCENARIOS[number]
            print(f"\n[{number}] {title}", flush=True)
            started = time.monotonic()
            try:
                worlds = await scenario(procs, root, params, gateway_env)
            except Exception as exc:  # one broken scenario must not hide the others' numbers
                errors.append(f"scenario {number}: {exc!r}")
                traceback.print_exc()
                continue
            for world, numbers_of_world in worlds.items():
                raw[world] = numbers_of_world
                for row in rows_for(world, numbers_of_world):
                    rows.append(row)
                    print(f"  {world:<16} {row.metric:<34} {row.value:>7g}  {row.verdict}", flush=True)
            print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        await procs.close()
    return rows, raw, errors


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    params = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.settle is not None:
        params = replace(params, settle_seconds=args.settle)
    gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
    numbers = [int(n) for n in args.only.split(",") if n.strip()] or sorted(SCENARIOS)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_everything_now)
    started = time.time()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        rows, raw, errors = asyncio.run(run(numbers, params, gateway_env, args.workdir.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="agentgw-chaos-") as tmp:
            rows, raw, errors = asyncio.run(run(numbers, params, gateway_env, Path(tmp)))
    print("\n" + table(rows))
    failed = [r for r in rows if r.verdict == "FAIL"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rows PASS or info; {len(failed)} FAIL", end="")
    print(f"; {len(errors)} scenario(s) broke: {errors}" if errors else "")
    report = {
        "started": started,
        "seconds": round(time.time() - started, 1),
        "git": _git(),
        "machine": machine() | {"python": platform.python_version()},
        "params": asdict(params),
        "gateway_env": gateway_env,
        "rows": [asdict(r) for r in rows],
        "raw": raw,
        "errors": errors,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")
    if errors:
        return 2
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
