"""The Dockerfile, checked without a container daemon: its settings, ports, paths, user, signals,
health check and commands against the project and the README."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex

import pytest

from service.cli.app import cli
from service.config import ConfigError
from tests.deploy.project import (
    IMAGE,
    PYPROJECT,
    ROOT,
    SETTINGS,
    check_environment,
    dockerfile,
    env_of,
    port_of,
)

README = (ROOT / "README.md").read_text()
INSECURE_TRY = {"AGENTGW_ALLOW_INSECURE": "true"}
"""What the README offers for a throwaway local try of the image."""


def test_two_stages_on_a_slim_python_that_the_project_supports() -> None:
    instructions = dockerfile()
    args = {i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in instructions if i.name == "ARG"}
    froms = [i.args for i in instructions if i.name == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    base = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", args["PYTHON_IMAGE"])
    assert base, args["PYTHON_IMAGE"]
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum and (int(base[1]), int(base[2])) >= (int(minimum[1]), int(minimum[2]))


def test_every_copied_path_exists_and_only_runtime_wheels_are_installed() -> None:
    instructions = dockerfile()
    for ins in instructions:
        if ins.name == "COPY" and not ins.args.startswith("--from"):
            *sources, _ = ins.args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the project"
    runs = [i.args for i in instructions if i.name == "RUN"]
    wheel = next(r for r in runs if "pip wheel" in r)
    assert "./clients/python ." in wheel and "[dev]" not in wheel
    install = next(r for r in runs if "pip install" in r)
    assert "--no-index" in install and "--find-links=/wheels" in install
    names = shlex.split(install.split("--find-links=/wheels", 1)[1].split("&&")[0])
    client = (ROOT / "clients/python/pyproject.toml").read_text()
    client_name = re.search(r'^name = "(.+)"', client, re.M)
    assert client_name and names == [PYPROJECT["project"]["name"], client_name[1]]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".tools"} <= set(ignored)


def test_the_image_alone_refuses_to_serve_unauthenticated_callers() -> None:
    # It listens on 0.0.0.0 and sets no AGENTGW_AUTH_MODE: the operator must choose.
    with pytest.raises(ConfigError, match=r"^AGENTGW_AUTH_MODE: authentication is off"):
        check_environment(env_of(dockerfile()))


def test_the_environment_is_real_settings_and_matches_the_exposed_ports() -> None:
    instructions = dockerfile()
    env = env_of(instructions) | INSECURE_TRY
    settings = check_environment(env)
    exposed = {int(p) for i in instructions if i.name == "EXPOSE" for p in i.args.split()}
    assert exposed == {port_of(settings.listen.grpc), port_of(settings.listen.http)}
    assert str(settings.ledger.db_path).startswith("/var/lib/agentgw/")
    volumes = [i.args for i in instructions if i.name == "VOLUME"]
    assert volumes == ['["/var/lib/agentgw"]']


def test_it_runs_as_the_unprivileged_user_it_creates() -> None:
    instructions = dockerfile()
    user = next(i.args for i in instructions if i.name == "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) >= 1000 and int(gid) >= 1000
    created = next(i.args for i in instructions if i.name == "RUN" and "useradd" in i.args)
    assert f"--uid {uid}" in created and f"--gid {gid}" in created


def test_docker_stop_drains_within_its_default_timeout() -> None:
    instructions = dockerfile()
    assert [i.args for i in instructions if i.name == "STOPSIGNAL"] == ["SIGTERM"]
    # Exec form: PID 1 is agentgw itself, which turns SIGTERM into a graceful drain.
    entrypoint = next(i for i in instructions if i.name == "ENTRYPOINT").exec_form()
    assert entrypoint == [next(iter(PYPROJECT["project"]["scripts"])), "serve"]
    assert PYPROJECT["project"]["scripts"]["agentgw"] == "service.cli.app:main"
    assert "serve" in cli.commands
    grace = check_environment(env_of(instructions) | INSECURE_TRY).server.shutdown_grace_seconds
    assert grace < 10, "docker stop sends SIGKILL after 10 s by default"


def test_the_health_check_is_the_grpc_probe_module() -> None:
    check = next(i.args for i in dockerfile() if i.name == "HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-m"] and importlib.util.find_spec(argv[2]) is not None
    assert argv[2] == "service.healthcheck"


def test_the_readme_gives_the_dockerfile_s_commands() -> None:
    instructions = dockerfile()
    assert f"docker build -t {IMAGE} ." in README
    assert f"docker build -t {IMAGE} ." in (ROOT / "Dockerfile").read_text()
    entrypoint = " ".join(next(i for i in instructions if i.name == "ENTRYPOINT").exec_form())
    health = next(i.args for i in instructions if i.name == "HEALTHCHECK").split("CMD ", 1)[1]
    assert f"`{entrypoint}`" in README and f"`{' '.join(json.loads(health))}`" in README
    runs = [line for line in README.splitlines() if line.startswith("docker run")]
    assert runs, "the README shows how to run the image"
    for line in runs:
        assert IMAGE in line
        names = re.findall(r"-e (AGENTGW_\w+)", line)
        assert names and set(names) <= SETTINGS, names
        volume = re.search(r"-v [\w-]+:(\S+)", line)
        assert volume and f'["{volume[1]}"]' in [i.args for i in instructions if i.name == "VOLUME"]
