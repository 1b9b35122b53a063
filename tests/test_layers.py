"""The layering of the package, enforced: which modules may import which.

The rules are data (``RULES``): each names the files it applies to, the files it exempts, the module
prefixes those files must not import, and whether any import counts or only a module-level one (an
import that runs when the module is imported, so not one inside a function or under
``if TYPE_CHECKING:``). A failure lists every offending import as ``file:line``.

- Only the API adapters (``service/api``, ``service/http``), the server, the CLI, ``__main__`` and the
  composition root (``service/core.py``) import the API layer.
- The domain imports no transport (gRPC, Starlette, httpx, uvicorn) and no adapter below it (the
  ZEGO client and wire models, the store): it owns the ports those adapters implement.
- The emulator is its own package, imported only when the embedded emulator starts, never at
  module level by the gateway.
"""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Rule:
    """Files matching ``applies_to`` (and not ``exempt``) must not import any of ``forbidden``."""

    name: str
    applies_to: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()
    #: "any": an import anywhere in the file counts; "module": only one that runs at import time.
    scope: str = "any"


RULES: tuple[Rule, ...] = (
    Rule(
        name="only the adapters, the server, the CLI and the composition root import the API layer",
        applies_to=("service/*",),
        exempt=(
            "service/api/*",
            "service/http/*",
            "service/server.py",
            "service/grpc_server.py",
            "service/http_server.py",
            "service/cli/*",
            "service/__main__.py",
            "service/core.py",
        ),
        forbidden=("service.api", "service.http"),
    ),
    Rule(
        name="the domain imports no transport, no ZEGO client or wire model, no store",
        applies_to=("service/domain/*",),
        forbidden=(
            "grpc",
            "starlette",
            "httpx",
            "uvicorn",
            "service.zego",
            "service.store",
            "service.api",
            "service.http",
        ),
    ),
    Rule(
        name="the gateway imports the emulator only when the embedded emulator starts",
        applies_to=("service/*",),
        forbidden=("zego_emulator", "service.zego.emulator"),
        # The demo is a client of the emulator (``make demo``), not part of the gateway.
        exempt=("service/demo.py",),
        scope="module",
    ),
)


@dataclass(frozen=True)
class Import:
    """One import statement: the modules it may load, where it is, and whether it runs when the
    module is imported."""

    modules: tuple[str, ...]
    line: int
    module_level: bool
    text: str


def _resolve(node: ast.ImportFrom, relpath: str) -> str:
    """The absolute module a ``from ... import`` names (a relative one resolved against the file)."""
    if node.level == 0:
        return node.module or ""
    parts = relpath.removesuffix(".py").split("/")
    package = parts[:-1]  # a module's package, and an __init__'s own package
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportCollector(ast.NodeVisitor):
    """Every import in a module, noting those inside a function or an ``if TYPE_CHECKING:`` block
    (they do not run when the module is imported)."""

    def __init__(self, relpath: str) -> None:
        self.relpath = relpath
        self.deferred = 0
        self.found: list[Import] = []

    def _deferred(self, node: ast.AST) -> None:
        self.deferred += 1
        self.generic_visit(node)
        self.deferred -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _deferred

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.deferred += 1
        for child in node.body:
            self.visit(child)
        self.deferred -= 1
        for child in node.orelse:
            self.visit(child)

    def _add(self, node: ast.stmt, modules: tuple[str, ...]) -> None:
        self.found.append(Import(modules, node.lineno, not self.deferred, ast.unparse(node)))

    def visit_Import(self, node: ast.Import) -> None:
        self._add(node, tuple(alias.name for alias in node.names))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        # ``from a import b``: b may be a module, so ``from service import api`` imports service.api.
        base = _resolve(node, self.relpath)
        self._add(node, (base, *(f"{base}.{alias.name}" for alias in node.names)))


def imports_of(source: str, relpath: str) -> list[Import]:
    """Every import statement of ``source`` (the file at ``relpath``, relative to the repo)."""
    collector = _ImportCollector(relpath)
    collector.visit(ast.parse(source))
    return collector.found


def _matches(relpath: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(relpath, pattern) for pattern in patterns)


def _forbids(rule: Rule, module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in rule.forbidden)


def violations(rule: Rule, files: dict[str, str]) -> list[str]:
    """``file:line: statement`` for every import in ``files`` (relpath -> source) that breaks ``rule``."""
    found: list[str] = []
    for relpath, source in sorted(files.items()):
        if not _matches(relpath, rule.applies_to) or _matches(relpath, rule.exempt):
            continue
        for imp in imports_of(source, relpath):
            if rule.scope == "module" and not imp.module_level:
                continue
            if any(_forbids(rule, module) for module in imp.modules):
                found.append(f"{relpath}:{imp.line}: {imp.text}")
    return found


def package_sources() -> dict[str, str]:
    """Every Python file of the gateway and the emulator package, by path relative to the repo."""
    files: dict[str, str] = {}
    for top in ("service", "zego_emulator"):
        for path in sorted((ROOT / top).rglob("*.py")):
            files[path.relative_to(ROOT).as_posix()] = path.read_text(encoding="utf-8")
    return files


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_import_rule(rule: Rule) -> None:
    files = package_sources()
    assert any(_matches(path, rule.applies_to) for path in files), f"{rule.name}: applies to no file"
    found = violations(rule, files)
    if found:
        pytest.fail(
            f"{rule.name}: {len(found)} forbidden import(s) of {', '.join(rule.forbidden)}:\n  "
            + "\n  ".join(found),
            pytrace=False,
        )


def test_starting_the_gateway_code_imports_no_emulator() -> None:
    """The same rule, at run time: importing the server, the CLI and ``python -m service``'s module
    loads no emulator module (an import buried in a helper the AST rule cannot see would show here)."""
    probe = textwrap.dedent(
        """
        import importlib, sys
        for name in ("service.server", "service.core", "service.cli.app"):
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m == "zego_emulator" or m.startswith(("zego_emulator.",
                        "service.zego.emulator")))
        print("\\n".join(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = result.stdout.split()
    if loaded:
        pytest.fail(
            f"importing the gateway loaded {len(loaded)} emulator module(s): {', '.join(loaded[:5])}"
            + (", ..." if len(loaded) > 5 else ""),
            pytrace=False,
        )


# The checker itself: a rule that found nothing because the checker is blind would pass vacuously.

SAMPLE = {
    "service/domain/ok.py": "from service.domain import model\nfrom . import events\n",
    "service/domain/bad.py": textwrap.dedent(
        """
        import grpc
        from typing import TYPE_CHECKING
        from ..store import base
        from service import api
        if TYPE_CHECKING:
            import httpx
        def later():
            from service.zego.client import ZegoClient
        """
    ),
    "service/server.py": "from service.api import sessions\ndef start():\n    import zego_emulator.server\n",
    "service/reaper.py": "from service.http.app import x\nif TYPE_CHECKING:\n    import zego_emulator\n",
    "service/cli/tool.py": "import zego_emulator.client as c\n",
}


def test_the_checker_sees_every_kind_of_import() -> None:
    api_rule, domain_rule, emulator_rule = RULES
    assert violations(domain_rule, SAMPLE) == [
        "service/domain/bad.py:2: import grpc",
        "service/domain/bad.py:4: from ..store import base",
        "service/domain/bad.py:5: from service import api",
        "service/domain/bad.py:7: import httpx",
        "service/domain/bad.py:9: from service.zego.client import ZegoClient",
    ]
    assert violations(api_rule, SAMPLE) == [
        "service/domain/bad.py:5: from service import api",
        "service/reaper.py:1: from service.http.app import x",
    ]
    # Module level only: the import inside start() and the one under TYPE_CHECKING are allowed.
    assert violations(emulator_rule, SAMPLE) == ["service/cli/tool.py:1: import zego_emulator.client as c"]


def test_relative_imports_resolve_against_the_file() -> None:
    assert [
        imp.modules[0] for imp in imports_of("from . import a\nfrom ..x import b\n", "service/domain/m.py")
    ] == [
        "service.domain",
        "service.x",
    ]
    assert imports_of("from .events import e\n", "service/domain/__init__.py")[0].modules[0] == (
        "service.domain.events"
    )
