"""The TypeScript client's Node tests (clients/typescript/test) against a real gateway: this starts
the gateway and its emulator, compiles the client with tsc, and runs ``node --test`` on it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

from service.server import Gateway
from tests.conftest import Emulator

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "typescript"
INSTALL = "npm ci --prefix clients/typescript (make test does it)"


async def _run(*cmd: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=CLIENT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: a timeout kills node --test's children too
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = await proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} timed out:\n{out.decode(errors='replace')}") from None
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{text}"
    return text


@pytest.mark.timeout(240)
async def test_the_typescript_client_makes_a_digital_human_call(wired: Gateway, emulator: Emulator) -> None:
    tsc = CLIENT / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), f"the TypeScript client's npm dependencies are not installed: {INSTALL}"
    await _run(str(tsc), "-p", ".")
    env = {
        **os.environ,
        "AGENTGW_URL": f"http://127.0.0.1:{wired.grpc_port}",
        "AGENTGW_EMULATOR_URL": emulator.url,
    }
    out = await _run("node", "--test", "--test-timeout=60000", "--test-reporter=spec", "dist/test/", env=env)
    assert re.search(r"\bfail 0\b", out) and re.search(r"\bpass 2\b", out), out
