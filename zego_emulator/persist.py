"""The emulator's dev mode: its agents, running instances and secrets kept in a JSON state file.

ZEGO keeps agents and running instances when a client restarts; an emulator that forgot them would
make every restart of ``make run`` end every session. With a state file the emulator saves what
ZEGO would still have (agents; instances with their configuration, LLM context and Round; room
presence; the Round and callback Sequence counters, which must keep rising; the secrets, which
must not change under the clients that sign with them) and restores it at start.

What is not kept: an utterance in flight, the speech queue and walkie-talkie listening (a restored
instance is IDLE, as if the user had been quiet across the restart), instances in a graceful
shutdown (they are gone), ZEGO's LatencyData averages, injected faults and undelivered callbacks.
Idle timers (MaxIdleTime) start again at the restore.

The file is written atomically (a temporary file in the same directory, fsynced, then renamed) with
mode 0600, because it holds the ServerSecret, the CallbackSecret and the agents' LLM/TTS keys. It
is saved whenever the state changes (checked every ``interval`` seconds) and at shutdown, so a
SIGKILL loses at most that interval. A file that cannot be read is moved aside, never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .agents import Agent
from .instance import Instance
from .rooms import RoomUser
from .timeline import SimClock

__all__ = ["FORMAT_VERSION", "StateFile", "dump", "load_into", "restore", "run_saver", "secrets_of"]

logger = logging.getLogger("zego_emulator")

FORMAT_VERSION = 1

_INSTANCE_FIELDS = (
    "instance_id",
    "kind",
    "agent_id",
    "agent_name",
    "user_id",
    "room_id",
    "agent_stream_id",
    "agent_user_id",
    "user_stream_id",
    "cdn_url",
    "llm",
    "tts",
    "asr",
    "callback_config",
    "max_idle_seconds",
    "disable_tts",
    "communication_mode",
    "interrupt_mode",
    "meta_keys",
    "tokens_per_second",
    "messages",
    "round",
)


class StateFile:
    """One state file on disk: read it, or replace it atomically with mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        """The saved document, or None if there is none (or it was unreadable and moved aside)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"not an emulator state file of version {FORMAT_VERSION}")
        except ValueError as exc:
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
            self.path.replace(aside)
            logger.warning(
                "emulator state file unreadable; starting empty",
                extra={"path": str(self.path), "moved_to": str(aside), "error": str(exc)[:200]},
            )
            return None
        return doc

    def save(self, text: str) -> None:
        """Replace the file with ``text``: written beside it, fsynced, renamed (atomic on POSIX)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also when the temporary file was left over with other modes
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def delete(self) -> bool:
        """Remove the file (``--fresh``); returns whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


def secrets_of(doc: dict[str, Any] | None, app_id: int) -> tuple[str, str] | None:
    """The saved (server secret, callback secret) if the document is for ``app_id``."""
    if not doc or doc.get("app_id") != app_id:
        return None
    server, callback = doc.get("server_secret"), doc.get("callback_secret")
    if isinstance(server, str) and len(server) == 32 and isinstance(callback, str) and callback:
        return server, callback
    return None


def dump(emulator: Any) -> dict[str, Any]:
    """The document for ``emulator`` (an :class:`~.runtime.Emulator`)."""
    state = emulator.state
    config = state.config
    # The counters live in private attributes of the id allocators; this module is their only
    # outside reader, so the allocators need no persistence API of their own.
    return {
        "version": FORMAT_VERSION,
        "app_id": config.app_id,
        "server_secret": config.server_secret,
        "callback_secret": config.callback_secret,
        "last_round": state._rounds._last,
        "last_sequence": emulator.callbacks._sequences._last,
        "agents": [
            {"agent_id": a.agent_id, "name": a.name, "llm": a.llm, "tts": a.tts, "asr": a.asr}
            for a in state.agents._agents.values()
        ],
        "instances": [
            {name: getattr(inst, name) for name in _INSTANCE_FIELDS} | {"last_ms": inst.clock.last_ms}
            for inst in state.instances.values()
            if not inst.shutting_down
        ],
        "rooms": [
            {"room_id": room, "user_id": user, "present": entry.present, "publishing": entry.publishing}
            for (room, user), entry in state.rooms._users.items()
        ],
    }


def restore(emulator: Any, doc: dict[str, Any]) -> tuple[int, int]:
    """Load ``doc`` into a fresh ``emulator``; returns (agents, instances) restored."""
    state = emulator.state
    config = state.config
    now = state.now()
    state._rounds._last = max(state._rounds._last, int(doc.get("last_round", 0)))
    sequences = emulator.callbacks._sequences
    sequences._last = max(sequences._last, int(doc.get("last_sequence", 0)))
    for a in doc.get("agents", []):
        state.agents._agents[a["agent_id"]] = Agent(a["agent_id"], a["name"], a["llm"], a["tts"], a["asr"])
    for saved in doc.get("instances", []):
        fields = {name: saved[name] for name in _INSTANCE_FIELDS if name in saved}
        instance_id = fields["instance_id"]
        clock = SimClock(config.time_scale, now)
        clock.last_ms = int(saved.get("last_ms", 0))
        clock.sync(now)
        state.instances[instance_id] = Instance(
            **fields,
            created_at=now,
            emit=state._emitter(instance_id),
            timing=state.timing,
            clock=clock,
            created_due=None,  # announced before the restart (or it never will be: ZEGO would not repeat it)
            last_tts_at=now,
            next_auto_turn_at=now + config.scaled(config.auto_turn_interval_seconds or 0.0),
        )
    for r in doc.get("rooms", []):
        state.rooms._users[(r["room_id"], r["user_id"])] = RoomUser(
            present=bool(r["present"]), since=now, publishing=bool(r["publishing"])
        )
    return len(doc.get("agents", [])), len(doc.get("instances", []))


def load_into(emulator: Any, state_file: StateFile) -> None:
    """Restore ``emulator`` from ``state_file`` if it holds this AppId's state; log what happened."""
    doc = state_file.load()
    where = {"path": str(state_file.path)}
    if doc is None:
        logger.info("emulator state file absent: starting empty", extra=where)
        return
    if doc.get("app_id") != emulator.state.config.app_id:
        logger.warning("emulator state file is for another AppId: starting empty", extra=where)
        return
    agents, instances = restore(emulator, doc)
    logger.info("emulator state restored", extra=where | {"agents": agents, "instances": instances})


def _text(emulator: Any) -> str:
    return json.dumps(dump(emulator), ensure_ascii=False, sort_keys=True, indent=1)


async def run_saver(emulator: Any, state_file: StateFile, interval: float = 0.2) -> None:
    """Save the state whenever it changed, every ``interval`` seconds, and once more when cancelled."""
    last = ""
    try:
        while True:
            text = _text(emulator)
            if text != last:
                # On the loop, not a thread: a cancelled thread would race the final save below.
                state_file.save(text)
                last = text
            await asyncio.sleep(interval)
    finally:
        text = _text(emulator)
        if text != last:
            state_file.save(text)
