"""The README's first call runs, as written, against a real gateway."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from service.server import Gateway

README = Path(__file__).resolve().parents[2] / "README.md"


def first_call() -> str:
    text = README.read_text()
    section = text[text.index("## A first call") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "no python block in the README's first call"
    return found.group(1)


async def test_the_readme_first_call_works(gateway: Gateway) -> None:
    code = first_call()
    assert "from agentgw_client import" in code and "service" not in code
    code = code.replace("127.0.0.1:50051", f"127.0.0.1:{gateway.grpc_port}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    assert 'agent_id: "xiaozhi"' in out.decode() and "api_key_set: true" in out.decode()
