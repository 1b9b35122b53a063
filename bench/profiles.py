"""``python -m bench.profiles FILE...``: summarize py-spy collapsed stacks (``--format raw``).

``python -m bench --profile`` samples the servers under load with py-spy (install it in the
venv: ``pip install py-spy``) into ``bench/results/profile-*.txt``; this prints, per file, the
functions with the most samples on-CPU at the top of the stack (self) and anywhere on it
(inclusive), with agentgw's own frames (``service/``) listed separately.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

__all__ = ["summarize"]

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
_ROOT = f"{Path(__file__).resolve().parents[1]}/"  # this checkout, wherever it lives
_IDLE = ("select (selectors.py", "epoll", "_run_once (asyncio/base_events.py", "poll (")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("/site-packages/", "/lib/python3.11/", _ROOT):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def summarize(path: Path, top: int = 12) -> str:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f.strip() and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        if any(marker in leaf for marker in _IDLE):
            idle += count
            continue
        self_counts[leaf] += count
        for frame in set(frames):
            inclusive[frame] += count
            if "(service/" in frame:
                ours[frame] += count
    if not total:
        return f"{path.name}: no samples"
    busy = total - idle
    lines = [f"{path.name}: {total} samples, {busy} busy ({100 * busy / total:.0f}%)"]
    for title, counter in (("self", self_counts), ("inclusive", inclusive), ("agentgw frames", ours)):
        lines.append(f"  top {title} (% of busy samples):")
        lines += [f"    {100 * n / max(1, busy):5.1f}%  {name}" for name, n in counter.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    for name in sys.argv[1:]:
        print(summarize(Path(name)))
        print()


if __name__ == "__main__":
    main()
