"""Ownership over every RPC of SessionService and EventService, agents as shared templates, the
room-token rule, and the audit trail: with JWT authentication on, a caller cannot see another
caller's session, a viewer sees both and changes neither, an admin does anything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from agentgw_client.gen.agentgw.v1 import agent_pb2
from agentgw_client.gen.agentgw.v1 import agent_service_pb2 as agents_api
from agentgw_client.gen.agentgw.v1 import audit_service_pb2 as audit_api
from agentgw_client.gen.agentgw.v1 import event_service_pb2 as events_api
from agentgw_client.gen.agentgw.v1 import room_token_service_pb2 as tokens_api
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from tests.api.sessions_helpers import register_agent, voice_request
from tests.auth.identity import Client, Identities, identity_gateway
from tests.conftest import Emulator, rich_error

NF, PD, OK = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.OK

Request = Callable[[str], tuple[str, Any]]

# Every SessionService RPC that names a session, with a valid request, and whether it changes it.
SESSION_RPCS: list[tuple[str, Request, bool]] = [
    ("GetSession", lambda sid: ("GetSession", api.GetSessionRequest(session_id=sid)), False),
    ("GetAgentStatus", lambda sid: ("GetAgentStatus", api.GetAgentStatusRequest(session_id=sid)), False),
    ("GetContext", lambda sid: ("GetContext", api.GetContextRequest(session_id=sid)), False),
    (
        "UpdateSession",
        lambda sid: (
            "UpdateSession",
            api.UpdateSessionRequest(
                session_id=sid,
                user_stream_id="user_1_stream_b",
                update_mask=field_mask_pb2.FieldMask(paths=["user_stream_id"]),
            ),
        ),
        True,
    ),
    ("SendText", lambda sid: ("SendText", api.SendTextRequest(session_id=sid, text="hello")), True),
    ("Speak", lambda sid: ("Speak", api.SpeakRequest(session_id=sid, text="hello")), True),
    ("Interrupt", lambda sid: ("Interrupt", api.InterruptRequest(session_id=sid)), True),
    ("ResetContext", lambda sid: ("ResetContext", api.ResetContextRequest(session_id=sid)), True),
    (
        "AppendContext",
        lambda sid: (
            "AppendContext",
            api.AppendContextRequest(
                session_id=sid, messages=[spb.ChatMessage(role=spb.CHAT_ROLE_USER, content="hi")]
            ),
        ),
        True,
    ),
    (
        "StartListening",
        lambda sid: ("StartListening", api.StartListeningRequest(session_id=sid, sequence=1)),
        True,
    ),
    (
        "StopListening",
        lambda sid: ("StopListening", api.StopListeningRequest(session_id=sid, sequence=2)),
        True,
    ),
]


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return OK


@pytest.fixture
async def ids(emulator: Emulator, tmp_path: Path, database_url: str | None) -> AsyncIterator[Identities]:
    await register_agent(emulator)
    async with identity_gateway(emulator, tmp_path, database_url) as identities:
        yield identities


async def create(client: Client, user: str, room: str) -> spb.Session:
    response = await client.sessions.CreateSession(voice_request(user=user, room=room))
    return response.session


async def test_every_session_rpc_follows_the_ownership_rules(ids: Identities) -> None:
    session = await create(ids["alice"], "user_a", "room_a")
    assert session.owner == "alice"
    sid = session.session_id
    for name, build, changes in SESSION_RPCS:
        method, request = build(sid)
        for who, expected in (
            ("bob", {NF}),
            ("sre", {PD} if changes else None),
            ("ops", None),
            ("alice", None),
        ):
            code = await code_of(getattr(ids[who].sessions, method)(request))
            if expected is None:
                # Allowed: whatever ZEGO says (walkie-talkie RPCs are FAILED_PRECONDITION in this mode).
                assert code not in {NF, PD, grpc.StatusCode.UNAUTHENTICATED}, (name, who, code)
            else:
                assert code in expected, (name, who, code)
    # EndSession last: another caller cannot, a viewer may not, an admin can.
    end = api.EndSessionRequest(session_id=sid)
    assert await code_of(ids["bob"].sessions.EndSession(end)) == NF
    assert await code_of(ids["sre"].sessions.EndSession(end)) == PD
    ended = await ids["ops"].sessions.EndSession(end)
    assert ended.session.state == spb.SESSION_STATE_ENDED


async def test_not_found_for_another_callers_session_is_the_same_as_for_none(ids: Identities) -> None:
    sid = (await create(ids["alice"], "user_a", "room_a")).session_id
    with pytest.raises(grpc.aio.AioRpcError) as theirs:
        await ids["bob"].sessions.GetSession(api.GetSessionRequest(session_id=sid))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await ids["bob"].sessions.GetSession(api.GetSessionRequest(session_id="f" * 32))
    a, b = rich_error(theirs.value), rich_error(missing.value)
    assert (a.code, a.reason) == (b.code, b.reason) == (NF, "SESSION_NOT_FOUND")


async def test_list_sessions_shows_callers_their_own_and_viewers_everything(ids: Identities) -> None:
    mine = (await create(ids["alice"], "user_a", "room_a")).session_id
    theirs = (await create(ids["bob"], "user_b", "room_b")).session_id

    async def listed(who: str) -> set[str]:
        response = await ids[who].sessions.ListSessions(api.ListSessionsRequest())
        return {s.session_id for s in response.sessions}

    assert await listed("alice") == {mine}
    assert await listed("bob") == {theirs}
    assert await listed("sre") == await listed("ops") == {mine, theirs}


async def test_events_are_scoped_to_the_callers_sessions(ids: Identities) -> None:
    mine = (await create(ids["alice"], "user_a", "room_a")).session_id
    theirs = (await create(ids["bob"], "user_b", "room_b")).session_id
    await ids["alice"].sessions.EndSession(api.EndSessionRequest(session_id=mine))
    await ids["bob"].sessions.EndSession(api.EndSessionRequest(session_id=theirs))

    async def listed(who: str) -> set[str]:
        response = await ids[who].events.ListEvents(events_api.ListEventsRequest(page_size=1000))
        return {e.session_id for e in response.events}

    assert await listed("alice") == {mine}
    assert await listed("sre") == {mine, theirs}
    # Naming another caller's session is NOT_FOUND, for ListEvents and WatchEvents alike.
    other = events_api.EventFilter(session_ids=[theirs])
    assert await code_of(ids["alice"].events.ListEvents(events_api.ListEventsRequest(filter=other))) == NF
    stream = ids["alice"].events.WatchEvents(
        events_api.WatchEventsRequest(filter=other, start=events_api.START_POSITION_OLDEST)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stream:
            pass
    assert info.value.code() == NF
    # A replay of everything gives alice her own session's events only, ending with hers.
    seen: list[str] = []
    stream = ids["alice"].events.WatchEvents(
        events_api.WatchEventsRequest(
            filter=events_api.EventFilter(session_ids=[mine]), start=events_api.START_POSITION_OLDEST
        )
    )
    async for response in stream:
        if response.HasField("event"):
            seen.append(response.event.session_id)
    assert seen and set(seen) == {mine}


async def test_live_events_reach_only_their_owner_and_viewers(ids: Identities) -> None:
    got: dict[str, list[str]] = {"alice": [], "bob": [], "sre": []}

    async def watch(who: str) -> None:
        stream = ids[who].events.WatchEvents(events_api.WatchEventsRequest(), timeout=30)
        async for response in stream:
            if response.HasField("event"):
                got[who].append(response.event.session_id)

    tasks = [asyncio.create_task(watch(who)) for who in got]
    try:
        await asyncio.sleep(0.3)  # the streams subscribe
        mine = (await create(ids["alice"], "user_a", "room_a")).session_id
        await ids["alice"].sessions.EndSession(api.EndSessionRequest(session_id=mine))

        async def delivered() -> None:
            while not (got["alice"] and got["sre"]):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(delivered(), 10)
        await asyncio.sleep(0.3)  # time for a wrong delivery to bob to show up
        assert set(got["alice"]) == set(got["sre"]) == {mine}
        assert got["bob"] == []
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_agents_are_shared_templates_changed_by_their_creator_or_an_admin(ids: Identities) -> None:
    llm = agent_pb2.LlmConfig(url="https://llm.example/v1", api_key="k", model="m")
    tts = agent_pb2.TtsConfig(vendor="ByteDance")
    tts.app.update({"appid": "a", "token": "t", "cluster": "c"})
    template = agent_pb2.Agent(agent_id="tmpl", llm=llm, tts=tts)
    await ids["alice"].agents.CreateAgent(agents_api.CreateAgentRequest(agent=template))
    assert (
        await ids["bob"].agents.GetAgent(agents_api.GetAgentRequest(agent_id="tmpl"))
    ).agent.agent_id == "tmpl"
    # bob may use it for a session...
    request = voice_request(user="user_b", room="room_b")
    request.agent_id = "tmpl"
    await ids["bob"].sessions.CreateSession(request)
    # ...but not change or delete it; a viewer may not create one.
    update = agents_api.UpdateAgentRequest(
        agent=agent_pb2.Agent(agent_id="tmpl", display_name="x"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
    )
    assert await code_of(ids["bob"].agents.UpdateAgent(update)) == PD
    assert await code_of(ids["bob"].agents.DeleteAgent(agents_api.DeleteAgentRequest(agent_id="tmpl"))) == PD
    viewer_create = agents_api.CreateAgentRequest(agent=agent_pb2.Agent(agent_id="v1", llm=llm))
    assert await code_of(ids["sre"].agents.CreateAgent(viewer_create)) == PD
    assert await code_of(ids["alice"].agents.UpdateAgent(update)) == OK
    assert await code_of(ids["ops"].agents.DeleteAgent(agents_api.DeleteAgentRequest(agent_id="tmpl"))) == OK


async def test_room_tokens_only_for_the_user_of_an_owned_live_session(ids: Identities) -> None:
    session = await create(ids["alice"], "user_a", "room_a")

    def token(user: str, room: str | None = None) -> tokens_api.CreateRoomTokenRequest:
        request = tokens_api.CreateRoomTokenRequest(user_id=user)
        if room is not None:
            request.privilege.CopyFrom(tokens_api.RoomPrivilege(room_id=room, can_login=True))
        return request

    assert await code_of(ids["alice"].tokens.CreateRoomToken(token("user_a"))) == OK
    assert await code_of(ids["alice"].tokens.CreateRoomToken(token("user_a", "room_a"))) == OK
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ids["alice"].tokens.CreateRoomToken(token("user_a", "room_other"))
    assert (rich_error(info.value).code, rich_error(info.value).reason) == (PD, "TOKEN_NOT_ALLOWED")
    assert await code_of(ids["alice"].tokens.CreateRoomToken(token("someone_else"))) == PD
    assert await code_of(ids["bob"].tokens.CreateRoomToken(token("user_a"))) == PD
    assert await code_of(ids["sre"].tokens.CreateRoomToken(token("user_a"))) == PD
    assert await code_of(ids["ops"].tokens.CreateRoomToken(token("anyone"))) == OK
    # Once the session has ended, its user gets no more tokens from alice.
    await ids["alice"].sessions.EndSession(api.EndSessionRequest(session_id=session.session_id))
    assert await code_of(ids["alice"].tokens.CreateRoomToken(token("user_a"))) == PD


async def test_every_mutating_rpc_leaves_an_audit_record(ids: Identities) -> None:
    session = await create(ids["alice"], "user_a", "room_a")
    sid = session.session_id
    await ids["alice"].sessions.Speak(api.SpeakRequest(session_id=sid, text="hello"))
    await code_of(ids["bob"].sessions.EndSession(api.EndSessionRequest(session_id=sid)))
    await ids["alice"].tokens.CreateRoomToken(tokens_api.CreateRoomTokenRequest(user_id="user_a"))
    await ids["ops"].sessions.EndSession(api.EndSessionRequest(session_id=sid))
    # Reads are not audited.
    await ids["alice"].sessions.GetSession(api.GetSessionRequest(session_id=sid))

    records = (await ids["sre"].audit.ListAuditRecords(audit_api.ListAuditRecordsRequest())).records
    trail = [
        (r.principal, r.role, r.rpc.rsplit("/", 1)[1], r.session_id, r.target, r.code)
        for r in reversed(records)
    ]
    assert trail == [
        ("alice", "caller", "CreateSession", sid, "", "OK"),
        ("alice", "caller", "Speak", sid, "", "OK"),
        ("bob", "caller", "EndSession", sid, "", "NOT_FOUND"),
        ("alice", "caller", "CreateRoomToken", "", "user_a", "OK"),
        ("ops", "admin", "EndSession", sid, "", "OK"),
    ]
    assert all(r.request_id for r in records)
    # Filters and paging.
    by_bob = await ids["ops"].audit.ListAuditRecords(audit_api.ListAuditRecordsRequest(principal="bob"))
    assert [r.code for r in by_bob.records] == ["NOT_FOUND"]
    first = await ids["ops"].audit.ListAuditRecords(
        audit_api.ListAuditRecordsRequest(session_id=sid, page_size=2)
    )
    assert len(first.records) == 2 and first.next_page_token
    rest = await ids["ops"].audit.ListAuditRecords(
        audit_api.ListAuditRecordsRequest(session_id=sid, page_size=2, page_token=first.next_page_token)
    )
    ids_seen = [r.id for r in [*first.records, *rest.records]]
    assert ids_seen == sorted(ids_seen, reverse=True) and len(ids_seen) == 4  # create, speak, two ends
    # Callers may not read the trail.
    assert await code_of(ids["alice"].audit.ListAuditRecords(audit_api.ListAuditRecordsRequest())) == PD


async def test_a_request_id_of_another_caller_never_returns_their_session(ids: Identities) -> None:
    request = voice_request(user="user_a", room="room_a")
    request.request_id = "shared-request-id"
    await ids["alice"].sessions.CreateSession(request)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ids["bob"].sessions.CreateSession(request)
    assert rich_error(info.value).reason == "REQUEST_ID_REUSED"


async def test_a_change_is_audited_in_its_own_transaction_before_its_outcome_is_known(
    ids: Identities, emulator: Emulator
) -> None:
    """The record is written, as PENDING, with the create's first ledger change (the reservation),
    so a crash while ZEGO answers leaves it behind; the outcome completes it."""
    await emulator.fault(action="CreateAgentInstance", latency_ms=1500, count=1)
    creating = asyncio.ensure_future(create(ids["alice"], "user_a", "room_a"))
    try:
        for _ in range(100):
            records = (await ids["ops"].audit.ListAuditRecords(audit_api.ListAuditRecordsRequest())).records
            if records:
                break
            await asyncio.sleep(0.02)
        [pending] = records
        assert (pending.principal, pending.rpc.rsplit("/", 1)[1], pending.code) == (
            "alice",
            "CreateSession",
            "PENDING",
        )
        # Written with the PENDING row: the row the record talks about already exists.
        listed = (await ids["ops"].sessions.ListSessions(api.ListSessionsRequest())).sessions
        assert [s.state for s in listed] == [spb.SESSION_STATE_PENDING]
    finally:
        session = await creating
    [done] = (await ids["ops"].audit.ListAuditRecords(audit_api.ListAuditRecordsRequest())).records
    assert (done.id, done.code, done.session_id) == (pending.id, "OK", session.session_id)
