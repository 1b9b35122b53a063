"""Move the generated Python stubs out of ``service/gen`` into agentgw-client, mechanically.

The stubs then exist once, in ``clients/python/src/agentgw_client/gen``, and the gateway imports them
from there (it depends on agentgw-client). Other branches keep importing ``service.gen`` and
regenerating it, so this is a script, not a hand edit: merge them first, then run it and commit what
it changed as one commit::

    .venv/bin/python tools/move_stubs.py     # then: make lint test; git add -A; git commit

It is idempotent, and it does, in order:

1. rewrite every ``service.gen.`` import (and ``service/gen`` path) in the Python, Markdown, TOML and
   YAML files git tracks, outside the stubs themselves;
2. point tools/genproto.py's TARGETS at the client only; drop ``service/gen`` from pyproject.toml's
   ruff and mypy settings; make the gateway depend on agentgw-client;
3. delete ``service/gen`` and regenerate the client's stubs from proto/ (so proto changes merged from
   other branches land in the one copy);
4. sort the imports it touched (ruff), and fail, listing them, if any reference to the old place is
   left.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD_DIR, NEW_DIR = "service/gen", "clients/python/src/agentgw_client/gen"
OLD_MOD, NEW_MOD = "service.gen", "agentgw_client.gen"
SUFFIXES = {".py", ".pyi", ".md", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".txt"}
# pyproject.toml is edited by _edit_config (its exclusions are removed, not renamed).
SKIP = (OLD_DIR + "/", NEW_DIR + "/", "tools/move_stubs.py", "pyproject.toml")
CLIENT_REQUIREMENT = '"agentgw-client>=0.1,<0.2",'
_OLD_REF = re.compile(r"\bservice[./]gen\b")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in out.splitlines() if not name.startswith(SKIP)]


def _rewrite_references() -> list[Path]:
    changed = []
    for path in _tracked():
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        text = path.read_text()
        new = text.replace(OLD_MOD + ".", NEW_MOD + ".")
        new = new.replace(f"from {OLD_MOD} import", f"from {NEW_MOD} import")
        new = new.replace(f"`{OLD_DIR}` and `{NEW_DIR}`", f"`{NEW_DIR}`")
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def _edit_config() -> None:
    genproto = ROOT / "tools" / "genproto.py"
    text = genproto.read_text().replace(f'    ("{OLD_DIR}", "{OLD_MOD}"),\n', "")
    genproto.write_text(text)
    pyproject = ROOT / "pyproject.toml"
    text = pyproject.read_text()
    text = text.replace(f'"{OLD_DIR}", ', "").replace(f'"^{OLD_DIR}/", ', "").replace(f'"{OLD_MOD}.*", ', "")
    if CLIENT_REQUIREMENT not in text:
        # The gateway imports the stubs from agentgw-client now. `make install` installs clients/python
        # (editable) in the same pip run, and the Dockerfile builds both wheels together.
        text = text.replace("dependencies = [\n", f"dependencies = [\n    {CLIENT_REQUIREMENT}\n", 1)
    pyproject.write_text(text)


def _regenerate() -> None:
    shutil.rmtree(ROOT / OLD_DIR, ignore_errors=True)
    subprocess.run([sys.executable, "tools/genproto.py", "--out"], cwd=ROOT, check=True)


def _sort_imports(paths: list[Path]) -> None:
    python = [str(p) for p in paths if p.suffix in {".py", ".pyi"}]
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if python and ruff:
        subprocess.run([ruff, "check", "--select", "I", "--fix", "-q", *python], cwd=ROOT, check=False)
        subprocess.run([ruff, "format", "-q", *python], cwd=ROOT, check=False)


def _leftovers() -> list[str]:
    found = []
    for path in _tracked():
        if path.is_file() and path.suffix in SUFFIXES | {""} and path.name != "SOURCES.txt":
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if _OLD_REF.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def main() -> int:
    changed = _rewrite_references()
    _edit_config()
    _regenerate()
    _sort_imports([*changed, ROOT / "tools" / "genproto.py"])
    subprocess.run(["git", "rm", "-r", "-q", "--cached", "--ignore-unmatch", OLD_DIR], cwd=ROOT, check=True)
    subprocess.run(["git", "add", "-A", "--", NEW_DIR], cwd=ROOT, check=True)
    print(f"rewrote {len(changed)} files; stubs now only in {NEW_DIR}")
    left = _leftovers()
    if left:
        print("references to the old place remain; fix them by hand:", *left, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
