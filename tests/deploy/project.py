"""What the deployment files are checked against: the project's settings, version, paths and files."""

from __future__ import annotations

import dataclasses
import json
import shlex
import tomllib
from pathlib import Path
from typing import Any

from service.config import Settings, env_names, load_settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = env_names()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
IMAGE = f"agentgw:{VERSION}"
# Values for the secrets that deployments inject from a secret store, to load a full configuration.
DUMMY_SECRETS = {
    "AGENTGW_ZEGO_SERVER_SECRET": "0123456789abcdef0123456789abcdef",
    "AGENTGW_ZEGO_CALLBACK_SECRET": "callback-secret",
}


def check_environment(env: dict[str, str]) -> Settings:
    """Every AGENTGW_* name is a real setting, and together the values load without error."""
    names = {k for k in env if k.startswith("AGENTGW_")}
    unknown = names - SETTINGS
    assert not unknown, f"not settings in service/config/: {sorted(unknown)}"
    return load_settings([], environ={k: str(v) for k, v in env.items() if k in SETTINGS})


def port_of(listen: str) -> int:
    """The port of a HOST:PORT listen address."""
    return int(listen.rpartition(":")[2])


@dataclasses.dataclass
class Instruction:
    """One Dockerfile instruction (continuation lines joined)."""

    name: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT/CMD (fails for the shell form)."""
        value: Any = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self.args
        return value


def dockerfile(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """The instructions of a Dockerfile, comments dropped, continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        name, _, args = full.partition(" ")
        out.append(Instruction(name.upper(), args.strip()))
    return out


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    """The ENV of the final stage."""
    last_from = max(i for i, ins in enumerate(instructions) if ins.name == "FROM")
    env: dict[str, str] = {}
    for ins in instructions[last_from:]:
        if ins.name == "ENV":
            for pair in shlex.split(ins.args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env
