"""``Settings``: the frozen root of the configuration, one frozen section per consuming component.

The sections are listed in one place (the fields of :class:`Settings`); :func:`leaves` walks them
to give every setting's public key, parser, help text and default, which the loader, ``--help``
and the deployment checks all use, so a new field needs nothing but its declaration.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config.domain import (
    CallbackSettings,
    DigitalHumanSettings,
    EventSettings,
    LatencySettings,
    LeakSettings,
    ReaperSettings,
    RetentionSettings,
    SessionSettings,
)
from service.config.sections import (
    AuthSettings,
    EmulatorSettings,
    LedgerSettings,
    ListenSettings,
    ServerSettings,
    ZegoSettings,
)

__all__ = ["Leaf", "Settings", "leaves"]


def _section(kind: type[Any]) -> Any:
    return field(default_factory=kind, metadata={"section": kind})


@dataclass(frozen=True)
class Settings:
    """Everything agentgw reads at start-up. Build it with :func:`service.config.load_settings`,
    or, in code, from sections (``Settings(zego=ZegoSettings(...))``) or public keys
    (:meth:`from_flat`)."""

    zego: ZegoSettings = _section(ZegoSettings)
    listen: ListenSettings = _section(ListenSettings)
    auth: AuthSettings = _section(AuthSettings)
    ledger: LedgerSettings = _section(LedgerSettings)
    sessions: SessionSettings = _section(SessionSettings)
    callbacks: CallbackSettings = _section(CallbackSettings)
    events: EventSettings = _section(EventSettings)
    retention: RetentionSettings = _section(RetentionSettings)
    leaks: LeakSettings = _section(LeakSettings)
    latency: LatencySettings = _section(LatencySettings)
    reaper: ReaperSettings = _section(ReaperSettings)
    digital_humans: DigitalHumanSettings = _section(DigitalHumanSettings)
    server: ServerSettings = _section(ServerSettings)
    emulator: EmulatorSettings = _section(EmulatorSettings)

    @classmethod
    def from_flat(cls, **values: Any) -> Settings:
        """Settings from public keys (``Settings.from_flat(voice_limit=1, grpc_listen=...)``), the
        names of the variables without ``AGENTGW_``; the rest keep their defaults.

        Raises:
            TypeError: a key that is no setting.
        """
        by_section: dict[str, dict[str, Any]] = {}
        known = _leaves_by_key()
        for key, value in values.items():
            leaf = known.get(key)
            if leaf is None:
                raise TypeError(f"no setting named {key!r}")
            by_section.setdefault(leaf.section, {})[leaf.attr] = value
        kinds = {f.name: f.metadata["section"] for f in dataclasses.fields(cls)}
        return cls(**{name: kinds[name](**attrs) for name, attrs in by_section.items()})

    def flat(self) -> dict[str, Any]:
        """Every setting by its public key."""
        return {leaf.key: getattr(getattr(self, leaf.section), leaf.attr) for leaf in leaves()}

    def describe(self) -> dict[str, str]:
        """Every setting as text, secrets masked, for the start-up log line."""
        return {key: str(value) for key, value in self.flat().items()}

    @property
    def uses_emulator(self) -> bool:
        """True when no ZEGO credentials are configured, so the bundled emulator is started."""
        return self.zego.uses_emulator

    @property
    def emulator_state_path(self) -> Path | None:
        """The embedded emulator's state file, or None when it keeps its state in memory only."""
        state_file = self.emulator.state_file
        if state_file == "off":
            return None
        if state_file == "auto":
            return self.ledger.db_path.parent / "emulator.json"
        return Path(state_file)


@dataclass(frozen=True)
class Leaf:
    """One setting: where it lives (``section``.``attr``) and how it is named, read and explained."""

    key: str
    section: str
    attr: str
    parse: Callable[[str], Any]
    doc: str
    default: Any


@functools.cache
def leaves() -> tuple[Leaf, ...]:
    """Every setting, section by section, in declaration order."""
    found = []
    for section in dataclasses.fields(Settings):
        for f in dataclasses.fields(section.metadata["section"]):
            meta = f.metadata
            found.append(Leaf(meta["key"], section.name, f.name, meta["parse"], meta["doc"], f.default))
    return tuple(found)


@functools.cache
def _leaves_by_key() -> dict[str, Leaf]:
    return {leaf.key: leaf for leaf in leaves()}
