"""ZEGO's 19 AI Agent Actions, the 3 Digital Human API asset Actions, and the client's observer hooks
(kept apart so metrics need not import the HTTP client)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Protocol

__all__ = ["DIGITAL_HUMAN_ACTIONS", "READ_ONLY_ACTIONS", "Action", "ClientObserver", "NullObserver"]


class Action(StrEnum):
    """The ZEGO Actions (spec §4, and the Digital Human API's asset actions); the value is the wire
    name, also used as a metrics label."""

    REGISTER_AGENT = "RegisterAgent"
    UNREGISTER_AGENT = "UnregisterAgent"
    UPDATE_AGENT = "UpdateAgent"
    LIST_AGENTS = "ListAgents"
    QUERY_AGENTS = "QueryAgents"
    CREATE_AGENT_INSTANCE = "CreateAgentInstance"
    CREATE_DIGITAL_HUMAN_AGENT_INSTANCE = "CreateDigitalHumanAgentInstance"
    CREATE_LIVE_DIGITAL_HUMAN_AGENT_INSTANCE = "CreateLiveDigitalHumanAgentInstance"
    UPDATE_AGENT_INSTANCE = "UpdateAgentInstance"
    DELETE_AGENT_INSTANCE = "DeleteAgentInstance"
    SEND_AGENT_INSTANCE_LLM = "SendAgentInstanceLLM"
    SEND_AGENT_INSTANCE_TTS = "SendAgentInstanceTTS"
    QUERY_AGENT_INSTANCE_STATUS = "QueryAgentInstanceStatus"
    INTERRUPT_AGENT_INSTANCE = "InterruptAgentInstance"
    GET_AGENT_INSTANCE_MSG_LIST = "GetAgentInstanceMsgList"
    RESET_AGENT_INSTANCE_MSG_LIST = "ResetAgentInstanceMsgList"
    ADD_AGENT_INSTANCE_MSG = "AddAgentInstanceMsg"
    START_LISTENING = "StartListening"
    STOP_LISTENING = "StopListening"
    # Digital Human API (its own host; docs/zego-digital-human-api.md).
    GET_DIGITAL_HUMAN_LIST = "GetDigitalHumanList"
    GET_DIGITAL_HUMAN_INFO = "GetDigitalHumanInfo"
    GET_TIMBRE_LIST = "GetTimbreList"


#: Actions served by the Digital Human API host rather than the AI Agent API host.
DIGITAL_HUMAN_ACTIONS: Final = frozenset(
    {Action.GET_DIGITAL_HUMAN_LIST, Action.GET_DIGITAL_HUMAN_INFO, Action.GET_TIMBRE_LIST}
)


#: The only actions safe to repeat after a transport failure.
READ_ONLY_ACTIONS: Final = frozenset(
    {
        Action.LIST_AGENTS,
        Action.QUERY_AGENTS,
        Action.QUERY_AGENT_INSTANCE_STATUS,
        Action.GET_AGENT_INSTANCE_MSG_LIST,
        *DIGITAL_HUMAN_ACTIONS,
    }
)


class ClientObserver(Protocol):
    """Hooks for metrics, so the client needs no metrics library. Implementations must be fast and must
    not raise: they run inline on every call.
    """

    def request_finished(self, action: str, outcome: str, seconds: float) -> None:
        """One HTTP attempt ended. ``outcome``: the ZEGO code (``"0"`` = success), or ``"timeout"``,
        ``"connect_error"``, ``"protocol_error"``, ``"deadline_exceeded"``. ``seconds``: that attempt.
        """

    def rate_limit_waited(self, action: str, seconds: float) -> None:
        """The local rate limiter delayed an attempt by ``seconds`` (only reported when > 0)."""

    def retried(self, action: str) -> None:
        """A read-only action is about to be attempted again after a transport failure."""


class NullObserver:
    """The default observer: ignores everything."""

    def request_finished(self, action: str, outcome: str, seconds: float) -> None:
        """Ignore."""

    def rate_limit_waited(self, action: str, seconds: float) -> None:
        """Ignore."""

    def retried(self, action: str) -> None:
        """Ignore."""
