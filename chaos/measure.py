"""The chaos suite's numbers, computed from ZEGO's own view and the gateway's.

Pure functions over plain data, so they are tested on their own (``tests/chaos``): nothing here
talks to a process. Inputs:

* ``calls``: the emulator's journal of API calls (``chaos.emulator``): ``action``, ``room_id``,
  ``agent_user_id``, ``instance_id``, ``code`` (ZEGO's answer, ``None`` if none was produced),
  ``fault``;
* ``running``: the instances ZEGO runs at the end (``/_emulator/state``);
* ``sessions``: the ledger's sessions (``ListSessions``), as dicts;
* ``acked``: what the gateway acknowledged to clients (``CreateSession`` answered OK with a live
  session);
* ``callbacks``: the emulator's journal of callback delivery attempts, and ``logged`` / the
  subscribers' ``received`` events.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CAP_CODES",
    "CREATE_ACTIONS",
    "Acked",
    "EventCounts",
    "LeakCounts",
    "event_counts",
    "leak_counts",
]

CREATE_ACTIONS = frozenset(
    {"CreateAgentInstance", "CreateDigitalHumanAgentInstance", "CreateLiveDigitalHumanAgentInstance"}
)
CAP_CODES = frozenset({410000011, 410001031})
"""ZEGO's answers to a create beyond the concurrency cap (voice; digital humans)."""

Json = Mapping[str, Any]


@dataclass(frozen=True)
class Acked:
    """One create the gateway acknowledged: its session and the instance id it reported."""

    session_id: str
    instance_id: str
    room_id: str


@dataclass(frozen=True)
class LeakCounts:
    """The create/leak/cap numbers of one scenario."""

    creates_at_zego: int
    """Create calls ZEGO executed (it created an instance, whether or not its answer got back)."""
    double_creates: int
    """Instances beyond the first in one room: every client intent has its own room."""
    lost_acked: int
    """Acknowledged creates the ledger no longer knows, or knows with another instance id."""
    leaked: int
    """Instances still running at ZEGO after the clean-up and the settle window."""
    leaked_unknown: int
    """Of ``leaked``, those whose instance id no ledger session records (nobody can end them)."""
    over_cap: int
    """Creates that reached ZEGO while it already ran its cap (ZEGO refused them)."""
    unknown_creates: int
    """Instances ZEGO created for an agent user id no ledger session has (a lost reservation)."""
    faults: dict[str, int]
    """Injected faults that answered a call, per ``action:fault``."""


def _created(call: Json) -> bool:
    return call.get("action") in CREATE_ACTIONS and call.get("code") == 0 and bool(call.get("instance_id"))


def leak_counts(
    calls: Sequence[Json],
    running: Iterable[str],
    sessions: Sequence[Json],
    acked: Sequence[Acked],
) -> LeakCounts:
    """Compare ZEGO's journal and running instances with the ledger and the acknowledgements."""
    created = [c for c in calls if _created(c)]
    per_room = Counter(str(c.get("room_id")) for c in created)
    by_id = {str(s["session_id"]): s for s in sessions}
    lost = 0
    for ack in acked:
        row = by_id.get(ack.session_id)
        if row is None or str(row.get("instance_id") or "") != ack.instance_id:
            lost += 1
    known_users = {(str(s.get("room_id")), str(s.get("agent_user_id"))) for s in sessions}
    known_instances = {str(s["instance_id"]) for s in sessions if s.get("instance_id")}
    still = sorted(set(running))
    faults = Counter(f"{c.get('action')}:{c.get('fault')}" for c in calls if c.get("fault"))
    return LeakCounts(
        creates_at_zego=len(created),
        double_creates=sum(n - 1 for n in per_room.values() if n > 1),
        lost_acked=lost,
        leaked=len(still),
        leaked_unknown=sum(1 for i in still if i not in known_instances),
        over_cap=sum(1 for c in calls if c.get("action") in CREATE_ACTIONS and c.get("code") in CAP_CODES),
        unknown_creates=sum(
            1 for c in created if (str(c.get("room_id")), str(c.get("agent_user_id"))) not in known_users
        ),
        faults=dict(sorted(faults.items())),
    )


@dataclass(frozen=True)
class EventCounts:
    """The event numbers of one resume scenario."""

    acked_callbacks: int
    """Distinct callbacks (instance, Sequence) the gateway acknowledged to ZEGO with a 2xx."""
    dropped_by_zego: int
    """Distinct callbacks ZEGO attempted and the gateway never acknowledged (ZEGO gave up)."""
    lost_in_ledger: int
    """Acknowledged callbacks missing from the gateway's event log (``ListEvents``)."""
    withheld_after_end: int
    """Acknowledged callbacks not listed because their session had already ended: kept by the
    gateway (hidden), never delivered, by design (one terminal event, nothing after it)."""
    logged: int
    """Events in the log (callbacks and the gateway's own, e.g. synthesized ``ended``)."""
    subscribers: int
    delivered: int
    """Events received, summed over subscribers (duplicates included)."""
    lost: int
    """Logged events a subscriber never received, summed over subscribers."""
    duplicated: int
    """Extra receipts of an event (same cursor, or same instance and Sequence), summed."""
    resumes: int
    """Reconnections with ``START_POSITION_AFTER_CURSOR``, summed."""


def _key(event: Json) -> tuple[str, int] | None:
    sequence = event.get("sequence")
    if not sequence:
        return None
    return str(event.get("instance_id")), int(sequence)


def event_counts(
    callbacks: Sequence[Json],
    logged: Sequence[Json],
    received: Sequence[Sequence[Json]],
    resumes: int,
    ended_at: Mapping[str, float] | None = None,
) -> EventCounts:
    """Compare ZEGO's deliveries, the event log and what every subscriber got.

    ``ended_at`` maps an instance id to its session's end time (wall clock, as the journal's
    ``t``). A callback acknowledged after that cannot have been delivered: the gateway keeps it
    hidden. One acknowledged earlier must be in the log. (The acknowledgement follows the store,
    so a hidden event's ``t`` is never before the end.)
    """
    ends = ended_at or {}
    attempted = {(str(c.get("instance_id")), int(c["sequence"])) for c in callbacks if c.get("sequence")}
    acked_at: dict[tuple[str, int], float] = {}
    for c in callbacks:
        if c.get("acked") and c.get("sequence"):
            key = (str(c.get("instance_id")), int(c["sequence"]))
            acked_at[key] = min(acked_at.get(key, float(c.get("t", 0.0))), float(c.get("t", 0.0)))
    acked = set(acked_at)
    in_log = {k for k in (_key(e) for e in logged) if k is not None}
    unlisted = acked - in_log
    withheld = {k for k in unlisted if k[0] in ends and acked_at[k] >= ends[k[0]]}
    cursors = {int(e["cursor"]) for e in logged}
    lost = duplicated = delivered = 0
    for events in received:
        delivered += len(events)
        seen = Counter(int(e["cursor"]) for e in events)
        lost += len(cursors - set(seen))
        duplicated += sum(n - 1 for n in seen.values())
        # The same callback stored under two cursors is a duplicate too.
        cursors_per_key: dict[tuple[str, int], set[int]] = defaultdict(set)
        for e in events:
            stored_as = _key(e)
            if stored_as is not None:
                cursors_per_key[stored_as].add(int(e["cursor"]))
        duplicated += sum(len(c) - 1 for c in cursors_per_key.values())
    return EventCounts(
        acked_callbacks=len(acked),
        dropped_by_zego=len(attempted - acked),
        lost_in_ledger=len(unlisted - withheld),
        withheld_after_end=len(withheld),
        logged=len(logged),
        subscribers=len(received),
        delivered=delivered,
        lost=lost,
        duplicated=duplicated,
        resumes=resumes,
    )
