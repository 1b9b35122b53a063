"""The orchestrator side of the worker protocol (see bench.control): spawn, command, collect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from bench.processes import Proc, Processes

__all__ = ["Worker", "WorkerPool"]


class Worker:
    """One ``python -m bench.worker`` process."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    async def recv(self, timeout: float) -> dict[str, Any]:
        stdout = self.proc.process.stdout
        assert stdout is not None
        try:
            line = await asyncio.wait_for(stdout.readline(), timeout)
        except TimeoutError:
            raise RuntimeError(f"{self.proc.name}: no message in {timeout:.0f} s") from None
        if not line:
            await self.proc.process.wait()
            raise RuntimeError(
                f"{self.proc.name} exited ({self.proc.process.returncode}):\n{self.proc.log_tail()}"
            )
        message: dict[str, Any] = json.loads(line)
        return message

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self.recv(max(0.1, deadline - loop.time()))
            if message.get("event") == event:
                return message

    def send(self, cmd: str, **fields: Any) -> None:
        stdin = self.proc.process.stdin
        assert stdin is not None
        if not stdin.is_closing():
            stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())


class WorkerPool:
    """A group of workers started together and driven in lock-step."""

    def __init__(self, procs: Processes, workers: Sequence[Worker]) -> None:
        self._procs = procs
        self.workers = list(workers)

    @classmethod
    async def start(cls, procs: Processes, kind: str, specs: Sequence[dict[str, Any]]) -> WorkerPool:
        started = [
            Worker(
                await procs.spawn(
                    f"worker-{kind}-{i}", ["-m", "bench.worker", kind, json.dumps(spec)], pipes=True
                )
            )
            for i, spec in enumerate(specs)
        ]
        return cls(procs, started)

    async def ready(self, timeout: float = 90.0) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(w.expect("ready", timeout) for w in self.workers)))

    def broadcast(self, cmd: str, **fields: Any) -> None:
        for worker in self.workers:
            worker.send(cmd, **fields)

    async def results(self, timeout: float) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(w.expect("result", timeout) for w in self.workers)))

    async def close(self) -> None:
        for worker in self.workers:
            await self._procs.stop(worker.proc, grace=2.0)

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
