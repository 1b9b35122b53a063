"""The shape of the code, enforced: small modules, short functions, bounded complexity.

Limits (``LIMITS``) apply to every Python file under ``ROOTS`` except generated ones. A module is
measured in physical lines; a function from its ``def`` (decorators aside) to its last line, so a
docstring counts; complexity is radon's cyclomatic complexity, ranked A-F, and nothing may rank
above C (over 20). A failure lists every offender as ``file:line name (measure)``, worst first.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from radon.complexity import cc_rank, cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).resolve().parent.parent
ROOTS = ("service", "zego_emulator")
# Generated protobuf/gRPC stubs are not ours to shape (they live under clients/, and any that ever
# land in the package are recognised by their names).
GENERATED = re.compile(r"(_pb2(_grpc)?\.pyi?|/gen/.*)$")


@dataclass(frozen=True)
class Limits:
    module_lines: int = 400
    function_lines: int = 60
    worst_rank: str = "C"


LIMITS = Limits()


def sources() -> dict[str, str]:
    """Every hand-written Python file under ``ROOTS``, by path relative to the repo."""
    files: dict[str, str] = {}
    for top in ROOTS:
        for path in sorted((ROOT / top).rglob("*.py")):
            relpath = path.relative_to(ROOT).as_posix()
            if not GENERATED.search(relpath):
                files[relpath] = path.read_text(encoding="utf-8")
    return files


def long_modules(files: dict[str, str], limit: int) -> list[tuple[int, str]]:
    return [
        (lines, f"{path} ({lines} lines)")
        for path, source in files.items()
        if (lines := len(source.splitlines())) > limit
    ]


def long_functions(files: dict[str, str], limit: int) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for path, source in files.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > limit:
                    found.append((lines, f"{path}:{node.lineno} {node.name} ({lines} lines)"))
    return found


def _functions(blocks: list[Function | Class]) -> list[Function]:
    """Every function radon saw: top-level ones, methods (radon lists them beside their class) and
    closures, at any depth."""
    found: list[Function] = []
    for block in blocks:
        if isinstance(block, Function):
            found.append(block)
            found.extend(_functions(block.closures))
    return found


def complex_functions(files: dict[str, str], worst_rank: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for path, source in files.items():
        for function in _functions(cc_visit(source)):
            rank = cc_rank(function.complexity)
            if rank > worst_rank:
                name = f"{function.classname}.{function.name}" if function.classname else function.name
                found.append(
                    (function.complexity, f"{path}:{function.lineno} {name} ({rank}, {function.complexity})")
                )
    return found


CHECKS = {
    f"modules over {LIMITS.module_lines} lines": lambda files: long_modules(files, LIMITS.module_lines),
    f"functions over {LIMITS.function_lines} lines": lambda files: long_functions(
        files, LIMITS.function_lines
    ),
    f"functions above radon complexity {LIMITS.worst_rank}": lambda files: complex_functions(
        files, LIMITS.worst_rank
    ),
}


@pytest.mark.parametrize("what", list(CHECKS))
def test_code_shape(what: str) -> None:
    files = sources()
    assert files, f"no source files under {ROOTS}"
    offenders = sorted(CHECKS[what](files), reverse=True)
    if offenders:
        pytest.fail(
            f"{len(offenders)} {what} (split them):\n  " + "\n  ".join(entry for _, entry in offenders),
            pytrace=False,
        )


SAMPLE = "\n".join(
    [
        "def short():",
        "    def inner(x):",
        *[f"        if x == {i}:\n            return {i}" for i in range(21)],
        "    return inner",
        "",
        "class K:",
        "    def long(self):",
        *["        x = 1"] * 60,
        "",
        "def branchy(x):",
        *[f"    if x == {i}:\n        return {i}" for i in range(21)],
        "    return -1",
    ]
)


def test_the_checks_see_offenders() -> None:
    """The checks themselves: a long method, a complex closure and function, a long module."""
    files = {"pkg/m.py": SAMPLE}
    assert [entry for _, entry in long_functions(files, 60)] == ["pkg/m.py:48 long (61 lines)"]
    assert [entry for _, entry in complex_functions(files, "C")] == [
        "pkg/m.py:2 inner (D, 22)",
        "pkg/m.py:110 branchy (D, 22)",
    ]
    assert long_modules(files, 152) == [(153, "pkg/m.py (153 lines)")]
    assert long_modules(files, 153) == []
