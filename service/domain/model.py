"""The ledger's vocabulary: session kinds, states, end reasons and the records the store keeps.

Nothing here knows about gRPC, HTTP or SQL. The store persists these records; the domain
services decide the transitions; the API layer converts them to and from protobuf.

Session lifecycle::

    PENDING ──> STARTING ──> ACTIVE ──> ENDING ──> ENDED
       │           │           │          │
       └───────────┴───────────┴──────────┴──────> FAILED

* PENDING: the row (request_id, generated agent user and stream ids, a capacity slot) is
  committed; ZEGO has not answered yet.
* STARTING: ZEGO returned an AgentInstanceId; the agent has not yet confirmed it joined the room.
* ACTIVE: confirmed, by the AgentInstanceCreated callback or a status query.
* ENDING: DeleteAgentInstance was sent (or a graceful shutdown is in progress).
* ENDED / FAILED: terminal. The capacity slot is released, unless the row is flagged
  ``possible_leak`` (its instance may still run at ZEGO): then it holds the slot until ZEGO
  confirms the instance gone (``service.domain.leaks``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "SLOT_HOLDING_STATES",
    "TERMINAL_STATES",
    "EndReason",
    "IdempotencyRecord",
    "LabelOp",
    "LabelRequirement",
    "NewSession",
    "SessionFilter",
    "SessionKind",
    "SessionRecord",
    "SessionState",
    "Transition",
    "TurnStats",
]


class SessionKind(enum.StrEnum):
    """Which ZEGO create action started the instance."""

    VOICE = "voice"
    DIGITAL_HUMAN = "digital_human"
    LIVE_DIGITAL_HUMAN = "live_digital_human"

    @property
    def pool(self) -> str:
        """The capacity pool: live digital humans share the digital-human pool (spec §5.8)."""
        return "voice" if self is SessionKind.VOICE else "digital_human"


class SessionState(enum.StrEnum):
    """Where a session is in its lifecycle (see the module docstring)."""

    PENDING = "PENDING"
    STARTING = "STARTING"
    ACTIVE = "ACTIVE"
    ENDING = "ENDING"
    ENDED = "ENDED"
    FAILED = "FAILED"


TERMINAL_STATES = frozenset({SessionState.ENDED, SessionState.FAILED})
"""States that never change again; they release the capacity slot unless ``possible_leak``."""

SLOT_HOLDING_STATES = frozenset(set(SessionState) - TERMINAL_STATES)
"""States that hold a capacity slot (so do terminal rows flagged ``possible_leak``)."""


class EndReason(enum.StrEnum):
    """Why a session reached ENDED or FAILED."""

    ENDED_BY_CALLER = "ENDED_BY_CALLER"
    """EndSession was called (ZEGO AgentInstanceDeleted Code 0)."""
    MAX_DURATION = "MAX_DURATION"
    """The reaper ended it at max_duration."""
    USER_ABSENT = "USER_ABSENT"
    """ZEGO deleted it: the user was absent for MaxIdleTime (code 1202)."""
    AGENT_KICKED = "AGENT_KICKED"
    """ZEGO deleted it: another instance used the same AgentUserId (code 1203)."""
    UPSTREAM_RTC_ERROR = "UPSTREAM_RTC_ERROR"
    """ZEGO deleted it after an RTC error (codes 1201, 1204-1206)."""
    UPSTREAM_GONE = "UPSTREAM_GONE"
    """ZEGO no longer knows the instance (410001002) and never said why."""
    REAPED_ORPHAN = "REAPED_ORPHAN"
    """A create whose answer was lost did start an instance (a late callback said so); it was deleted."""
    CREATE_FAILED = "CREATE_FAILED"
    """ZEGO rejected the create call; no instance exists."""
    CREATE_UNCONFIRMED = "CREATE_UNCONFIRMED"
    """ZEGO's answer to the create never arrived; whether an instance exists is unknown."""
    UPSTREAM_DELETED = "UPSTREAM_DELETED"
    """ZEGO deleted it with a code we do not know."""


@dataclass(frozen=True)
class NewSession:
    """What the domain asks the store to reserve as a PENDING row."""

    session_id: str
    kind: SessionKind
    agent_id: str
    user_id: str
    room_id: str
    agent_user_id: str
    agent_stream_id: str
    user_stream_id: str
    labels: dict[str, str]
    max_duration_seconds: int
    request_id: str | None
    request_hash: str | None
    created_at: float
    cdn_url: str | None = None
    owner: str = ""
    """The principal that created it (``anonymous`` while authentication is off)."""
    trace_parent: str | None = None
    """W3C ``traceparent`` of the CreateSession span (None while tracing is off)."""


@dataclass(frozen=True)
class SessionRecord:
    """One row of the ledger."""

    session_id: str
    kind: SessionKind
    state: SessionState
    agent_id: str
    user_id: str
    room_id: str
    agent_user_id: str
    agent_stream_id: str
    user_stream_id: str
    labels: dict[str, str]
    max_duration_seconds: int
    request_id: str | None
    request_hash: str | None
    created_at: float
    updated_at: float
    cdn_url: str | None = None
    instance_id: str | None = None
    """ZEGO's AgentInstanceId, once known."""
    digital_human_config: str | None = None
    """ZEGO's DigitalHumanConfig, the base64 string as given."""
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReason | None = None
    end_detail: str = ""
    zego_code: int | None = None
    """The ZEGO code that ended or failed it, if any."""
    possible_leak: bool = False
    """Nobody could confirm that the upstream instance is gone: the row keeps its slot."""
    exception_count: int = 0
    """How many Exception callbacks ZEGO sent for it."""
    last_exception_code: int | None = None
    """The code of the newest Exception callback (spec §7.3)."""
    last_exception_message: str = ""
    """Its message."""
    version: int = 0
    """Bumped on every transition; guards concurrent updates."""
    owner: str = ""
    """The principal that created it; only it, viewers and admins see the session."""
    trace_parent: str | None = None
    """W3C ``traceparent`` of the CreateSession span that made it: callbacks link to that trace."""

    @property
    def terminal(self) -> bool:
        """Whether the session has ended for good."""
        return self.state in TERMINAL_STATES

    @property
    def deadline(self) -> float:
        """When the reaper ends it for exceeding max_duration."""
        return self.created_at + self.max_duration_seconds


@dataclass(frozen=True)
class Transition:
    """One recorded state change."""

    session_id: str
    from_state: SessionState | None
    to_state: SessionState
    at: float
    cause: str
    detail: str = ""


class LabelOp(enum.StrEnum):
    """Operators of a label selector (a subset of Kubernetes' equality-based selectors)."""

    EQUALS = "="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    NOT_EXISTS = "!exists"


@dataclass(frozen=True)
class LabelRequirement:
    """One clause of a label selector, e.g. ``env=prod``, ``tier!=free``, ``vip`` or ``!vip``."""

    key: str
    op: LabelOp
    value: str = ""


@dataclass(frozen=True)
class SessionFilter:
    """ListSessions filters; empty fields match everything."""

    states: frozenset[SessionState] = frozenset()
    kinds: frozenset[SessionKind] = frozenset()
    agent_id: str = ""
    room_id: str = ""
    label_selector: tuple[LabelRequirement, ...] = ()
    """Every requirement must hold."""
    owner: str | None = None
    """Only sessions of this principal; None for every owner (viewers and admins)."""
    possible_leak_only: bool = False
    """Only sessions flagged ``possible_leak`` (their instance may still run at ZEGO)."""


@dataclass(frozen=True)
class IdempotencyRecord:
    """A stored result of a mutating call made with a request_id."""

    method: str
    request_id: str
    request_hash: str
    response: bytes
    created_at: float


@dataclass(frozen=True)
class TurnStats:
    """A session's measured turns: how many, how fast, how many over the budget."""

    turns: int = 0
    """Turns that reached SPEAKING (their latency is measured)."""
    abandoned: int = 0
    """Turns that never reached SPEAKING (interrupted, barged in on, or ended)."""
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    max_ms: float = 0.0
    budget_breaches: int = 0
