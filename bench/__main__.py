"""``python -m bench [--only 1,3] [--quick] [--profile] [--strict]``: run the scenarios, print the
table, write ``bench/results/latest.json``.

Exit status: 0 when every scenario ran (missed targets are in the table), 2 when one broke,
1 with ``--strict`` when a target was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.config import FULL, QUICK, REPO_ROOT, RESULTS_DIR
from bench.processes import PY_SPY, PYTHON, Processes, start_emulator, stop_everything_now
from bench.report import Report
from bench.scenarios.common import Context, register_agent

SCENARIOS: dict[int, tuple[str, str]] = {
    1: ("unary overhead", "bench.scenarios.unary"),
    2: ("upstream overhead", "bench.scenarios.upstream"),
    3: ("event fan-out", "bench.scenarios.fanout"),
    4: ("ingest", "bench.scenarios.ingest"),
    5: ("stream capacity", "bench.scenarios.capacity"),
    6: ("resume", "bench.scenarios.resume"),
    7: ("fleet: two replicas on PostgreSQL", "bench.scenarios.fleet"),
    8: ("growth: a full ledger against an empty one", "bench.scenarios.growth"),
}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated scenario numbers, e.g. 3,5")
    parser.add_argument("--quick", action="store_true", help="smaller counts and durations")
    parser.add_argument(
        "--profile", action="store_true", help="sample the servers with py-spy (perturbs the numbers)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--growth-sessions", type=int, default=None, help="scenario 8 (default 1,000,000)")
    parser.add_argument("--growth-events", type=int, default=None, help="scenario 8 (default 10,000,000)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    return parser.parse_args(argv)


def _git() -> dict[str, Any]:
    """The commit measured, and whether service/ differs from it (others edit it concurrently)."""

    def run(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
            return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": run("rev-parse", "HEAD"),
        "service_dirty": bool(run("status", "--porcelain", "service")),
    }


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def _run(args: argparse.Namespace, report: Report) -> dict[str, Any]:
    chosen = sorted(SCENARIOS) if not args.only else [int(x) for x in args.only.split(",") if x.strip()]
    params = QUICK if args.quick else FULL
    if args.growth_sessions is not None:
        params = dataclasses.replace(params, growth_sessions=args.growth_sessions)
    if args.growth_events is not None:
        params = dataclasses.replace(params, growth_events=args.growth_events)
    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    profiles: list[str] = []
    with tempfile.TemporaryDirectory(prefix="agentgw-bench-") as tmp:
        procs = Processes(Path(tmp))
        try:
            emulator, emulator_url = await start_emulator(procs)
            await register_agent(emulator_url)
            ctx = Context(
                params, procs, emulator_url, Path(tmp), report, args.profile, profiles, emulator.pid
            )
            for number in chosen:
                title, module = SCENARIOS[number]
                print(f"\n== scenario {number}: {title}", flush=True)
                started = time.monotonic()
                runner: Callable[[Context], Awaitable[None]] = importlib.import_module(module).run
                try:
                    await runner(ctx)
                except Exception as exc:  # one broken scenario must not hide the others
                    traceback.print_exc()
                    errors[str(number)] = f"{type(exc).__name__}: {exc}"
                timings[str(number)] = round(time.monotonic() - started, 1)
        finally:
            await procs.close()
    return {"scenario_seconds": timings, "errors": errors, "profiles": profiles}


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.profile and not PY_SPY.exists():
        print(
            f"--profile needs py-spy in the venv: {Path(PYTHON).parent}/pip install py-spy", file=sys.stderr
        )
        return 2
    report = Report()
    started = time.monotonic()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_everything_now)
    outcome = asyncio.run(_run(args, report))
    wall = time.monotonic() - started
    meta = {
        "machine": machine(),
        "git": _git(),
        "quick": args.quick,
        "profile": args.profile,
        "only": args.only,
        "wall_seconds": round(wall, 1),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **outcome,
    }
    report.write(args.output, meta)
    m = meta["machine"]
    print(f"\n{report.table()}\n")
    g = meta["git"]
    print(f"wall time {wall:.0f} s; {m['nproc']} x {m['cpu_model']}; Python {m['python']}")
    print(
        f"measured commit {g['commit'][:12]}{' + uncommitted service/ changes' if g['service_dirty'] else ''}"
    )
    print(f"results: {args.output}")
    if outcome.get("errors"):
        print(f"BROKEN scenarios: {outcome['errors']}")
        return 2
    failed = report.failed()
    print(f"{len(failed)} of {len(report.rows)} rows missed their target")
    if outcome.get("profiles"):
        from bench.profiles import summarize

        for profile in outcome["profiles"]:
            print(f"\n{summarize(Path(profile))}")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
