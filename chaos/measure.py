"""The chaos suite's numbers, computed from ZEGO's own view and the gateway's.

Pure functions over plain data, so they are tested on their own (``tests/chaos``): nothing here
talks to a process. Inputs:

* ``calls``: the emulator's journal of API calls (``chaos.emulator``): ``t`` (arrival), ``done``
  (ZEGO had acted), ``action``, ``room_id``, ``agent_user_id``, ``instance_id``, ``code`` (ZEGO's
  answer, ``None`` if none was produced), ``fault``, ``graceful`` (a graceful delete);
* ``running``: the instances ZEGO runs at the end (``/_emulator/state``), after the clients' users
  left their rooms and ZEGO's ``MaxIdleTime`` passed (``chaos.scenarios.verify``);
* ``sessions``: the ledger's sessions (``ListSessions``), as dicts;
* ``acked``: what the gateway acknowledged to clients (``CreateSession`` answered OK with a live
  session);
* ``callbacks``: the emulator's journal of callback delivery attempts, and ``logged`` / the
  subscribers' ``received`` events.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CAP_CODES",
    "CREATE_ACTIONS",
    "Acked",
    "EventCounts",
    "IdleCounts",
    "LeakCounts",
    "event_counts",
    "gone_at",
    "idle_counts",
    "leak_counts",
]

CREATE_ACTIONS = frozenset(
    {"CreateAgentInstance", "CreateDigitalHumanAgentInstance", "CreateLiveDigitalHumanAgentInstance"}
)
CAP_CODES = frozenset({410000011, 410001031})
"""ZEGO's answers to a create beyond the concurrency cap (voice; digital humans)."""
INSTANCE_NOT_FOUND = 410001002
NOT_RUN = frozenset({"http_503", "timeout", "drop"})
"""Faults that answered a call before ZEGO acted on it (``chaos.emulator``)."""

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
    """Creates ZEGO executed in a room (every client intent has its own) while an earlier instance
    of that room had not yet been deleted by ZEGO (:func:`gone_at`): two instances of one intent
    may have run at once."""
    recreated_after_gone: int
    """Creates beyond the first in a room sent only after every earlier instance of the room was
    gone (an AIP-155 retry after ZEGO confirmed the first attempt's instance deleted)."""
    lost_acked: int
    """Acknowledged creates the ledger no longer knows, or knows with another instance id."""
    leaked: int
    """Instances still running at ZEGO after the clean-up, the users leaving their rooms, ZEGO's
    ``MaxIdleTime`` and the settle window: nothing will ever end them."""
    leaked_unknown: int
    """Of ``leaked``, those whose instance id no ledger session records (nobody can end them)."""
    over_cap: int
    """Creates that reached ZEGO while it already ran its cap (ZEGO refused them)."""
    unknown_creates: int
    """Instances ZEGO created for an agent user id no ledger session has (a lost reservation)."""
    uncleared_leaks: int
    """Sessions still flagged ``possible_leak`` at the end although every instance ZEGO created for
    their room and agent user id is gone: a slot held forever for nothing."""
    possible_leaks_never_created: int
    """Sessions still flagged ``possible_leak`` for which ZEGO created no instance at all (a create
    that timed out or met a 503 before ZEGO acted): the gateway cannot tell, so the slot stays held."""
    faults: dict[str, int]
    """Injected faults that answered a call, per ``action:fault``."""


def _created(call: Json) -> bool:
    return call.get("action") in CREATE_ACTIONS and call.get("code") == 0 and bool(call.get("instance_id"))


def gone_at(calls: Sequence[Json], callbacks: Sequence[Json] = ()) -> dict[str, float]:
    """When ZEGO had certainly deleted each instance, by its own journal (wall clock).

    The earliest of: a non-graceful DeleteAgentInstance ZEGO executed with code 0 (whether or not
    its answer reached the gateway), one answered 410001002 (already gone), and the first
    AgentInstanceDeleted ZEGO tried to deliver (sent after the instance was removed, for any
    reason: a delete, MaxIdleTime, a kick). Each time is taken when ZEGO had acted (``done``), so
    it is never before the instance was really gone: a create compared with it is never wrongly
    cleared.
    """
    gone: dict[str, float] = {}

    def note(instance_id: Any, at: Any) -> None:
        if instance_id and at is not None:
            key = str(instance_id)
            gone[key] = min(gone.get(key, math.inf), float(at))

    for c in calls:
        if c.get("action") != "DeleteAgentInstance" or c.get("fault") in NOT_RUN:
            continue
        code = c.get("code")
        if code == INSTANCE_NOT_FOUND or (code == 0 and not c.get("graceful")):
            note(c.get("instance_id"), c.get("done", c.get("t")))
    for cb in callbacks:
        if cb.get("event") == "AgentInstanceDeleted":
            note(cb.get("instance_id"), cb.get("t"))
    return gone


def _per_room_creates(created: Sequence[Json], gone: Mapping[str, float]) -> tuple[int, int]:
    """(double creates, re-creates after the earlier instances were gone), over all rooms."""
    per_room: dict[str, list[Json]] = defaultdict(list)
    for c in sorted(created, key=lambda c: float(c.get("t", 0.0))):
        per_room[str(c.get("room_id"))].append(c)
    doubles = recreated = 0
    for creates in per_room.values():
        for n, later in enumerate(creates[1:], start=1):
            sent = float(later.get("t", 0.0))
            if any(gone.get(str(e["instance_id"]), math.inf) > sent for e in creates[:n]):
                doubles += 1
            else:
                recreated += 1
    return doubles, recreated


def _lost_acked(acked: Sequence[Acked], sessions: Sequence[Json]) -> int:
    """Acknowledged sessions the ledger lacks, or holds with another instance."""
    by_id = {str(s["session_id"]): s for s in sessions}
    lost = 0
    for ack in acked:
        row = by_id.get(ack.session_id)
        if row is None or str(row.get("instance_id") or "") != ack.instance_id:
            lost += 1
    return lost


def _user_key(row: Json) -> tuple[str, str]:
    return str(row.get("room_id")), str(row.get("agent_user_id"))


def _possible_leaks(sessions: Sequence[Json], created: Sequence[Json], still: list[str]) -> tuple[int, int]:
    """(possible leaks none of whose instances still runs, possible leaks ZEGO never created)."""
    instances_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for c in created:
        instances_of[_user_key(c)].add(str(c["instance_id"]))
    uncleared = never_created = 0
    for s in sessions:
        if not s.get("possible_leak"):
            continue
        made = instances_of.get(_user_key(s), set())
        if s.get("instance_id"):
            made = made | {str(s["instance_id"])}
        if not made:
            never_created += 1
        elif not made & set(still):
            uncleared += 1
    return uncleared, never_created


def leak_counts(
    calls: Sequence[Json],
    running: Iterable[str],
    sessions: Sequence[Json],
    acked: Sequence[Acked],
    callbacks: Sequence[Json] = (),
) -> LeakCounts:
    """Compare ZEGO's journal and running instances with the ledger and the acknowledgements."""
    created = [c for c in calls if _created(c)]
    still = sorted(set(running))
    doubles, recreated = _per_room_creates(created, gone_at(calls, callbacks))
    known_users = {_user_key(s) for s in sessions}
    known_instances = {str(s["instance_id"]) for s in sessions if s.get("instance_id")}
    uncleared, never_created = _possible_leaks(sessions, created, still)
    faults = Counter(f"{c.get('action')}:{c.get('fault')}" for c in calls if c.get("fault"))
    return LeakCounts(
        creates_at_zego=len(created),
        double_creates=doubles,
        recreated_after_gone=recreated,
        lost_acked=_lost_acked(acked, sessions),
        leaked=len(still),
        leaked_unknown=sum(1 for i in still if i not in known_instances),
        over_cap=sum(1 for c in calls if c.get("action") in CREATE_ACTIONS and c.get("code") in CAP_CODES),
        unknown_creates=sum(1 for c in created if _user_key(c) not in known_users),
        uncleared_leaks=uncleared,
        possible_leaks_never_created=never_created,
        faults=dict(sorted(faults.items())),
    )


@dataclass(frozen=True)
class IdleCounts:
    """What only ZEGO's ``MaxIdleTime`` ended: running after the clean-up while the users were
    still in their rooms, gone once they had left."""

    idle_ended_known: int
    """Of those, instances whose id the ledger recorded: the gateway could have deleted them and
    did not (a real leak, billed until the user leaves)."""
    idle_ended_unknown: int
    """Of those, instances whose id no session recorded (e.g. created while the gateway was down
    past ZEGO's callback retries): nobody could end them before ZEGO did."""


def idle_counts(
    running_when_users_left: Iterable[str],
    running_after: Iterable[str],
    sessions_when_users_left: Sequence[Json],
) -> IdleCounts:
    """Split the instances ZEGO ended for idleness by whether the ledger knew their ids."""
    known = {str(s["instance_id"]) for s in sessions_when_users_left if s.get("instance_id")}
    ended = set(running_when_users_left) - set(running_after)
    return IdleCounts(
        idle_ended_known=len(ended & known),
        idle_ended_unknown=len(ended - known),
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
