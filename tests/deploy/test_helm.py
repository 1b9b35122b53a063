"""deploy/helm/agentgw, rendered by tests/deploy/helm_render.py (helm is not installable here) and
checked as Kubernetes objects against the project: settings, ports, probes, secrets, user, image."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.helm_render import Chart, TemplateError
from tests.deploy.project import (
    DUMMY_SECRETS,
    IMAGE,
    ROOT,
    SETTINGS,
    VERSION,
    check_environment,
    dockerfile,
    port_of,
)

CHART = Chart(ROOT / "deploy" / "helm" / "agentgw")
REQUIRED = {"zego": {"appId": "1234567890"}}


def render(**values: Any) -> dict[str, dict[str, Any]]:
    """kind -> object, from the rendered chart (``values`` over REQUIRED over values.yaml)."""
    merged: dict[str, Any] = {**REQUIRED, **values}
    objects: dict[str, dict[str, Any]] = {}
    for name, text in CHART.render(merged).items():
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                assert doc["kind"] not in objects, f"two {doc['kind']}s"
                assert doc["metadata"]["name"] == "agentgw", name
                objects[doc["kind"]] = doc
    return objects


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_the_chart_matches_the_project_version_and_image() -> None:
    chart = yaml.safe_load((CHART.path / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["appVersion"] == VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert container(render())["image"] == IMAGE


def test_the_default_objects() -> None:
    objects = render()
    assert set(objects) == {
        "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "PersistentVolumeClaim"
    }  # fmt: skip
    spec = objects["Deployment"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate", "one owner per SQLite ledger"
    selector = spec["selector"]["matchLabels"]
    assert spec["template"]["metadata"]["labels"] == selector
    assert objects["Service"]["spec"]["selector"] == selector
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector


def test_the_configuration_is_real_settings_and_the_secrets_come_from_a_secret() -> None:
    objects = render()
    data = objects["ConfigMap"]["data"]
    c = container(objects)
    assert c["envFrom"] == [{"configMapRef": {"name": "agentgw"}}]
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    assert set(from_secret) == {"AGENTGW_ZEGO_SERVER_SECRET", "AGENTGW_ZEGO_CALLBACK_SECRET"} <= SETTINGS
    assert {r["name"] for r in from_secret.values()} == {"agentgw-zego"}
    assert {r["key"] for r in from_secret.values()} == {"server-secret", "callback-secret"}
    assert not set(data) & set(from_secret), "no secret in the ConfigMap"
    settings = check_environment({**data, **DUMMY_SECRETS})
    assert settings.zego.app_id == 1234567890
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": port_of(settings.listen.grpc), "http": port_of(settings.listen.http)}
    grace = objects["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.server.shutdown_grace_seconds, "the pod must outlast the drain"


def test_the_probes_ask_the_grpc_health_service_on_the_grpc_port() -> None:
    c = container(render())
    grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": grpc_port}, probe


def test_the_service_targets_the_container_ports() -> None:
    objects = render()
    names = {p["name"] for p in container(objects)["ports"]}
    for port in objects["Service"]["spec"]["ports"]:
        assert port["targetPort"] in names


def test_the_pod_runs_as_the_image_user_with_a_read_only_root() -> None:
    objects = render()
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    uid, _, gid = next(i.args for i in dockerfile() if i.name == "USER").partition(":")
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid), int(gid))
    c = container(objects)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    settings = check_environment({**objects["ConfigMap"]["data"], **DUMMY_SECRETS})
    assert str(settings.ledger.db_path.parent) in mounts and "/tmp" in mounts


def test_persistence_options() -> None:
    claim = render(persistence={"existingClaim": "mine"})
    assert "PersistentVolumeClaim" not in claim
    volumes = {v["name"]: v for v in claim["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["ledger"]["persistentVolumeClaim"] == {"claimName": "mine"}
    ephemeral = render(persistence={"enabled": False})
    volumes = {v["name"]: v for v in ephemeral["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["ledger"] == {"name": "ledger", "emptyDir": {}}


def test_the_service_monitor_is_behind_its_flag() -> None:
    assert "ServiceMonitor" not in render()
    objects = render(serviceMonitor={"enabled": True, "labels": {"release": "prometheus"}, "interval": "15s"})
    monitor = objects["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "15s"}
    assert monitor["spec"]["selector"]["matchLabels"] == objects["Service"]["spec"]["selector"]


def test_the_pdb_can_be_turned_off() -> None:
    assert "PodDisruptionBudget" not in render(podDisruptionBudget={"enabled": False})


def test_the_zego_app_id_is_required() -> None:
    with pytest.raises(TemplateError, match=r"zego\.appId"):
        CHART.render()


def test_the_renderer_refuses_what_it_does_not_check() -> None:
    from tests.deploy.helm_render import parse

    with pytest.raises(TemplateError):
        parse("{{ range .Values.x }}{{ end }}")
    chart = Chart(CHART.path)
    with pytest.raises(TemplateError, match="missing value"):
        chart._pipeline(".Values.typo", {"Values": {}}, {"Values": {}})
    with pytest.raises(TemplateError, match="unknown function"):
        chart._pipeline(".Values.a | lookup", {"Values": {"a": 1}}, {})
