"""The typed async client for ZEGO's AI Agent server API (spec §1, §2, §4, §5), and for the three asset
actions of ZEGO's Digital Human API, which live on their own host (docs/zego-digital-human-api.md).

One ``ZegoClient`` per process wraps two pooled ``httpx.AsyncClient`` (one per host). Each action is a typed
method that takes a request model from ``service.zego.models`` (or ``service.zego.digital_human``) and
returns its ``Data`` model (or ``None``).

Per call the client:

* spends at most ``min(timeout_seconds, caller budget - 50 ms)`` and never starts an attempt or a retry
  it cannot finish inside the caller's budget (``ZegoDeadlineExceeded``);
* paces itself with a per-action token bucket (ZEGO allows 10 requests/s per action);
* signs every attempt afresh (new nonce and timestamp) in ``ZegoSignatureAuth``;
* retries with jittered exponential backoff only transport failures of read-only actions; a mutation
  that timed out may have happened, and a non-zero ``Code`` is ZEGO's decision, so neither is retried;
* raises the ``service.zego.exceptions`` tree for anything but ``Code == 0``.

Logs go to ``agentgw.zego``: action, code, RequestId, duration. Never the secret, signature or body
(bodies carry LLM ApiKeys and TTS tokens). While tracing is on, each attempt is also a CLIENT span
(``service.tracing.start_zego``) with the same facts and the host.
"""

from __future__ import annotations

from service.zego import digital_human as dh
from service.zego import models as m
from service.zego.actions import Action
from service.zego.pipeline import DEADLINE_MARGIN_SECONDS, CallPipeline

__all__ = ["DEADLINE_MARGIN_SECONDS", "ZegoClient"]


class ZegoClient(CallPipeline):
    """Async client for the ZEGO AI Agent API: one typed method per action, over ``CallPipeline``
    (whose constructor arguments it takes). Use as ``async with ZegoClient(...) as zego:`` or call
    ``aclose()`` at shutdown.
    """

    # --- agent templates (§5.1-§5.5) ---------------------------------------------------------------

    async def register_agent(self, request: m.RegisterAgentRequest, *, timeout: float | None = None) -> None:
        """RegisterAgent. Raises ``ZegoAgentAlreadyExists`` if the AgentId is taken."""
        await self._call_none(Action.REGISTER_AGENT, request, timeout)

    async def unregister_agent(
        self, request: m.UnregisterAgentRequest, *, timeout: float | None = None
    ) -> None:
        """UnregisterAgent. Raises ``ZegoAgentNotFound`` for an unknown AgentId."""
        await self._call_none(Action.UNREGISTER_AGENT, request, timeout)

    async def update_agent(self, request: m.UpdateAgentRequest, *, timeout: float | None = None) -> None:
        """UpdateAgent: LLM/TTS/ASR objects sent replace the stored ones whole."""
        await self._call_none(Action.UPDATE_AGENT, request, timeout)

    async def list_agents(
        self, request: m.ListAgentsRequest, *, timeout: float | None = None
    ) -> m.ListAgentsData:
        """ListAgents: one page; pass ``Data.cursor`` back until it is empty. Retried on transport errors."""
        return await self._call_data(Action.LIST_AGENTS, request, m.ListAgentsData, timeout)

    async def query_agents(
        self, request: m.QueryAgentsRequest, *, timeout: float | None = None
    ) -> m.QueryAgentsData:
        """QueryAgents: details for up to 10 AgentIds. Retried on transport errors."""
        return await self._call_data(Action.QUERY_AGENTS, request, m.QueryAgentsData, timeout)

    # --- instance lifecycle (§5.6-§5.10) -----------------------------------------------------------

    async def create_agent_instance(
        self, request: m.CreateAgentInstanceRequest, *, timeout: float | None = None
    ) -> m.CreateAgentInstanceData:
        """CreateAgentInstance: start a voice agent in an RTC room."""
        return await self._call_data(
            Action.CREATE_AGENT_INSTANCE, request, m.CreateAgentInstanceData, timeout
        )

    async def create_digital_human_agent_instance(
        self, request: m.CreateDigitalHumanAgentInstanceRequest, *, timeout: float | None = None
    ) -> m.CreateDigitalHumanAgentInstanceData:
        """CreateDigitalHumanAgentInstance: start a digital-human (video) agent."""
        return await self._call_data(
            Action.CREATE_DIGITAL_HUMAN_AGENT_INSTANCE,
            request,
            m.CreateDigitalHumanAgentInstanceData,
            timeout,
        )

    async def create_live_digital_human_agent_instance(
        self, request: m.CreateLiveDigitalHumanAgentInstanceRequest, *, timeout: float | None = None
    ) -> m.CreateLiveDigitalHumanAgentInstanceData:
        """CreateLiveDigitalHumanAgentInstance: start a one-way broadcast digital human (RTC or CDN)."""
        return await self._call_data(
            Action.CREATE_LIVE_DIGITAL_HUMAN_AGENT_INSTANCE,
            request,
            m.CreateLiveDigitalHumanAgentInstanceData,
            timeout,
        )

    async def update_agent_instance(
        self, request: m.UpdateAgentInstanceRequest, *, timeout: float | None = None
    ) -> None:
        """UpdateAgentInstance: replace LLM/TTS/ASR or switch the user stream of a running instance."""
        await self._call_none(Action.UPDATE_AGENT_INSTANCE, request, timeout)

    async def delete_agent_instance(
        self, request: m.DeleteAgentInstanceRequest, *, timeout: float | None = None
    ) -> None:
        """DeleteAgentInstance. Raises ``ZegoInstanceNotFound`` for an unknown or deleted instance."""
        await self._call_none(Action.DELETE_AGENT_INSTANCE, request, timeout)

    # --- instance control (§5.11-§5.18) ------------------------------------------------------------

    async def send_agent_instance_llm(
        self, request: m.SendAgentInstanceLLMRequest, *, timeout: float | None = None
    ) -> m.SendAgentInstanceLLMData:
        """SendAgentInstanceLLM: feed text to the LLM as if the user said it; returns the new Round."""
        return await self._call_data(
            Action.SEND_AGENT_INSTANCE_LLM, request, m.SendAgentInstanceLLMData, timeout
        )

    async def send_agent_instance_tts(
        self, request: m.SendAgentInstanceTTSRequest, *, timeout: float | None = None
    ) -> m.SendAgentInstanceTTSData:
        """SendAgentInstanceTTS: make the agent speak text; returns the new Round."""
        return await self._call_data(
            Action.SEND_AGENT_INSTANCE_TTS, request, m.SendAgentInstanceTTSData, timeout
        )

    async def query_agent_instance_status(
        self, request: m.QueryAgentInstanceStatusRequest, *, timeout: float | None = None
    ) -> m.QueryAgentInstanceStatusData:
        """QueryAgentInstanceStatus: IDLE/LISTENING/THINKING/SPEAKING. Retried on transport errors."""
        return await self._call_data(
            Action.QUERY_AGENT_INSTANCE_STATUS, request, m.QueryAgentInstanceStatusData, timeout
        )

    async def interrupt_agent_instance(
        self, request: m.InterruptAgentInstanceRequest, *, timeout: float | None = None
    ) -> m.InterruptAgentInstanceData:
        """InterruptAgentInstance: cut the current speech/LLM round."""
        return await self._call_data(
            Action.INTERRUPT_AGENT_INSTANCE, request, m.InterruptAgentInstanceData, timeout
        )

    async def get_agent_instance_msg_list(
        self, request: m.GetAgentInstanceMsgListRequest, *, timeout: float | None = None
    ) -> m.GetAgentInstanceMsgListData:
        """GetAgentInstanceMsgList: the LLM context. Retried on transport errors."""
        return await self._call_data(
            Action.GET_AGENT_INSTANCE_MSG_LIST, request, m.GetAgentInstanceMsgListData, timeout
        )

    async def reset_agent_instance_msg_list(
        self, request: m.ResetAgentInstanceMsgListRequest, *, timeout: float | None = None
    ) -> None:
        """ResetAgentInstanceMsgList: clear the LLM context."""
        await self._call_none(Action.RESET_AGENT_INSTANCE_MSG_LIST, request, timeout)

    async def add_agent_instance_msg(
        self, request: m.AddAgentInstanceMsgRequest, *, timeout: float | None = None
    ) -> None:
        """AddAgentInstanceMsg: insert messages into the LLM context (no LLM call, no new round)."""
        await self._call_none(Action.ADD_AGENT_INSTANCE_MSG, request, timeout)

    async def start_listening(
        self, request: m.StartListeningRequest, *, timeout: float | None = None
    ) -> m.StartListeningData:
        """StartListening (walkie-talkie mode only)."""
        return await self._call_data(Action.START_LISTENING, request, m.StartListeningData, timeout)

    async def stop_listening(
        self, request: m.StopListeningRequest, *, timeout: float | None = None
    ) -> m.StopListeningData:
        """StopListening (walkie-talkie mode only): the agent answers what was said."""
        return await self._call_data(Action.STOP_LISTENING, request, m.StopListeningData, timeout)

    # --- Digital Human API assets (docs/zego-digital-human-api.md §2-§4) ----------------------------

    async def get_digital_human_list(
        self, request: dh.GetDigitalHumanListRequest, *, timeout: float | None = None
    ) -> dh.GetDigitalHumanListData:
        """GetDigitalHumanList: one page (Offset/Limit 1..20) of the avatars this app may use."""
        return await self._call_data(
            Action.GET_DIGITAL_HUMAN_LIST, request, dh.GetDigitalHumanListData, timeout
        )

    async def get_digital_human_info(
        self, request: dh.GetDigitalHumanInfoRequest, *, timeout: float | None = None
    ) -> dh.DigitalHumanInfo:
        """GetDigitalHumanInfo. Raises ``ZegoDigitalHumanNotFound`` for an id ZEGO does not know."""
        return await self._call_data(Action.GET_DIGITAL_HUMAN_INFO, request, dh.DigitalHumanInfo, timeout)

    async def get_timbre_list(
        self, request: dh.GetTimbreListRequest, *, timeout: float | None = None
    ) -> dh.GetTimbreListData:
        """GetTimbreList: public timbres, or those bound to ``request.digital_human_id``."""
        return await self._call_data(Action.GET_TIMBRE_LIST, request, dh.GetTimbreListData, timeout)
