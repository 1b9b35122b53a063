"""How the CLI prints: Rich tables for people, the proto's JSON form (or YAML) for programs.

``--output json`` prints one JSON object per command, or one object per line for streams, so the
output pipes into ``jq``. Messages use the canonical proto3 JSON mapping with the proto's own field
names (``session_id``, not ``sessionId``), the same form ``agents create -f`` reads.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "FORMATS",
    "Printer",
    "age",
    "duration",
    "enum_name",
    "fmt_time",
    "safe",
    "to_dict",
]

FORMATS = ("table", "json", "yaml")


def to_dict(message: Message, *, defaults: bool = False) -> dict[str, Any]:
    """A message in its proto3 JSON form with the proto's field names (int64 as strings, per proto3).

    ``defaults`` prints zero-valued fields too (for counters such as capacity, where 0 is news).
    """
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=defaults
    )


def enum_name(enum: Any, value: int, prefix: str) -> str:
    """``SESSION_STATE_ACTIVE`` -> ``ACTIVE``: the readable part of an enum value name."""
    try:
        name = str(enum.Name(value))
    except ValueError:
        return str(value)
    return name.removeprefix(prefix)


def fmt_time(ts: Timestamp, *, date: bool = True) -> str:
    """A timestamp in UTC, ``YYYY-MM-DD HH:MM:SS.mmm`` (or the time of day only), ``-`` when unset."""
    if not ts.seconds and not ts.nanos:
        return "-"
    when = ts.ToDatetime(tzinfo=dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S." if date else "%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def age(ts: Timestamp, now: dt.datetime | None = None) -> str:
    """How long ago ``ts`` was, compactly (``42s``, ``3m05s``, ``2h10m``)."""
    if not ts.seconds and not ts.nanos:
        return "-"
    now = now or dt.datetime.now(dt.UTC)
    return duration(int((now - ts.ToDatetime(tzinfo=dt.UTC)).total_seconds()))


def duration(seconds: int) -> str:
    """``42s``, ``3m05s``, ``2h10m``."""
    seconds = max(0, seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c != 0x09} | {
    c: f"\\x{c:02x}" for c in range(0x80, 0xA0)
}


def safe(value: Any, style: str = "") -> Text:
    """Untrusted text (ASR results, labels, ids) as a Rich Text: never parsed as Rich markup, and
    with control characters shown escaped, so a hostile string cannot move the cursor or recolour
    the terminal."""
    return Text(str(value).translate(_CONTROL), style=style)


class Printer:
    """Writes command results in the chosen ``--output`` format to stdout."""

    def __init__(self, fmt: str, console: Console | None = None) -> None:
        self.format = fmt
        self.console = console or Console(soft_wrap=True)
        self.err_console = Console(stderr=True)
        """Progress bars and notices, which must not mix into piped output."""

    @property
    def structured(self) -> bool:
        """Whether output is for programs (JSON or YAML) rather than a table."""
        return self.format != "table"

    def data(self, value: dict[str, Any] | list[Any]) -> None:
        """One JSON object (or YAML document)."""
        if self.format == "yaml":
            click.echo(yaml.safe_dump(value, sort_keys=False, allow_unicode=True), nl=False)
        else:
            click.echo(json.dumps(value, ensure_ascii=False))

    def line(self, value: dict[str, Any]) -> None:
        """One item of a stream: a JSON object on one line (YAML: one document each)."""
        if self.format == "yaml":
            click.echo("---\n" + yaml.safe_dump(value, sort_keys=False, allow_unicode=True), nl=False)
        else:
            click.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        title: str | None = None,
        no_wrap: int = 0,
    ) -> None:
        """A Rich table; the first ``no_wrap`` columns never wrap (the others fold when narrow)."""
        table = Table(title=title, header_style="bold", box=None, pad_edge=False)
        for i, column in enumerate(columns):
            table.add_column(column, overflow="fold", no_wrap=i < no_wrap)
        for row in rows:
            table.add_row(*(cell if isinstance(cell, Text) else safe(cell) for cell in row))
        self.console.print(table)

    def text(self, message: str | Text) -> None:
        """A line for people: a str is our own Rich markup; wrap untrusted parts with :func:`safe`."""
        self.console.print(message, highlight=False)

    def notice(self, message: str) -> None:
        """A line on stderr (a reconnect, a resume), so it never mixes into piped JSON."""
        self.err_console.print(safe(message), highlight=False)
