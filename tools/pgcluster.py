"""A throwaway PostgreSQL cluster in a temporary directory, on a free loopback port.

The one place that starts PostgreSQL for the tests, ``make fleet``, the benchmarks and the chaos
suite. It uses the server binaries of Debian's ``postgresql`` packages (``initdb``, ``pg_ctl``),
found on ``PATH``, in ``$AGENTGW_PG_BIN`` or under ``/usr/lib/postgresql/*/bin``.

``initdb`` refuses to run as root, and CI runs as root: then the cluster runs as the ``postgres``
system user (created by the Debian package) through ``runuser``, and its directory is handed to
that user. As any other user it runs as that user. Authentication is ``trust`` on loopback only:
the cluster lives for one run and is deleted afterwards.

Run ``python -m tools.pgcluster`` to start one, print its URL and keep it until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cluster", "PostgresUnavailable", "find_bin_dir", "throwaway_cluster"]

SUPERUSER = "agentgw"
"""The cluster's superuser (``initdb -U``); every URL of the cluster connects as it."""

_SYSTEM_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries were found on this machine."""


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster."""

    host: str
    port: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``database`` on this cluster."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with ``psql`` (for set-up steps such as CREATE DATABASE); its output."""
        psql = find_bin_dir() / "psql"
        command = [str(psql) if psql.exists() else "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"]
        command += ["-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (optionally from ``template``) and return its URL."""
        clause = f' TEMPLATE "{template}"' if template else ""
        self.psql(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; :class:`PostgresUnavailable` if none."""
    explicit = os.environ.get("AGENTGW_PG_BIN")
    candidates = [Path(explicit)] if explicit else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql "
        "(or set AGENTGW_PG_BIN to their directory)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _as_server_user(command: list[str]) -> list[str]:
    """``command`` run as the ``postgres`` system user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", _SYSTEM_USER, "--", *command]


def _run(command: list[str], *, timeout: float) -> None:
    done = subprocess.run(
        _as_server_user(command), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )


@contextlib.contextmanager
def throwaway_cluster(
    *, port: int | None = None, settings: dict[str, str] | None = None, keep: bool = False
) -> Iterator[Cluster]:
    """Start a cluster on 127.0.0.1 (a free port unless ``port``), yield it, stop and delete it.

    ``settings`` are extra server settings (``-c name=value``). Durability is off (``fsync``,
    ``synchronous_commit``): the cluster is thrown away, and the tests measure behaviour, not
    disks. ``keep`` leaves the directory in place (to read its log after a failure).
    """
    bin_dir = find_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="agentgw-pg-"))
    data_dir = root / "data"
    host = "127.0.0.1"
    chosen = port or free_port(host)
    if os.geteuid() == 0:
        shutil.chown(root, user=_SYSTEM_USER)
    options = {
        "listen_addresses": host,
        "port": str(chosen),
        "unix_socket_directories": str(root),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "300",
        "shared_buffers": "128MB",
        **(settings or {}),
    }
    flags = " ".join(f"-c {name}={value}" for name, value in options.items())
    log_file = root / "server.log"
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--no-sync",
                "-E",
                "UTF8",
            ],
            timeout=120,
        )
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-l",
                str(log_file),
                "-o",
                flags,
                "-w",
                "-t",
                "60",
                "start",
            ],
            timeout=90,
        )
        try:
            yield Cluster(host=host, port=chosen, data_dir=data_dir)
        finally:
            with contextlib.suppress(Exception):
                _run(
                    [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
                    timeout=60,
                )
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _main() -> int:
    """Start a cluster, print its URL, and keep it until Ctrl-C or SIGTERM."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else None
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with throwaway_cluster(port=port) as cluster:
        cluster.psql("CREATE DATABASE agentgw")
        print(cluster.url("agentgw"), flush=True)
        while not stop:
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
