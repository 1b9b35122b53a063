"""The ZEGO seam: the domain reaches ZEGO only through its port, in its own types."""

from __future__ import annotations

import ast
from pathlib import Path

import service.domain

DOMAIN = Path(service.domain.__file__).parent
# The callback signature check (service.zego.signing, a pure function) is still imported by ingest;
# it is not part of the ZEGO port, and moves with the ingest wiring.
ALLOWED = {"service.zego.signing"}
FORBIDDEN = ("service.zego", "httpx", "pydantic", "grpc", "starlette")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _forbidden(name: str) -> bool:
    if any(name == a or name.startswith(f"{a}.") for a in ALLOWED):
        return False
    return any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)


def test_no_domain_module_imports_the_zego_adapter_or_a_transport() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sorted(DOMAIN.glob("*.py"))
        for name in _imports(path)
        if _forbidden(name)
    }
    assert not offenders, sorted(offenders)


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from service.zego import models as m\nimport httpx\n")
    assert {"service.zego", "service.zego.models", "httpx"} <= _imports(module)
    assert all(_forbidden(name) for name in _imports(module))
    assert not _forbidden("service.zego.signing") and not _forbidden("service.zegox")
