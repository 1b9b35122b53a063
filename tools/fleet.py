"""A fleet on one machine: a throwaway PostgreSQL, one ZEGO emulator, N agentgw replicas.

The one harness that the multi-process tests (``tests/fleet``), ``make fleet``, the chaos fleet
world (``chaos.fleet``) and the fleet benchmarks start processes with. It adds nothing of its own
to process handling: children come from ``bench.processes`` (own process group, log file,
killed on exit, when the orchestrator dies, and on its SIGINT/SIGTERM), PostgreSQL from
``tools.pgcluster``. What it adds is the topology:

* one PostgreSQL database that every replica's ``AGENTGW_DATABASE_URL`` names;
* one emulator process, which (like ZEGO) posts callbacks to one URL: replica A's, unless
  :meth:`Fleet.point_callbacks` moves it (what a load balancer's health check does when A dies);
* N replicas (``python -m service``), each on its own loopback gRPC and HTTP port, all with the
  same ZEGO credentials and limits.

``python -m tools.fleet`` (``make fleet``) starts one and keeps it until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import string
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.config import APP_ID, CALLBACK_SECRET, SERVER_SECRET
from bench.processes import Proc, Processes, free_port, wait_ready
from tools.pgcluster import Cluster, PostgresUnavailable, throwaway_cluster

__all__ = [
    "EMULATOR_MODULE",
    "EmulatorSpec",
    "Fleet",
    "PostgresUnavailable",
    "Replica",
    "open_fleet",
    "postgres",
]

EMULATOR_MODULE = "zego_emulator"
"""The emulator's ``python -m`` module: the one place to change when it moves (to ``zego_emulator``)."""

DATABASE_URL_ENV = "AGENTGW_DATABASE_URL"
CALLBACK_PATH = "/v1/zego/callbacks"
REPLICA_NAMES = string.ascii_uppercase


@dataclass(frozen=True)
class EmulatorSpec:
    """Which emulator process to run: ``python -m module --port P <args>``.

    ``callback_flag`` is the option that takes the callback URL. The default is the bundled
    emulator with the fleet's credentials; ``chaos.fleet`` passes ``chaos.emulator`` (the journaled
    one) with its own arguments.
    """

    module: str = EMULATOR_MODULE
    args: tuple[str, ...] = ()
    callback_flag: str = "--callback-url"
    env: Mapping[str, str] = field(default_factory=dict)


def bundled_emulator(*, cap: int = 10, time_scale: float = 1.0, workdir: Path | None = None) -> EmulatorSpec:
    """The bundled emulator with the fleet's credentials, ``cap`` instances per pool, no rate limit."""
    args = ["--voice-limit", str(cap), "--dh-limit", str(cap), "--rate-limit", "100000"]
    args += ["--time-scale", str(time_scale), "--latency-seed", "7"]
    if workdir is not None:
        args += ["--secrets-file", str(workdir / "emulator-secrets.env")]
    return EmulatorSpec(
        args=tuple(args),
        env={
            "AGENTGW_EMULATOR_APP_ID": str(APP_ID),
            "AGENTGW_EMULATOR_SERVER_SECRET": SERVER_SECRET,
            "AGENTGW_EMULATOR_CALLBACK_SECRET": CALLBACK_SECRET,
        },
    )


@dataclass
class Replica:
    """One agentgw replica: fixed ports and settings, and the process that runs it now (or None)."""

    name: str
    grpc_port: int
    http_port: int
    env: dict[str, str]
    proc: Proc | None = None
    starts: int = 0

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def callback_url(self) -> str:
        return self.http_url + CALLBACK_PATH

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()


async def _http_ok(url: str) -> bool:
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
        return (await client.get(url)).status_code == 200


@dataclass
class Fleet:
    """The running fleet; every process is stopped when :func:`open_fleet` exits."""

    procs: Processes
    workdir: Path
    database_url: str
    emulator: Proc | None
    """The emulator process (None when the fleet uses one it did not start)."""
    emulator_url: str
    replicas: list[Replica]
    callback_target: Replica | None = None
    cluster: Cluster | None = None
    """The throwaway cluster, when the fleet started its own."""

    def __getitem__(self, name: str) -> Replica:
        for replica in self.replicas:
            if replica.name == name:
                return replica
        raise KeyError(name)

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive()]

    async def start(self, replica: Replica) -> None:
        """Start ``replica``'s process on its ports; wait until its /readyz answers 200."""
        if replica.alive():
            raise RuntimeError(f"replica {replica.name} is already running")
        replica.starts += 1
        name = f"agentgw-{replica.name}{replica.starts}"
        replica.proc = await self.procs.spawn(name, ["-m", "service"], env=replica.env)
        await wait_ready(replica.proc, lambda: _http_ok(replica.http_url + "/readyz"), name)

    async def stop(self, replica: Replica, sig: signal.Signals = signal.SIGTERM) -> int | None:
        """Send ``sig`` to the replica's process group (SIGKILL: no warning at all), wait for it to
        end (SIGKILL after 30 s); its exit code, None if it was not running."""
        proc, replica.proc = replica.proc, None
        if proc is None:
            return None
        return await self.procs.signal_and_wait(proc, sig)

    async def kill(self, replica: Replica) -> int | None:
        """kill -9 the replica."""
        return await self.stop(replica, signal.SIGKILL)

    async def point_callbacks(self, replica: Replica) -> None:
        """Make the emulator post its callbacks to ``replica`` (as a load balancer would route them)."""
        async with httpx.AsyncClient(base_url=self.emulator_url, timeout=5, trust_env=False) as admin:
            response = await admin.post("/_emulator/callbacks", json={"url": replica.callback_url})
            response.raise_for_status()
        self.callback_target = replica

    def describe(self) -> dict[str, Any]:
        """Where everything is (printed by ``make fleet``, read by its test)."""
        postmaster = None
        if self.cluster is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                postmaster = int((self.cluster.data_dir / "postmaster.pid").read_text().split()[0])
        return {
            "database_url": self.database_url,
            "postgres_pid": postmaster,
            "emulator_url": self.emulator_url,
            "emulator_pid": self.emulator.pid if self.emulator else None,
            "callback_url": self.callback_target.callback_url if self.callback_target else None,
            "replicas": [
                {
                    "name": r.name,
                    "grpc": r.grpc_target,
                    "http": r.http_url,
                    "pid": r.pid,
                }
                for r in self.replicas
            ],
        }


def replica_env(
    *,
    database_url: str,
    emulator_url: str,
    grpc_port: int,
    http_port: int,
    db_path: Path,
    cap: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The settings of one replica: shared ledger, shared ZEGO, its own ports."""
    return {
        "AGENTGW_ZEGO_APP_ID": str(APP_ID),
        "AGENTGW_ZEGO_SERVER_SECRET": SERVER_SECRET,
        "AGENTGW_ZEGO_CALLBACK_SECRET": CALLBACK_SECRET,
        "AGENTGW_ZEGO_API_BASE": emulator_url,
        "AGENTGW_ZEGO_RATE_PER_SECOND": "1000",
        "AGENTGW_ZEGO_TIMEOUT_SECONDS": "5",
        DATABASE_URL_ENV: database_url,
        # Never used while the database URL is set; a per-replica path keeps a misconfigured
        # replica from sharing a SQLite file with another (the bug this issue is about).
        "AGENTGW_DB_PATH": str(db_path),
        "AGENTGW_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
        "AGENTGW_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "AGENTGW_VOICE_LIMIT": str(cap),
        "AGENTGW_DIGITAL_HUMAN_LIMIT": str(cap),
        "AGENTGW_SHUTDOWN_GRACE_SECONDS": "2",
        "AGENTGW_END_CONFIRM_SECONDS": "0.5",
        "AGENTGW_HEARTBEAT_SECONDS": "1",
        "AGENTGW_LOG_LEVEL": "INFO",
        **(extra or {}),
    }


@contextlib.contextmanager
def postgres(database: str = "agentgw", *, port: int | None = None) -> Iterator[tuple[str, Cluster]]:
    """A throwaway cluster (``tools.pgcluster``) with one database; yields its URL and the cluster."""
    with throwaway_cluster(port=port) as cluster:
        yield cluster.create_database(database), cluster


@contextlib.asynccontextmanager
async def open_fleet(
    procs: Processes,
    workdir: Path,
    *,
    replicas: int = 2,
    database_url: str | None = None,
    grpc_ports: Sequence[int] = (),
    http_ports: Sequence[int] = (),
    emulator_port: int = 0,
    pg_port: int | None = None,
    cap: int = 10,
    emulator: EmulatorSpec | None = None,
    emulator_url: str | None = None,
    gateway_env: Mapping[str, str] | None = None,
    start: bool = True,
) -> AsyncIterator[Fleet]:
    """Start PostgreSQL (unless ``database_url``), the emulator and ``replicas`` replicas.

    Ports that are not given (or 0) are free loopback ports. The emulator posts its callbacks to
    replica A. With ``emulator_url`` the replicas use that emulator (the benchmarks' own, which
    sends no callbacks) and none is started. With ``start=False`` the replicas are configured but
    not started (a test starts them itself). Everything is stopped on exit, newest first, then
    PostgreSQL.
    """
    os.makedirs(workdir, exist_ok=True)
    with contextlib.ExitStack() as stack:
        cluster: Cluster | None = None
        if database_url is None:
            database_url, cluster = await asyncio.to_thread(stack.enter_context, postgres(port=pg_port))
        fleet = await _start(
            procs,
            workdir,
            database_url=database_url,
            count=replicas,
            grpc_ports=grpc_ports,
            http_ports=http_ports,
            emulator_port=emulator_port,
            cap=cap,
            emulator=emulator or bundled_emulator(cap=cap, workdir=workdir),
            emulator_url=emulator_url,
            gateway_env=gateway_env,
        )
        fleet.cluster = cluster
        try:
            if start:
                # The first alone (it applies the migrations), then the rest at once.
                await fleet.start(fleet.replicas[0])
                await asyncio.gather(*(fleet.start(r) for r in fleet.replicas[1:]))
            yield fleet
        finally:
            for replica in reversed(fleet.replicas):
                with contextlib.suppress(Exception):
                    await fleet.stop(replica, signal.SIGTERM)
            if fleet.emulator is not None:
                await procs.stop(fleet.emulator)
            if cluster is not None:
                # Stopping the cluster blocks for a moment: off the event loop.
                await asyncio.to_thread(stack.close)


async def _start(
    procs: Processes,
    workdir: Path,
    *,
    database_url: str,
    count: int,
    grpc_ports: Sequence[int],
    http_ports: Sequence[int],
    emulator_port: int,
    cap: int,
    emulator: EmulatorSpec,
    emulator_url: str | None,
    gateway_env: Mapping[str, str] | None,
) -> Fleet:
    def port(given: Sequence[int], i: int) -> int:
        return given[i] if i < len(given) and given[i] else free_port()

    replicas = []
    for i in range(count):
        grpc_port, http_port = port(grpc_ports, i), port(http_ports, i)
        name = REPLICA_NAMES[i]
        replicas.append(Replica(name, grpc_port, http_port, {}))
    given_emulator = emulator_url
    emulator_port = emulator_port or free_port()
    emulator_url = emulator_url or f"http://127.0.0.1:{emulator_port}"
    for replica in replicas:
        replica.env = replica_env(
            database_url=database_url,
            emulator_url=emulator_url,
            grpc_port=replica.grpc_port,
            http_port=replica.http_port,
            db_path=workdir / f"unused-{replica.name}.db",
            cap=cap,
            extra=gateway_env,
        )
    if given_emulator is not None:
        return Fleet(procs, workdir, database_url, None, emulator_url, replicas)
    args = ["-m", emulator.module, "--port", str(emulator_port), *emulator.args]
    args += [emulator.callback_flag, replicas[0].callback_url]
    proc = await procs.spawn("emulator", args, env=emulator.env)
    await wait_ready(proc, lambda: _http_ok(emulator_url + "/_emulator/state"), "emulator")
    return Fleet(procs, workdir, database_url, proc, emulator_url, replicas, callback_target=replicas[0])


# -- make fleet ------------------------------------------------------------------------------------


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip()]


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fleet",
        description="A throwaway PostgreSQL, the ZEGO emulator and agentgw replicas on loopback, "
        "until Ctrl-C.",
    )
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--grpc-ports", type=_ports, default=[50051, 50052], help="comma-separated; 0: free")
    parser.add_argument("--http-ports", type=_ports, default=[8080, 8081], help="comma-separated; 0: free")
    parser.add_argument("--emulator-port", type=int, default=8090, help="0: a free port")
    parser.add_argument("--cap", type=int, default=10, help="instances per pool, at ZEGO and in agentgw")
    parser.add_argument("--workdir", type=Path, default=Path("var/fleet"), help="process logs")
    parser.add_argument("--json", action="store_true", help="print where everything is as one JSON line")
    return parser.parse_args(argv)


def _banner(fleet: Fleet) -> str:
    a = fleet.replicas[0]
    lines = [
        "agentgw fleet ready (Ctrl-C stops everything)",
        f"  PostgreSQL  {fleet.database_url}",
        f"  emulator    {fleet.emulator_url}  (ZEGO stand-in; posts every callback to replica {a.name})",
    ]
    for r in fleet.replicas:
        lines.append(f"  replica {r.name}   gRPC {r.grpc_target}   HTTP {r.http_url}   pid {r.pid}")
    lines += [
        f"  callbacks   {a.callback_url}  (one URL, as at ZEGO; in production a load balancer)",
        f"  logs        {fleet.workdir}/",
        "try:",
        f"  .venv/bin/agentgw --target {a.grpc_target} sessions list",
        f"  grpcurl -plaintext {fleet.replicas[-1].grpc_target} list",
    ]
    return "\n".join(lines)


async def _serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    procs = Processes(args.workdir.resolve())
    try:
        async with open_fleet(
            procs,
            args.workdir.resolve(),
            replicas=args.replicas,
            grpc_ports=args.grpc_ports,
            http_ports=args.http_ports,
            emulator_port=args.emulator_port,
            cap=args.cap,
        ) as fleet:
            print(json.dumps(fleet.describe()) if args.json else _banner(fleet), flush=True)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                for replica in fleet.replicas:
                    if replica.proc is not None and not replica.alive():
                        print(f"replica {replica.name} exited:\n{replica.proc.log_tail()}", file=sys.stderr)
                        replica.proc = None
            print("stopping the fleet", file=sys.stderr, flush=True)
    finally:
        await procs.close()
    print("fleet stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        return asyncio.run(_serve(args))
    except PostgresUnavailable as exc:
        print(f"make fleet: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
