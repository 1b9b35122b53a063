"""Child processes of a run: the emulator, agentgw, the baseline and the load workers.

Every child is started in its own session (so its whole process group can be signalled by its
id), logs to a file under the run's work directory, and is killed when the run ends, whether it
ends well, fails or is interrupted: ``Processes.close`` on the normal path, an ``atexit`` hook as
the last resort.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.config import APP_ID, CALLBACK_SECRET, REPO_ROOT, SERVER_SECRET

__all__ = [
    "PYTHON",
    "PY_SPY",
    "Baseline",
    "Gateway",
    "Proc",
    "Processes",
    "cpu_seconds",
    "free_port",
    "rss_kib",
    "stop_everything_now",
]

PYTHON = sys.executable
PY_SPY = Path(PYTHON).with_name("py-spy")
READY_TIMEOUT_SECONDS = 30.0
STREAM_LIMIT = 256 * 1024 * 1024  # worker results are one JSON line each, possibly large

_LIVE_PIDS: set[int] = set()
_WORKDIRS: set[Path] = set()


def _kill_leftovers() -> None:
    for pid in list(_LIVE_PIDS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


atexit.register(_kill_leftovers)


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the orchestrator dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_everything_now(signum: int, _frame: object) -> None:
    """SIGINT/SIGTERM handler of the orchestrator: kill every child group, then exit at once.

    Unwinding through asyncio instead would depend on every await honouring cancellation
    (Python 3.11's ``wait_for`` can swallow it), and a run must never leave load running.
    """
    _kill_leftovers()
    for workdir in list(_WORKDIRS):
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nbench: {signal.Signals(signum).name}: child processes killed", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """One child process."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.returncode is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                await self.process.wait()
        # Anything the child left in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        _LIVE_PIDS.discard(self.pid)


class Processes:
    """Starts children and guarantees they are all stopped."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        _WORKDIRS.add(workdir)
        self._procs: list[Proc] = []
        self._counter = 0

    async def spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pipes: bool = False,
    ) -> Proc:
        """Start ``python args...`` in the repository root. With ``pipes``, stdin/stdout are pipes."""
        self._counter += 1
        log_path = self.workdir / f"{self._counter:03d}-{name}.log"
        log = log_path.open("wb")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGW_")}
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env.update(env or {})
        process = await asyncio.create_subprocess_exec(
            PYTHON,
            *args,
            cwd=REPO_ROOT,
            env=child_env,
            stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if pipes else log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            limit=STREAM_LIMIT,
        )
        log.close()
        _LIVE_PIDS.add(process.pid)
        proc = Proc(name, process, log_path)
        self._procs.append(proc)
        return proc

    async def signal_and_wait(self, proc: Proc, sig: signal.Signals) -> int | None:
        """Send ``sig`` to ``proc``'s process group (SIGKILL: no warning at all), wait for it to end
        (SIGKILL after 30 s), and forget it; its exit code."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.process.wait(), 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.process.wait()
        code = proc.process.returncode
        await self.stop(proc)
        return code

    async def stop(self, proc: Proc, grace: float = 5.0) -> None:
        await proc.stop(grace)
        if proc in self._procs:
            self._procs.remove(proc)

    async def close(self) -> None:
        """Stop every child, newest first (workers before the servers they talk to)."""
        for proc in reversed(list(self._procs)):
            with contextlib.suppress(Exception):
                await proc.stop(grace=3.0)
        self._procs.clear()


async def wait_ready(proc: Proc, check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it is true; fail early if the process dies."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{what} exited with {proc.process.returncode}:\n{proc.log_tail()}")
        with contextlib.suppress(Exception):
            if await check():
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {READY_TIMEOUT_SECONDS:.0f} s:\n{proc.log_tail()}")


def _http_ok(url: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with httpx.AsyncClient(timeout=1.0) as client:
            return (await client.get(url)).status_code == 200

    return check


async def start_emulator(procs: Processes) -> tuple[Proc, str]:
    """The ZEGO emulator on a free loopback port, zero added latency, callbacks off."""
    port = free_port()
    proc = await procs.spawn("emulator", ["-m", "bench.emulator", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    await wait_ready(proc, _http_ok(f"{url}/_emulator/state"), "emulator")
    return proc, url


@dataclass
class Gateway:
    """A running agentgw."""

    proc: Proc
    grpc_target: str
    http_url: str
    db_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


async def start_gateway(
    procs: Processes, emulator_url: str, db_path: Path, extra_env: Mapping[str, str] | None = None
) -> Gateway:
    """agentgw (``python -m service``) against the emulator, on free ports, with a fresh ledger."""
    grpc_port, http_port = free_port(), free_port()
    env = {
        "AGENTGW_ZEGO_APP_ID": str(APP_ID),
        "AGENTGW_ZEGO_SERVER_SECRET": SERVER_SECRET,
        "AGENTGW_ZEGO_CALLBACK_SECRET": CALLBACK_SECRET,
        "AGENTGW_ZEGO_API_BASE": emulator_url,
        "AGENTGW_ZEGO_RATE_PER_SECOND": "1000000",
        "AGENTGW_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
        "AGENTGW_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "AGENTGW_DB_PATH": str(db_path),
        "AGENTGW_VOICE_LIMIT": "1000000",
        "AGENTGW_DIGITAL_HUMAN_LIMIT": "1000000",
        "AGENTGW_LOG_LEVEL": "WARNING",
        "AGENTGW_SHUTDOWN_GRACE_SECONDS": "1",
        **(extra_env or {}),
    }
    # BENCH_AGENTGW_WRAPPER=script.py runs agentgw through a script (which ends by running the
    # ``service`` module): a way to A/B a proposed fix as a monkeypatch, without editing service/.
    wrapper = os.environ.get("BENCH_AGENTGW_WRAPPER")
    proc = await procs.spawn("agentgw", [wrapper] if wrapper else ["-m", "service"], env=env)
    http_url = f"http://127.0.0.1:{http_port}"
    await wait_ready(proc, _http_ok(f"{http_url}/readyz"), "agentgw")
    return Gateway(proc, f"127.0.0.1:{grpc_port}", http_url, db_path)


@dataclass
class Baseline:
    """A running bare baseline server (bench.baseline)."""

    proc: Proc
    grpc_target: str
    http_url: str

    @property
    def pid(self) -> int:
        return self.proc.pid


async def start_baseline(procs: Processes, heartbeat_seconds: float = 15.0) -> Baseline:
    """The bare grpc.aio + Starlette baseline on free ports."""
    grpc_port, http_port = free_port(), free_port()
    proc = await procs.spawn(
        "baseline",
        [
            "-m",
            "bench.baseline",
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            str(http_port),
            "--heartbeat-seconds",
            str(heartbeat_seconds),
        ],
    )
    http_url = f"http://127.0.0.1:{http_port}"
    await wait_ready(proc, _http_ok(f"{http_url}/healthz"), "baseline")
    return Baseline(proc, f"127.0.0.1:{grpc_port}", http_url)
