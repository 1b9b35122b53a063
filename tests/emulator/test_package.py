"""The emulator is its own package: the gateway loads it only to start it, and it leans on the product
for nothing but the shared signing (pinned by the known-answer tests) and the one embedded uvicorn."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from service.zego.digital_human import EMULATOR_DIGITAL_HUMAN_PATH
from zego_emulator.digital_humans import DIGITAL_HUMAN_PATH

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "zego_emulator"

ALLOWED_PRODUCT_IMPORTS = {
    "service.zego.signing",  # API and callback signatures: one signing function for both sides
    "service.zego.token04",  # verifying the room tokens the gateway mints
    "service.http.asgi",  # serve_asgi, the code base's one embedded uvicorn
}
"""The only modules of ``service`` that ``zego_emulator`` may import."""

GATEWAY_MODULES = (
    "service.server",
    "service.core",
    "service.cli.app",
    "service.__main__",
    "service.http.app",
)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports, anywhere in it (TYPE_CHECKING blocks and functions too), absolute,
    with the line; ``from . import x`` counts as importing the submodule ``x``."""
    package = "zego_emulator" if path.parent == PACKAGE else ""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package + (f".{node.module}" if node.module else "")
                if node.module is None:
                    found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
                    continue
                found.append((base, node.lineno))
            else:
                found.append((node.module or "", node.lineno))
    return found


def test_the_gateway_modules_do_not_import_the_emulator() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(GATEWAY_MODULES)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'zego_emulator')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == []


def test_the_gateway_imports_the_emulator_only_inside_a_function() -> None:
    """No module of ``service`` imports ``zego_emulator`` at module level, except the demo, which
    drives the embedded emulator's admin API; the embedded emulator's start-up imports it lazily."""
    offenders: list[str] = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        if path == ROOT / "service" / "demo.py":
            continue
        for node in ast.parse(path.read_text(), str(path)).body:
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.startswith("zego_emulator")
            ]
    assert offenders == []


def test_the_emulator_imports_no_product_module_but_signing_tokens_and_serving() -> None:
    used = {
        f"{path.name}:{line} {name}"
        for path in sorted(PACKAGE.glob("*.py"))
        for name, line in _imports(path)
        if name.split(".")[0] == "service" and name not in ALLOWED_PRODUCT_IMPORTS
    }
    assert used == set()


def test_the_emulator_has_no_import_cycle() -> None:
    graph = {
        path.stem: {
            name.split(".")[1]
            for name, _ in _imports(path)
            if name.startswith("zego_emulator.") and name.split(".")[1] != path.stem
        }
        for path in PACKAGE.glob("*.py")
    }

    def cycle_from(start: str) -> list[str] | None:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*trail, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    cycles = [c for c in map(cycle_from, sorted(graph)) if c is not None]
    assert cycles == []


def test_the_gateway_finds_the_digital_human_api_where_the_emulator_serves_it() -> None:
    assert EMULATOR_DIGITAL_HUMAN_PATH == DIGITAL_HUMAN_PATH
