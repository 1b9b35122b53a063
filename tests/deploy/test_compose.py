"""deploy/compose, checked without a container daemon: the files parse, and every image, port, path,
variable and URL they name exists in the project and agrees with the others."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.project import IMAGE, ROOT, check_environment, port_of
from zego_emulator.__main__ import _parser as emulator_parser

COMPOSE_DIR = ROOT / "deploy" / "compose"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text()))


def _ports(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port; host ports are bound to loopback only."""
    out = {}
    for spec in service.get("ports", []):
        host_ip, host, container = spec.split(":")
        assert host_ip == "127.0.0.1", f"{spec}: publish on loopback only"
        out[int(container)] = int(host)
    return out


def test_the_services_and_their_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"agentgw", "emulator", "prometheus", "grafana"}
    assert services["agentgw"]["image"] == services["emulator"]["image"] == IMAGE
    build = services["agentgw"]["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{image}: pin a version"


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for spec in service.get("volumes", []):
            source = spec.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"


def test_the_gateway_environment_is_real_settings_that_load(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["agentgw"]["environment"]
    settings = check_environment(env)
    assert settings.zego.app_id is not None and settings.zego.server_secret is not None
    assert _ports(services["agentgw"]) == {
        port_of(settings.listen.grpc): port_of(settings.listen.grpc),
        port_of(settings.listen.http): port_of(settings.listen.http),
    }
    assert str(settings.ledger.db_path).startswith("/var/lib/agentgw/")
    assert "ledger:/var/lib/agentgw" in services["agentgw"]["volumes"]
    grace = services["agentgw"]["stop_grace_period"]
    assert int(grace.rstrip("s")) > settings.server.shutdown_grace_seconds, "stop must outlast the drain"


def test_the_emulator_is_configured_with_its_real_flags_and_matches_the_gateway(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    env: dict[str, str] = services["emulator"]["environment"]
    flags = {a.dest.upper() for a in emulator_parser()._actions}
    for name in env:
        assert name.startswith("AGENTGW_EMULATOR_") and name.removeprefix("AGENTGW_EMULATOR_") in flags, name
    assert services["emulator"]["entrypoint"] == ["python", "-m", "zego_emulator"]
    gateway = check_environment(services["agentgw"]["environment"])
    assert str(gateway.zego.app_id) == env["AGENTGW_EMULATOR_APP_ID"]
    assert gateway.zego.server_secret is not None and gateway.zego.callback_secret is not None
    assert gateway.zego.server_secret.reveal() == env["AGENTGW_EMULATOR_SERVER_SECRET"]
    assert gateway.zego.callback_secret.reveal() == env["AGENTGW_EMULATOR_CALLBACK_SECRET"]
    api = urlsplit(gateway.zego.api_base)
    assert (api.hostname, api.port) == ("emulator", int(env["AGENTGW_EMULATOR_PORT"]))
    assert int(env["AGENTGW_EMULATOR_PORT"]) in _ports(services["emulator"])
    callback = urlsplit(env["AGENTGW_EMULATOR_CALLBACK_URL"])
    assert (callback.hostname, callback.port) == ("agentgw", port_of(gateway.listen.http))
    assert callback.path == "/v1/zego/callbacks"


def test_prometheus_scrapes_the_gateway_and_loads_the_project_rules(compose: dict[str, Any]) -> None:
    service = compose["services"]["prometheus"]
    config_flag = next(a for a in service["command"] if a.startswith("--config.file="))
    config_path = Path(config_flag.split("=", 1)[1])
    mounts = {Path(spec.split(":")[1]): spec.split(":")[0] for spec in service["volumes"]}
    assert mounts[config_path] == "./prometheus.yml"
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        # Relative to the config file, in the container exactly as in the repository.
        inside = Path(os.path.normpath(config_path.parent / rule_file))
        local = (COMPOSE_DIR / rule_file).resolve()
        assert local.exists() and local.parent == ROOT / "deploy" / "prometheus"
        assert (COMPOSE_DIR / mounts[inside]).resolve() == local
    gateway = check_environment(compose["services"]["agentgw"]["environment"])
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"agentgw:{port_of(gateway.listen.http)}"]


def test_promtool_accepts_the_config_and_its_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        # .ci/run installs Debian's prometheus package; `make rules` says the same when it is missing.
        assert not os.environ.get("CI"), "promtool is required in CI (apt-get install prometheus)"
        pytest.skip("promtool not installed (apt-get install prometheus); CI runs this check")
    done = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"], cwd=COMPOSE_DIR, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 rule files found" in done.stdout


def test_grafana_gets_the_datasource_and_the_dashboard(compose: dict[str, Any]) -> None:
    service = compose["services"]["grafana"]
    mounts = {spec.split(":")[1]: spec.split(":")[0] for spec in service["volumes"]}
    datasources = yaml.safe_load((COMPOSE_DIR / "grafana/datasources.yml").read_text())["datasources"]
    (prometheus,) = datasources
    assert prometheus["type"] == "prometheus" and prometheus["isDefault"] is True
    url = urlsplit(prometheus["url"])
    assert (url.hostname, url.port) == ("prometheus", 9090)
    assert 9090 in _ports(compose["services"]["prometheus"])
    providers = yaml.safe_load((COMPOSE_DIR / "grafana/dashboards.yml").read_text())["providers"]
    folder = providers[0]["options"]["path"]
    dashboards = [target for target in mounts if target.startswith(folder + "/")]
    assert dashboards and all(t.endswith(".json") for t in dashboards)
    for target in dashboards:
        board = json.loads((COMPOSE_DIR / mounts[target]).read_text())
        assert board["uid"] == "agentgw-overview" and board["panels"]
    home = service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards
    provisioned = {t for t in mounts if t.startswith("/etc/grafana/provisioning/")}
    assert provisioned == {
        "/etc/grafana/provisioning/datasources/agentgw.yml",
        "/etc/grafana/provisioning/dashboards/agentgw.yml",
    }


def test_the_readme_names_what_to_open(compose: dict[str, Any]) -> None:
    readme = (COMPOSE_DIR / "README.md").read_text()
    assert "docker compose up --build" in readme
    for name, service in compose["services"].items():
        assert f"`{name}`" in readme
        for host in _ports(service).values():
            assert f"127.0.0.1:{host}" in readme, f"{name}: port {host} not in the README"
