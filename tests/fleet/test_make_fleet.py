"""``make fleet`` (``python -m tools.fleet``) as a developer runs it: both replicas serve, and
Ctrl-C stops every process it started (replicas, emulator, PostgreSQL), leaving none behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fleet.conftest import require_postgres


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited: only its parent has not collected it yet.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_make_fleet_serves_two_replicas_and_ctrl_c_stops_every_child(tmp_path: Path) -> None:
    require_postgres()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGW_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.fleet",
        "--grpc-ports", "0,0", "--http-ports", "0,0", "--emulator-port", "0",
        "--workdir", str(tmp_path / "fleet"), "--json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()
        assert line, f"tools.fleet exited early: {(await proc.stderr.read()).decode()[-3000:]}"
        fleet = json.loads(line)
        replicas = fleet["replicas"]
        assert [r["name"] for r in replicas] == ["A", "B"]
        assert len({r["grpc"] for r in replicas} | {r["http"] for r in replicas}) == 4
        assert fleet["database_url"].startswith("postgresql://") and "@127.0.0.1:" in fleet["database_url"]
        assert fleet["callback_url"] == replicas[0]["http"] + "/v1/zego/callbacks"
        for replica in replicas:
            async with grpc.aio.insecure_channel(replica["grpc"]) as channel:
                check = await health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[no-untyped-call]
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                assert check.status == health_pb2.HealthCheckResponse.SERVING
            async with httpx.AsyncClient(trust_env=False) as client:
                assert (await client.get(replica["http"] + "/readyz", timeout=5)).status_code == 200
        children = [r["pid"] for r in replicas] + [fleet["emulator_pid"], fleet["postgres_pid"]]
        assert all(isinstance(pid, int) and _running(pid) for pid in children), fleet

        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        async with asyncio.timeout(45):
            assert await proc.wait() == 0
        stderr = (await proc.stderr.read()).decode()
        assert "fleet stopped" in stderr
        for _ in range(50):  # bounded: 5 s for the postmaster's children to be reaped
            if not any(_running(pid) for pid in children):
                break
            await asyncio.sleep(0.1)
        assert [pid for pid in children if _running(pid)] == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
