"""The wheel of clients/python installs alone in a clean venv, without the server's dependencies,
and makes a full digital-human call against a real gateway from there."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.server import Gateway
from tests.conftest import Emulator

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"starlette", "uvicorn", "httpx", "agentgw", "cryptography", "pydantic", "prometheus-client"}


def _run(*cmd: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the built agentgw-client wheel (and what it depends on) installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so setuptools' build/ and egg-info never land in the checkout.
    source = tmp / "src"
    shutil.copytree(ROOT / "clients" / "python", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", tmp / "dist", source, cwd=tmp)  # fmt: skip
    wheels = list((tmp / "dist").glob("agentgw_client-*.whl"))
    assert len(wheels) == 1, wheels
    _run(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    _run(tmp / "venv" / "bin" / "pip", "install", "-q", wheels[0], cwd=tmp)
    return tmp / "venv"


@pytest.mark.timeout(300)
def test_the_wheel_pulls_in_no_server_dependency(clean_venv: Path) -> None:
    listed = json.loads(_run(clean_venv / "bin" / "pip", "list", "--format", "json", cwd=clean_venv))
    names = {p["name"].lower().replace("_", "-") for p in listed}
    assert "agentgw-client" in names
    assert {"grpcio", "protobuf", "googleapis-common-protos"} <= names
    assert not names & FORBIDDEN, names & FORBIDDEN
    # The wheel carries the stubs with their type stubs and the py.typed marker.
    files = _run(clean_venv / "bin" / "pip", "show", "-f", "agentgw-client", cwd=clean_venv)
    assert "agentgw_client/gen/agentgw/v1/session_service_pb2_grpc.pyi" in files
    assert "agentgw_client/py.typed" in files
    _run(clean_venv / "bin" / "python", "-c", "import agentgw_client.errors, agentgw_client", cwd=clean_venv)


@pytest.fixture
def emulator_overrides() -> dict[str, object]:
    return {"time_scale": 0.01, "latency_seed": 7}


@pytest.mark.timeout(300)
async def test_a_full_call_from_the_clean_venv(
    clean_venv: Path, emulator: Emulator, gateway: Gateway
) -> None:
    url = f"http://127.0.0.1:{gateway.http_port}/v1/zego/callbacks"
    await emulator.set_callback_url(url)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    proc = await asyncio.create_subprocess_exec(
        str(clean_venv / "bin" / "python"), str(Path(__file__).with_name("full_call.py")),
        f"127.0.0.1:{gateway.grpc_port}", emulator.url,
        cwd=clean_venv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["module"].startswith(str(clean_venv)), "agentgw_client came from the clean venv"
    kinds = result["kinds"]
    assert kinds[0] == "created" and kinds[-1] == "ended" and "llm_result" in kinds, kinds
