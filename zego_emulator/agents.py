"""Agent templates (spec §5.1-§5.5): register, update, unregister, list by cursor, query by ids."""

from __future__ import annotations

import base64
import binascii
import copy
from dataclasses import dataclass

from . import errors
from .errors import ZegoError, invalid
from .schema import AgentBody
from .validation import Json

__all__ = ["Agent", "AgentRegistry"]


@dataclass
class Agent:
    """One registered agent. Agents never expire (spec §5.1)."""

    agent_id: str
    name: str
    llm: Json | None
    tts: Json | None
    asr: Json | None

    def to_json(self) -> Json:
        """The ListAgents/QueryAgents item. The stored ApiKey is echoed, as ZEGO's example shows."""
        return {
            "AgentId": self.agent_id,
            "Name": self.name,
            "LLM": copy.deepcopy(self.llm) if self.llm is not None else {},
            "TTS": copy.deepcopy(self.tts) if self.tts is not None else {},
            "ASR": copy.deepcopy(self.asr) if self.asr is not None else {},
        }


_CURSOR_PREFIX = "after:"


def _encode_cursor(agent_id: str) -> str:
    return base64.urlsafe_b64encode((_CURSOR_PREFIX + agent_id).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith(_CURSOR_PREFIX):
        raise invalid("Cursor is invalid")
    return raw.removeprefix(_CURSOR_PREFIX)


class AgentRegistry:
    """All agents of the emulated AppId, keyed by AgentId."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, agent_id: str) -> Agent:
        """The agent, or ``410001009``."""
        agent = self._agents.get(agent_id)
        if agent is None:
            raise ZegoError(errors.AGENT_NOT_FOUND, f"agent {agent_id} does not exist")
        return agent

    def register(self, body: AgentBody) -> None:
        """RegisterAgent: a second registration of the same AgentId is ``410001008``."""
        if body.agent_id in self._agents:
            raise ZegoError(errors.AGENT_EXISTS, f"agent {body.agent_id} already exists")
        self._agents[body.agent_id] = Agent(body.agent_id, body.name or "", body.llm, body.tts, body.asr)

    def unregister(self, agent_id: str) -> None:
        """UnregisterAgent. Running instances keep running: ZEGO does not document any other effect."""
        self.get(agent_id)
        del self._agents[agent_id]

    def update(self, body: AgentBody) -> None:
        """UpdateAgent: Name only if passed; LLM, TTS and ASR are each replaced as a whole."""
        agent = self.get(body.agent_id)
        if body.name is not None:
            agent.name = body.name
        if body.llm is not None:
            agent.llm = body.llm
        if body.tts is not None:
            agent.tts = body.tts
        if body.asr is not None:
            agent.asr = body.asr

    def page(self, limit: int, cursor: str) -> Json:
        """ListAgents: ``{Total, Agents, Cursor}``; an empty Cursor means there is no further page.

        The cursor encodes the last AgentId returned and agents are ordered by AgentId, so paging stays
        consistent while agents are added or removed between calls.
        """
        ordered = sorted(self._agents)
        if cursor:
            after = _decode_cursor(cursor)
            ordered = [a for a in ordered if a > after]
        page = ordered[:limit]
        more = len(ordered) > limit
        return {
            "Total": len(self._agents),
            "Agents": [self._agents[a].to_json() for a in page],
            "Cursor": _encode_cursor(page[-1]) if more and page else "",
        }

    def query(self, agent_ids: list[str]) -> Json:
        """QueryAgents: unknown ids are skipped, not an error (what ZEGO's sample relies on)."""
        unique: dict[str, None] = dict.fromkeys(agent_ids)
        return {"Agents": [self._agents[a].to_json() for a in unique if a in self._agents]}

    def names(self) -> list[Json]:
        """AgentId and Name of every agent (for the admin view; no LLM keys)."""
        return [{"AgentId": a.agent_id, "Name": a.name} for a in self._agents.values()]

    def clear(self) -> None:
        """Forget every agent."""
        self._agents.clear()
