"""A small renderer for the subset of Helm's Go templates that deploy/helm/agentgw uses.

helm is not installable here (not on PyPI, npm or Debian), so the chart tests render its templates
with this and parse the result as YAML. It is strict where Helm is lenient: an unknown function, a
missing value (``.Values.typo``) or an unsupported construct raises, so the chart stays inside what is
checked. Supported: text with ``{{- -}}`` trimming, ``{{/* comments */}}``, ``define``/``include``,
``if``/``else``/``end``, ``with``, pipelines with ``|``, parentheses, ``.`` and ``$`` paths, string and
number literals, and the functions in ``FUNCTIONS``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class TemplateError(Exception):
    """The chart uses something this renderer does not support, or refers to a missing value."""


@dataclass
class Node:
    kind: str  # text, expr, if, with, define
    arg: str = ""
    body: list[Node] = field(default_factory=list)
    orelse: list[Node] = field(default_factory=list)


def _tokens(source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(source):
        text = source[pos : m.start()]
        if m.group(1) == "-":
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3) == "-":
            rest = source[pos:]
            pos += len(rest) - len(rest.lstrip())
    out.append(("text", source[pos:]))
    return out


def parse(source: str) -> list[Node]:
    root: list[Node] = []
    stack: list[tuple[Node | None, list[Node]]] = [(None, root)]
    for kind, value in _tokens(source):
        current = stack[-1][1]
        if kind == "text":
            if value:
                current.append(Node("text", value))
            continue
        if value.startswith("/*"):
            continue
        word, _, rest = value.partition(" ")
        if word in {"if", "with", "define"}:
            node = Node(word, rest.strip())
            current.append(node)
            stack.append((node, node.body))
        elif word == "else":
            owner = stack[-1][0]
            if owner is None or owner.kind not in {"if", "with"} or rest:
                raise TemplateError(f"unsupported else: {value!r}")
            stack[-1] = (owner, owner.orelse)
        elif word == "end":
            stack.pop()
        elif word in {"range", "template", "block", "define", "break", "continue"}:
            raise TemplateError(f"unsupported action: {value!r}")
        else:
            current.append(Node("expr", value))
    if len(stack) != 1:
        raise TemplateError("unclosed block")
    return root


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, dict | list) and not value)


def _to_yaml(value: Any) -> str:
    return (
        str(yaml.safe_dump(value, default_flow_style=False, sort_keys=False))
        .rstrip("\n")
        .removesuffix("\n...")
    )


def _required(message: str, value: Any) -> Any:
    if not _truthy(value):
        raise TemplateError(f"required: {message}")
    return value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "quote": lambda v: json.dumps(_format(v)),
    "default": lambda d, v=None: v if _truthy(v) else d,
    "not": lambda v: not _truthy(v),
    "toYaml": _to_yaml,
    "nindent": lambda n, s: "\n" + "\n".join(" " * n + line if line else line for line in s.split("\n")),
    "indent": lambda n, s: "\n".join(" " * n + line if line else line for line in s.split("\n")),
    "trunc": lambda n, s: s[:n],
    "required": _required,
    "sha256sum": lambda s: hashlib.sha256(s.encode()).hexdigest(),
}


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, dict | list):
        raise TemplateError(f"cannot print {value!r} (use toYaml)")
    return str(value)


@dataclass
class Chart:
    """A chart directory: Chart.yaml, values.yaml and templates/."""

    path: Path
    defines: dict[str, list[Node]] = field(default_factory=dict)

    def render(self, values: dict[str, Any] | None = None, release: str = "agentgw") -> dict[str, str]:
        """Each template's output (``_*.tpl`` excluded), with ``values`` merged over values.yaml."""
        merged = _merge(yaml.safe_load((self.path / "values.yaml").read_text()), values or {})
        chart = yaml.safe_load((self.path / "Chart.yaml").read_text())
        root = {
            "Values": merged,
            "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
            "Release": {"Name": release, "Namespace": "default", "Service": "Helm"},
        }
        templates = sorted((self.path / "templates").iterdir())
        for tpl in templates:
            if tpl.name.startswith("_"):
                self._collect(parse(tpl.read_text()))
        out: dict[str, str] = {}
        for tpl in templates:
            if tpl.suffix in {".yaml", ".yml"}:
                out[tpl.name] = self._run(parse(tpl.read_text()), root, root)
        return out

    def _collect(self, nodes: list[Node]) -> None:
        for node in nodes:
            if node.kind == "define":
                self.defines[json.loads(node.arg)] = node.body
            elif node.kind != "text" or node.arg.strip():
                raise TemplateError("only defines belong in helper templates")

    def _run(self, nodes: list[Node], dot: Any, root: Any) -> str:
        out: list[str] = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.arg)
            elif node.kind == "expr":
                out.append(_format(self._pipeline(node.arg, dot, root)))
            elif node.kind == "if":
                branch = node.body if _truthy(self._pipeline(node.arg, dot, root)) else node.orelse
                out.append(self._run(branch, dot, root))
            elif node.kind == "with":
                value = self._pipeline(node.arg, dot, root)
                out.append(
                    self._run(node.body, value, root) if _truthy(value) else self._run(node.orelse, dot, root)
                )
            else:
                raise TemplateError(f"{node.kind} inside a template")
        return "".join(out)

    def _pipeline(self, text: str, dot: Any, root: Any) -> Any:
        value: Any = None
        for i, command in enumerate(_split(text, "|")):
            words = _words(command)
            name, args = words[0], [self._term(w, dot, root) for w in words[1:]]
            if i > 0:
                args.append(value)
            if name == "include":
                value = self._run(self.defines[args[0]], args[1], root)
            elif name in FUNCTIONS:
                value = FUNCTIONS[name](*args)
            elif i == 0 and len(words) == 1:
                value = self._term(name, dot, root)
            else:
                raise TemplateError(f"unknown function {name!r} in {text!r}")
        return value

    def _term(self, word: str, dot: Any, root: Any) -> Any:
        if word.startswith("("):
            return self._pipeline(word[1:-1], dot, root)
        if word.startswith('"'):
            return json.loads(word)
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in {"true", "false"}:
            return word == "true"
        if word == ".":
            return dot
        if word.startswith((".", "$")):
            value = root if word.startswith("$") else dot
            for part in word.lstrip("$").strip(".").split("."):
                if part:
                    if not isinstance(value, dict) or part not in value:
                        raise TemplateError(f"missing value {word!r}")
                    value = value[part]
            return value
        raise TemplateError(f"unsupported term {word!r}")


def _split(text: str, sep: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == sep:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _words(command: str) -> list[str]:
    words, depth, current = [], 0, ""
    for token in shlex.shlex(command, posix=False, punctuation_chars="()"):
        if token == "(":
            depth += 1
        if depth:
            current += ("" if current.endswith("(") or token == ")" else " ") + token if current else token
        else:
            words.append(token)
        if token == ")":
            depth -= 1
            if depth == 0:
                words.append(current)
                current = ""
    return words


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out
