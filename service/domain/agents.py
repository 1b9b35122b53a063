"""Agent templates: register, read, page, update (with merge) and delete, over the ZEGO port.

ZEGO replaces LLM, TTS and ASR whole on UpdateAgent (spec §5.3), so ``update`` reads the current
agent, lets the caller's merge function change it, and sends the complete objects back.

CreateAgent honours a request_id: the first success is recorded in the ledger, and a retry with
the same id and body returns the agent as it is now (AIP-155's "current state" option) instead of
ZEGO's 410001008. A retry with another body is ``RequestIdReused``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from service.auth.principal import current_principal
from service.domain.access import check_agent_change, check_may_change
from service.domain.model import IdempotencyRecord
from service.domain.ports import Ledger
from service.domain.zego_config import Agent
from service.domain.zego_port import AgentUpdate, ZegoPort
from service.errors import NotFound, RequestIdReused

__all__ = ["AgentPage", "AgentService"]

_CREATE_METHOD = "CreateAgent"
ZEGO_MAX_PAGE = 10
"""ListAgents accepts Limit 0..10 (spec §5.4)."""


@dataclass(frozen=True)
class AgentPage:
    """One page of agents; ``cursor`` is ZEGO's, empty when there are no more."""

    agents: list[Agent]
    cursor: str
    total: int


class AgentService:
    """Agent management. Secrets pass through here untouched; the API layer withholds them."""

    def __init__(self, zego: ZegoPort, ledger: Ledger, *, clock: Callable[[], float] = time.time) -> None:
        self._zego = zego
        self._ledger = ledger
        self._clock = clock
        # Serialises concurrent retries of one request_id inside this process.
        self._request_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def create(
        self, agent: Agent, *, request_id: str = "", request_hash: str = "", timeout: float | None = None
    ) -> Agent:
        """Register ``agent``; idempotent per request_id. The caller becomes its owner."""
        check_may_change("register agents")
        if not request_id:
            await self._register(agent, timeout)
            return agent
        lock = self._request_locks.setdefault(request_id, asyncio.Lock())
        async with lock:
            seen = await self._ledger.get_idempotent(_CREATE_METHOD, request_id)
            if seen is not None:
                if seen.request_hash != request_hash:
                    raise RequestIdReused(request_id)
                return await self.get(seen.response.decode(), timeout=timeout)
            await self._register(agent, timeout)
            await self._ledger.put_idempotent(
                IdempotencyRecord(
                    _CREATE_METHOD, request_id, request_hash, agent.agent_id.encode(), self._clock()
                )
            )
            return agent

    async def _register(self, agent: Agent, timeout: float | None) -> None:
        await self._zego.register_agent(agent, timeout=timeout)
        await self._ledger.put_agent_owner(agent.agent_id, current_principal().name, self._clock())

    async def get(self, agent_id: str, *, timeout: float | None = None) -> Agent:
        """The stored agent, secrets included. ``NotFound`` if ZEGO does not know it."""
        for agent in await self._zego.query_agents([agent_id], timeout=timeout):
            if agent.agent_id == agent_id:
                return agent
        raise NotFound("agent", agent_id, "AGENT_NOT_FOUND")

    async def list(self, *, page_size: int, cursor: str, timeout: float | None = None) -> AgentPage:
        """Up to ``page_size`` agents from ``cursor``, calling ZEGO as often as needed to fill it."""
        agents: list[Agent] = []
        total = 0
        while True:
            limit = min(ZEGO_MAX_PAGE, page_size - len(agents))
            data = await self._zego.list_agents(limit=limit, cursor=cursor, timeout=timeout)
            agents.extend(data.agents)
            total, cursor = data.total, data.cursor
            if not cursor or len(agents) >= page_size or not data.agents:
                return AgentPage(agents, cursor, total)

    async def update(
        self,
        agent_id: str,
        merge: Callable[[Agent], Agent],
        *,
        name_changed: bool,
        timeout: float | None = None,
    ) -> Agent:
        """Read the agent, apply ``merge`` and send the whole LLM/TTS/ASR objects that changed.
        Only its creator or an admin may."""
        current = await self.get(agent_id, timeout=timeout)
        check_agent_change(agent_id, await self._ledger.agent_owner(agent_id), "update")
        merged = merge(current)
        request = AgentUpdate(
            agent_id=agent_id,
            name=merged.name if name_changed else None,
            llm=merged.llm if merged.llm != current.llm else None,
            tts=merged.tts if merged.tts != current.tts else None,
            asr=merged.asr if merged.asr != current.asr else None,
        )
        await self._zego.update_agent(request, timeout=timeout)
        return merged

    async def delete(self, agent_id: str, *, timeout: float | None = None) -> None:
        """Unregister the agent (its creator or an admin only). ``ZegoAgentNotFound`` propagates as
        NOT_FOUND."""
        check_agent_change(agent_id, await self._ledger.agent_owner(agent_id), "delete")
        await self._zego.unregister_agent(agent_id, timeout=timeout)
        await self._ledger.delete_agent_owner(agent_id)
