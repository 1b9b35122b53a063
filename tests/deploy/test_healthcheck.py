"""``python -m service.healthcheck``, the image's HEALTHCHECK, against a real gateway."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from service import healthcheck
from service.server import Gateway
from tests.conftest import Emulator, gateway_settings


async def _probe(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.healthcheck", *args,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_image_command_passes_against_a_serving_gateway(gateway: Gateway) -> None:
    # As in the image: AGENTGW_GRPC_LISTEN on a wildcard address, probed over loopback.
    code, out = await _probe({"AGENTGW_GRPC_LISTEN": f"0.0.0.0:{gateway.grpc_port}"})
    assert code == 0, out
    assert "SERVING" in out


async def test_it_fails_once_the_gateway_has_stopped(emulator: Emulator, tmp_path: Path) -> None:
    gw = Gateway(gateway_settings(emulator, tmp_path / "ledger.db"))
    await gw.start()
    port = gw.grpc_port
    assert (await _probe({}, "--target", f"127.0.0.1:{port}"))[0] == 0
    await gw.stop()
    code, out = await _probe({}, "--target", f"127.0.0.1:{port}", "--timeout", "1")
    assert code == 1 and "UNAVAILABLE" in out, out


async def test_it_fails_fast_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        code, out = await _probe({}, "--target", f"127.0.0.1:{port}", "--timeout", "1")
    assert code == 1, out


def test_the_default_target_follows_the_listen_setting() -> None:
    assert healthcheck.default_target({"AGENTGW_GRPC_LISTEN": "0.0.0.0:6000"}) == "127.0.0.1:6000"
    assert healthcheck.default_target({"AGENTGW_GRPC_LISTEN": "[::]:6001"}) == "127.0.0.1:6001"
    assert healthcheck.default_target({"AGENTGW_GRPC_LISTEN": "10.1.2.3:6002"}) == "10.1.2.3:6002"
    assert healthcheck.default_target({}) == "127.0.0.1:50051"
