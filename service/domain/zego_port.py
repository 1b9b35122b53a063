"""The ZEGO port: what the domain asks of ZEGO, in the domain's own types.

The domain calls a ``ZegoPort``; ``service.zego.adapter.ZegoAdapter`` implements it over the signed
HTTP client, mapping these types to ZEGO's wire models. The domain never sees a wire model, an HTTP
library or a ZEGO action name, so another implementation (a test double, a recorded fake) plugs in
without touching it. Failures are the ``service.domain.zego_errors`` tree, re-exported here.

Every call takes ``timeout``: the caller's remaining budget in seconds (None: the adapter's own
bound only). ``instance_id`` is ZEGO's AgentInstanceId; calls that start or end a round return ZEGO's
int64 ``Round``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from service.domain.model import SessionKind
from service.domain.zego_config import (
    ASR,
    LLM,
    TTS,
    VAD,
    AdvancedConfig,
    AdvancedConfigLive,
    Agent,
    CallbackConfig,
    CallbackConfigLive,
    DigitalHuman,
    Message,
    MessageHistory,
)
from service.domain.zego_errors import (
    GRACEFUL_SHUTDOWN_IN_PROGRESS,
    ZegoApiError,
    ZegoDigitalHumanNotFound,
    ZegoError,
    ZegoInstanceNotFound,
    ZegoStateConflict,
)

__all__ = [
    "GRACEFUL_SHUTDOWN_IN_PROGRESS",
    "INFERENCE_ADVANCED",
    "INFERENCE_NORMAL",
    "MAX_AVATAR_LIMIT",
    "MAX_AVATAR_OFFSET",
    "AgentList",
    "AgentUpdate",
    "AvatarAction",
    "AvatarDetails",
    "AvatarList",
    "AvatarQuery",
    "AvatarSummary",
    "ContextMessages",
    "CreatedInstance",
    "InstanceRequest",
    "InstanceUpdate",
    "Listening",
    "Priority",
    "SamePriorityOption",
    "Speech",
    "TextTurn",
    "Timbre",
    "TimbreList",
    "ZegoApiError",
    "ZegoDigitalHumanNotFound",
    "ZegoError",
    "ZegoInstanceNotFound",
    "ZegoPort",
    "ZegoStateConflict",
]

Priority = Literal["Low", "Medium", "High"]
SamePriorityOption = Literal["ClearAndInterrupt", "Enqueue"]

#: ZEGO's avatar inference modes (Digital Human API §2): normal and advanced.
INFERENCE_NORMAL: Final = 1
INFERENCE_ADVANCED: Final = 2
#: An avatar or timbre listing's ``limit`` is 1..20 and ``offset`` 0..1000000; outside them ZEGO refuses.
MAX_AVATAR_LIMIT: Final = 20
MAX_AVATAR_OFFSET: Final = 1_000_000


# --- agents ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentUpdate:
    """What UpdateAgent changes; ``None`` leaves a field as stored, an object replaces it whole."""

    agent_id: str
    name: str | None = None
    llm: LLM | None = None
    tts: TTS | None = None
    asr: ASR | None = None


@dataclass(frozen=True)
class AgentList:
    """One page of ZEGO's agents; an empty ``cursor`` means the last page."""

    agents: tuple[Agent, ...]
    cursor: str
    total: int


# --- instances -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceRequest:
    """An instance to create: the kind, where it joins, and its configuration.

    ``agent_user_id`` and ``agent_stream_id`` must be unique among running instances (spec §6.1). A
    live digital human with a ``cdn_url`` pushes there instead of joining ``room_id``; it uses only
    ``tts`` and the ``live_*`` configs.
    """

    kind: SessionKind
    agent_id: str
    user_id: str
    room_id: str
    agent_user_id: str
    agent_stream_id: str
    user_stream_id: str
    stream_extra_info: str | None = None
    cdn_url: str | None = None
    digital_human: DigitalHuman | None = None
    llm: LLM | None = None
    tts: TTS | None = None
    asr: ASR | None = None
    vad: VAD | None = None
    message_history: MessageHistory | None = None
    callback_config: CallbackConfig | None = None
    advanced_config: AdvancedConfig | None = None
    live_callback_config: CallbackConfigLive | None = None
    live_advanced_config: AdvancedConfigLive | None = None


@dataclass(frozen=True)
class CreatedInstance:
    """ZEGO's answer to a create: the AgentInstanceId and, for digital humans, the client SDK's config."""

    instance_id: str
    digital_human_config: str | None = None


@dataclass(frozen=True)
class InstanceUpdate:
    """What UpdateAgentInstance changes: LLM/TTS/ASR replace whole; ``user_stream_id`` switches the
    stream the agent plays. ``None`` leaves a part as it is."""

    llm: LLM | None = None
    tts: TTS | None = None
    asr: ASR | None = None
    user_stream_id: str | None = None


# --- in-call control -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextTurn:
    """Text for the LLM, as if the user said it (SendAgentInstanceLLM)."""

    text: str
    system_prompt: str | None = None
    add_question_to_history: bool | None = None
    add_answer_to_history: bool | None = None
    priority: Priority | None = None
    same_priority_option: SamePriorityOption | None = None


@dataclass(frozen=True)
class Speech:
    """Text the agent speaks, at most 300 characters (SendAgentInstanceTTS)."""

    text: str
    add_history: bool | None = None
    priority: Priority | None = None
    same_priority_option: SamePriorityOption | None = None


@dataclass(frozen=True)
class Listening:
    """A walkie-talkie Start/StopListening: ``sequence`` must increase across calls."""

    sequence: int | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class ContextMessages:
    """The instance's LLM context."""

    messages: tuple[Message, ...]
    total: int


# --- digital-human assets --------------------------------------------------------------------------


@dataclass(frozen=True)
class AvatarQuery:
    """One page of avatars: ``public`` True lists public ones, False private ones, None both."""

    public: bool | None
    inference_mode: int | None
    offset: int
    limit: int


@dataclass(frozen=True)
class AvatarAction:
    """An action the avatar can perform, with a preview video."""

    name: str
    preview_url: str


@dataclass(frozen=True)
class AvatarSummary:
    """One avatar of a listing; ``is_public`` is None when ZEGO did not say."""

    digital_human_id: str
    name: str
    avatar_url: str
    is_public: bool | None
    inference_modes: tuple[int, ...]


@dataclass(frozen=True)
class AvatarList:
    """A page of avatars; ``total`` counts every match, not just this page."""

    items: tuple[AvatarSummary, ...]
    total: int


@dataclass(frozen=True)
class AvatarDetails:
    """One avatar's details; ``avatar_url`` is valid for 24 hours after the answer."""

    digital_human_id: str
    name: str
    avatar_url: str
    is_public: bool
    actions: tuple[AvatarAction, ...]
    inference_modes: tuple[int, ...]


@dataclass(frozen=True)
class Timbre:
    """One voice; ``is_public`` is None when ZEGO did not say."""

    timbre_id: str
    name: str
    is_public: bool | None


@dataclass(frozen=True)
class TimbreList:
    """A page of voices."""

    items: tuple[Timbre, ...]
    total: int


# --- the port --------------------------------------------------------------------------------------


class ZegoPort(Protocol):
    """Everything the domain asks of ZEGO. Raises the ``ZegoError`` tree for anything but success."""

    def error_class(self, code: int) -> type[ZegoApiError]:
        """The error class ZEGO's answer ``code`` is raised as (for a code recorded earlier)."""
        ...

    # agents
    async def register_agent(self, agent: Agent, *, timeout: float | None = None) -> None:
        """Register a template. ``ZegoAgentAlreadyExists`` if the id is taken."""
        ...

    async def update_agent(self, update: AgentUpdate, *, timeout: float | None = None) -> None:
        """Change a template's name or replace its LLM/TTS/ASR objects."""
        ...

    async def unregister_agent(self, agent_id: str, *, timeout: float | None = None) -> None:
        """Delete a template. ``ZegoAgentNotFound`` for an unknown id."""
        ...

    async def query_agents(
        self, agent_ids: Sequence[str], *, timeout: float | None = None
    ) -> tuple[Agent, ...]:
        """The templates of up to 10 ids; unknown ids are absent."""
        ...

    async def list_agents(self, *, limit: int, cursor: str, timeout: float | None = None) -> AgentList:
        """One page (``limit`` 0..10) from ``cursor`` (empty: the first page)."""
        ...

    # instances
    async def create_instance(
        self, request: InstanceRequest, *, timeout: float | None = None
    ) -> CreatedInstance:
        """Start a voice, digital-human or live digital-human instance (by ``request.kind``)."""
        ...

    async def update_instance(
        self, instance_id: str, update: InstanceUpdate, *, timeout: float | None = None
    ) -> None:
        """Change a running instance's LLM/TTS/ASR or user stream."""
        ...

    async def delete_instance(
        self,
        instance_id: str,
        *,
        graceful: bool = False,
        graceful_timeout_seconds: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Delete an instance (gracefully: once it is idle). ``ZegoInstanceNotFound`` if it is gone;
        ``ZegoStateConflict`` with ``GRACEFUL_SHUTDOWN_IN_PROGRESS`` if a graceful delete is under way."""
        ...

    async def instance_status(self, instance_id: str, *, timeout: float | None = None) -> str:
        """IDLE, LISTENING, THINKING or SPEAKING (as ZEGO spells it)."""
        ...

    # in-call control
    async def send_text(self, instance_id: str, turn: TextTurn, *, timeout: float | None = None) -> int:
        """Feed text to the LLM; the new Round."""
        ...

    async def speak(self, instance_id: str, speech: Speech, *, timeout: float | None = None) -> int:
        """Make the agent speak; the new Round."""
        ...

    async def interrupt(self, instance_id: str, *, timeout: float | None = None) -> int:
        """Cut the current speech/LLM round; its Round."""
        ...

    async def get_context(self, instance_id: str, *, timeout: float | None = None) -> ContextMessages:
        """The LLM context."""
        ...

    async def reset_context(self, instance_id: str, *, timeout: float | None = None) -> None:
        """Clear the LLM context."""
        ...

    async def append_context(
        self, instance_id: str, messages: Sequence[Message], *, timeout: float | None = None
    ) -> None:
        """Insert messages into the context (no LLM call, no new round)."""
        ...

    async def start_listening(
        self, instance_id: str, listening: Listening, *, timeout: float | None = None
    ) -> int:
        """Walkie-talkie mode: start listening to the user; the Round."""
        ...

    async def stop_listening(
        self, instance_id: str, listening: Listening, *, timeout: float | None = None
    ) -> int:
        """Walkie-talkie mode: stop listening, the agent answers; the Round."""
        ...

    # digital-human assets
    async def list_avatars(self, query: AvatarQuery, *, timeout: float | None = None) -> AvatarList:
        """One page of the avatars this app may use."""
        ...

    async def get_avatar(self, digital_human_id: str, *, timeout: float | None = None) -> AvatarDetails:
        """One avatar. ``ZegoDigitalHumanNotFound`` for an id ZEGO does not know."""
        ...

    async def list_timbres(
        self, digital_human_id: str | None, *, offset: int, limit: int, timeout: float | None = None
    ) -> TimbreList:
        """Public voices (no id) or those bound to one avatar (``ZegoDigitalHumanNotFound`` if unknown)."""
        ...
