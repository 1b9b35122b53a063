"""The chaos suite's arithmetic: each number comes from comparing ZEGO's view with the ledger's."""

from __future__ import annotations

from typing import Any

from chaos.measure import Acked, event_counts, gone_at, idle_counts, leak_counts
from chaos.report import rows_for


def create(
    room: str, instance: str | None, code: int | None = 0, fault: str | None = None, t: float = 0.0
) -> dict[str, Any]:
    return {
        "t": t,
        "done": t + 0.01,
        "action": "CreateAgentInstance",
        "room_id": room,
        "agent_user_id": f"ag_{room}",
        "instance_id": instance,
        "code": code,
        "fault": fault,
    }


def delete(instance: str, t: float, code: int | None = 0, **extra: Any) -> dict[str, Any]:
    entry = {"t": t, "done": t + 0.01, "action": "DeleteAgentInstance", "instance_id": instance, "code": code}
    return entry | extra


def deleted_callback(instance: str, t: float, acked: bool = True) -> dict[str, Any]:
    return {"t": t, "event": "AgentInstanceDeleted", "instance_id": instance, "sequence": 1, "acked": acked}


def session(sid: str, room: str, instance: str, *, live: bool = True) -> dict[str, Any]:
    return {
        "session_id": sid,
        "room_id": room,
        "agent_user_id": f"ag_{room}",
        "instance_id": instance,
        "live": live,
        "possible_leak": False,
    }


def test_a_clean_run_counts_nothing_but_the_creates() -> None:
    calls = [create("r1", "i1"), create("r2", "i2"), {"action": "DeleteAgentInstance", "instance_id": "i1"}]
    sessions = [session("s1", "r1", "i1", live=False), session("s2", "r2", "i2", live=False)]
    counts = leak_counts(calls, [], sessions, [Acked("s1", "i1", "r1"), Acked("s2", "i2", "r2")])
    assert counts.creates_at_zego == 2
    assert (counts.double_creates, counts.lost_acked, counts.leaked, counts.over_cap) == (0, 0, 0, 0)
    assert counts.unknown_creates == 0 and counts.faults == {}


def test_two_instances_in_one_intent_room_are_a_double_create() -> None:
    calls = [create("r1", "i1"), create("r1", "i2"), create("r1", "i3"), create("r2", "i4")]
    counts = leak_counts(calls, [], [session("s1", "r1", "i1")], [])
    assert counts.double_creates == 2
    # Refused or unanswered creates created nothing: they are not instances.
    counts = leak_counts([create("r1", "i1"), create("r1", None, code=None, fault="timeout")], [], [], [])
    assert counts.double_creates == 0 and counts.creates_at_zego == 1


def test_a_retry_after_zego_deleted_the_first_instance_is_no_double_create() -> None:
    # The faults run's two "double creates" (room chaos_faults_8): a create whose answer was lost
    # (i1 at t=1), its orphan deleted once AgentInstanceCreated revealed it (t=1.08, confirmed by
    # AgentInstanceDeleted at t=1.09), then the client's AIP-155 retry created i2 at t=1.2.
    calls = [
        create("r1", "i1", fault="lose_answer", t=1.0),
        delete("i1", 1.08),
        create("r1", "i2", t=1.2),
        delete("i2", 1.5),
    ]
    counts = leak_counts(calls, [], [], [], [deleted_callback("i1", 1.09)])
    assert (counts.double_creates, counts.recreated_after_gone, counts.creates_at_zego) == (0, 1, 2)
    # AgentInstanceDeleted alone (MaxIdleTime, a kick, or a delete whose answer was lost) is
    # ZEGO's word too, delivered or not.
    calls = [create("r1", "i1", t=1.0), create("r1", "i2", t=1.2)]
    counts = leak_counts(calls, [], [], [], [deleted_callback("i1", 1.1, acked=False)])
    assert (counts.double_creates, counts.recreated_after_gone) == (0, 1)


def test_a_create_while_the_earlier_instance_may_still_run_is_a_double_create() -> None:
    # Still running when the retry was sent: deleted only afterwards.
    calls = [create("r1", "i1", t=1.0), create("r1", "i2", t=1.2), delete("i1", 1.3)]
    counts = leak_counts(calls, [], [], [], [deleted_callback("i1", 1.31)])
    assert (counts.double_creates, counts.recreated_after_gone) == (1, 0)
    # Deletes that did not delete: refused, never run (a 503 or a held request), or graceful
    # (ZEGO finishes it later; only its AgentInstanceDeleted says when).
    for failed in (
        delete("i1", 1.1, code=410000001, fault="code_410000001"),
        delete("i1", 1.1, code=None, fault="http_503"),
        delete("i1", 1.1, code=None, fault="timeout"),
        delete("i1", 1.1, graceful=True),
    ):
        counts = leak_counts([create("r1", "i1", t=1.0), failed, create("r1", "i2", t=1.2)], [], [], [])
        assert counts.double_creates == 1, failed
    # A delete ZEGO ran whose answer was lost did delete; "already gone" (410001002) says so too.
    for done in (delete("i1", 1.1, fault="lose_answer"), delete("i1", 1.1, code=410001002)):
        counts = leak_counts([create("r1", "i1", t=1.0), done, create("r1", "i2", t=1.2)], [], [], [])
        assert counts.double_creates == 0, done
    # Concurrent creates in one room: each later one is a double while the first runs.
    counts = leak_counts(
        [create("r1", "i1", t=1.0), create("r1", "i2", t=1.0), create("r1", "i3", t=1.1)], [], [], []
    )
    assert counts.double_creates == 2


def test_gone_at_takes_the_earliest_word_from_zego_and_when_zego_had_acted() -> None:
    calls = [delete("i1", 5.0), delete("i1", 7.0, code=410001002), delete("i2", 3.0, code=410000001)]
    gone = gone_at(calls, [deleted_callback("i1", 6.0), deleted_callback("i3", 2.0)])
    assert gone == {"i1": 5.01, "i3": 2.0}


def test_possible_leaks_whose_instances_zego_ended_must_be_cleared() -> None:
    leak = {**session("s1", "r1", "", live=False), "instance_id": "", "possible_leak": True}
    never = {**session("s2", "r2", "", live=False), "instance_id": "", "possible_leak": True}
    calls = [create("r1", "i1", fault="lose_answer"), create("r2", None, code=None, fault="timeout")]
    counts = leak_counts(calls, [], [leak, never], [])
    # i1 is gone (not running) but s1 still holds its slot; ZEGO never created anything for s2.
    assert (counts.uncleared_leaks, counts.possible_leaks_never_created, counts.leaked) == (1, 1, 0)
    # Still running: a leak, not an uncleared row.
    counts = leak_counts(calls, ["i1"], [leak, never], [])
    assert (counts.uncleared_leaks, counts.leaked, counts.leaked_unknown) == (0, 1, 1)
    cleared = {**leak, "possible_leak": False}
    assert leak_counts(calls, [], [cleared, never], []).uncleared_leaks == 0


def test_what_only_max_idle_time_ended_is_told_apart_by_whether_the_ledger_knew_it() -> None:
    at_leave = [session("s1", "r1", "i1", live=False), session("s2", "r2", "", live=False)]
    counts = idle_counts(["i1", "i2", "i3"], ["i3"], at_leave)
    assert (counts.idle_ended_known, counts.idle_ended_unknown) == (1, 1)


def test_an_acknowledged_create_the_ledger_lost_or_changed_is_counted() -> None:
    acked = [Acked("s1", "i1", "r1"), Acked("s2", "i2", "r2"), Acked("s3", "i3", "r3")]
    sessions = [session("s1", "r1", "i1"), session("s2", "r2", "other")]  # s3 missing, s2 changed
    assert leak_counts([], [], sessions, acked).lost_acked == 2


def test_what_zego_still_runs_is_a_leak_and_unknown_ids_are_told_apart() -> None:
    sessions = [session("s1", "r1", "i1", live=False)]  # the ledger knows i1 (e.g. a failed orphan delete)
    counts = leak_counts([create("r1", "i1"), create("r9", "i9")], ["i1", "i9"], sessions, [])
    assert counts.leaked == 2 and counts.leaked_unknown == 1
    assert counts.unknown_creates == 1  # nobody reserved room r9 / its agent user id


def test_creates_refused_for_zegos_cap_are_over_cap_and_faults_are_tallied() -> None:
    calls = [
        create("r1", None, code=410000011),
        {"action": "CreateDigitalHumanAgentInstance", "code": 410001031, "room_id": "r2"},
        create("r3", None, code=410000001, fault="code_410000001"),
        create("r4", "i4", fault="lose_answer"),
        {"action": "DeleteAgentInstance", "code": 410000001, "fault": "code_410000001"},
    ]
    counts = leak_counts(calls, [], [], [])
    assert counts.over_cap == 2
    assert counts.creates_at_zego == 1  # the lost answer created an instance
    assert counts.faults == {
        "CreateAgentInstance:code_410000001": 1,
        "CreateAgentInstance:lose_answer": 1,
        "DeleteAgentInstance:code_410000001": 1,
    }


def ev(cursor: int, instance: str = "i1", sequence: int = 0) -> dict[str, Any]:
    return {"cursor": cursor, "instance_id": instance, "sequence": sequence}


def cb(sequence: int, acked: bool, instance: str = "i1") -> dict[str, Any]:
    return {"instance_id": instance, "sequence": sequence, "acked": acked, "event": "LLMResult"}


def test_events_lost_and_duplicated_per_subscriber() -> None:
    callbacks = [cb(10, False), cb(10, True), cb(11, True), cb(12, False), cb(13, True)]
    logged = [ev(1, sequence=10), ev(2, sequence=11), ev(3)]  # 13 acked but never logged; 3 is ours
    complete = [ev(1, sequence=10), ev(2, sequence=11), ev(3)]
    gap_and_repeat = [ev(1, sequence=10), ev(1, sequence=10), ev(3)]  # lost 2, got 1 twice
    counts = event_counts(callbacks, logged, [complete, gap_and_repeat], resumes=4)
    assert counts.acked_callbacks == 3
    assert counts.dropped_by_zego == 1  # 12: tried, never acknowledged
    assert counts.lost_in_ledger == 1  # 13
    assert counts.logged == 3 and counts.delivered == 6 and counts.subscribers == 2
    assert counts.lost == 1 and counts.duplicated == 1 and counts.resumes == 4


def test_one_callback_stored_under_two_cursors_is_a_duplicate() -> None:
    logged = [ev(1, sequence=10), ev(2, sequence=10)]
    counts = event_counts([cb(10, True)], logged, [logged], resumes=0)
    assert counts.lost == 0 and counts.duplicated == 1


def test_rows_judge_every_target_against_zero() -> None:
    counts = leak_counts([create("r1", "i1"), create("r1", "i2")], ["i2"], [], [])
    rows = {r.metric: r for r in rows_for("w", {**counts.__dict__, "acked": 0})}
    assert rows["double_creates"].verdict == "FAIL" and rows["double_creates"].value == 1
    assert rows["leaked"].verdict == "FAIL" and rows["over_cap"].verdict == "PASS"
    assert rows["uncleared_leaks"].verdict == "PASS" and rows["recreated_after_gone"].verdict == "info"
    assert rows["acked"].verdict == "info"


def test_callbacks_acknowledged_after_their_sessions_end_are_withheld_not_lost() -> None:
    callbacks = [
        {**cb(10, True), "t": 100.0},  # before the end: must be logged, and is not: lost
        {**cb(11, True), "t": 105.0},  # after the end: kept hidden by design
        {**cb(12, True, instance="i2"), "t": 105.0},  # i2 never ended: lost
    ]
    counts = event_counts(callbacks, [], [], resumes=0, ended_at={"i1": 104.0})
    assert counts.lost_in_ledger == 2 and counts.withheld_after_end == 1
