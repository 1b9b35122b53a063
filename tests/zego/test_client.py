"""ZegoClient against httpx.MockTransport, plus the pieces it is built from (regions, error table,
rate limiter). Every test runs in well under a second: waits are tens of milliseconds at most.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from service.zego import digital_human as dh
from service.zego import exceptions as exc
from service.zego import models as m
from service.zego.actions import DIGITAL_HUMAN_ACTIONS, READ_ONLY_ACTIONS, Action
from service.zego.auth import ZegoSignatureAuth
from service.zego.client import ZegoClient
from service.zego.ratelimit import RateLimiter
from service.zego.regions import REGION_BASE_URLS, resolve_base_url
from service.zego.signing import verify_api_signature

APP_ID = 12345
SECRET = "9193cc662a4c0ec135ec71fb57194b38"
API_KEY = "sk-live-0123456789abcdef"
TTS_TOKEN = "tts-token-fedcba9876543210"
NOW = 1_700_000_000
REQUEST_ID = "1843985617336143872"
BIG_ROUND = 1921825797275873300

Handler = Callable[[httpx.Request], Any]


def answer(code: int = 0, data: Any = None, message: str = "Succeed") -> httpx.Response:
    return httpx.Response(200, json={"Code": code, "Message": message, "RequestId": REQUEST_ID, "Data": data})


class Recorder:
    """A MockTransport handler that records requests and replays scripted outcomes (last one repeats)."""

    def __init__(self, *outcomes: Any) -> None:
        # The default Data satisfies every Round/Status action; other actions ignore unknown keys.
        self.outcomes = list(outcomes) or [answer(data={"Round": 1, "Status": "IDLE"})]
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        outcome = self.outcomes[min(len(self.requests), len(self.outcomes)) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        if callable(outcome):
            result = outcome(request)
            outcome = await result if asyncio.iscoroutine(result) else result
        assert isinstance(outcome, httpx.Response)
        return outcome


class Observer:
    """Records every observer callback."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, str, float]] = []
        self.waits: list[tuple[str, float]] = []
        self.retries: list[str] = []

    def request_finished(self, action: str, outcome: str, seconds: float) -> None:
        self.finished.append((action, outcome, seconds))

    def rate_limit_waited(self, action: str, seconds: float) -> None:
        self.waits.append((action, seconds))

    def retried(self, action: str) -> None:
        self.retries.append(action)


def make_client(handler: Handler, **overrides: Any) -> ZegoClient:
    options: dict[str, Any] = {
        "app_id": APP_ID,
        "server_secret": SECRET,
        "base_url": "http://zego.test",
        "rate_per_second": 1000.0,
        "backoff_initial": 0.001,
        "backoff_max": 0.002,
        "clock": lambda: NOW + 0.9,
    }
    options.update(overrides)
    return ZegoClient(transport=httpx.MockTransport(handler), **options)


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def zego(recorder: Recorder) -> AsyncIterator[ZegoClient]:
    async with make_client(recorder) as client:
        yield client


def sample_llm() -> m.LLM:
    return m.LLM(url="https://llm.example/v1/chat/completions", api_key=API_KEY, model="gpt")


def create_request() -> m.CreateAgentInstanceRequest:
    return m.CreateAgentInstanceRequest(
        agent_id="xiaozhi",
        user_id="user_1",
        rtc=m.RTC(room_id="room_1", agent_stream_id="as", agent_user_id="au", user_stream_id="us"),
        llm=sample_llm(),
        tts=m.TTS(vendor="MiniMax", params={"app": {"api_key": TTS_TOKEN}}),
    )


LIST = m.ListAgentsRequest()
STATUS = m.QueryAgentInstanceStatusRequest(agent_instance_id="1")


# --- request shape and signing -------------------------------------------------------------------


async def test_request_is_signed_and_shaped(zego: ZegoClient, recorder: Recorder) -> None:
    request = create_request()
    recorder.outcomes = [answer(data={"AgentInstanceId": "1912122918452641792"})]
    data = await zego.create_agent_instance(request)
    assert data == m.CreateAgentInstanceData(agent_instance_id="1912122918452641792")

    (sent,) = recorder.requests
    assert sent.method == "POST"
    assert sent.url.path == "/"
    assert sent.headers["content-type"] == "application/json"
    query = sent.url.params
    assert list(query.keys()) == [
        "Action",
        "AppId",
        "SignatureNonce",
        "Timestamp",
        "Signature",
        "SignatureVersion",
    ]
    assert query["Action"] == "CreateAgentInstance"
    assert query["AppId"] == str(APP_ID)
    assert query["Timestamp"] == str(NOW)  # whole seconds, truncated
    assert query["SignatureVersion"] == "2.0"
    # Recompute the signature from what actually went on the wire.
    assert verify_api_signature(
        int(query["AppId"]), query["SignatureNonce"], SECRET, int(query["Timestamp"]), query["Signature"]
    )
    assert json.loads(sent.content) == request.to_wire()


async def test_official_vector_through_the_client(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    monkeypatch.setattr("service.zego.auth.new_nonce", lambda: "4fd24687296dd9f3")
    async with make_client(recorder, clock=lambda: 1615186943.7) as zego:
        await zego.register_agent(m.RegisterAgentRequest(agent_id="a"))
    params = recorder.requests[0].url.params
    assert params["Signature"] == "43e5cfcca828314675f91b001390566a"
    assert params["Timestamp"] == "1615186943"


async def test_nonce_is_16_hex_and_fresh_per_request(zego: ZegoClient, recorder: Recorder) -> None:
    for _ in range(3):
        await zego.unregister_agent(m.UnregisterAgentRequest(agent_id="a"))
    nonces = [r.url.params["SignatureNonce"] for r in recorder.requests]
    assert all(re.fullmatch(r"[0-9a-f]{16}", n) for n in nonces)
    assert len(set(nonces)) == 3


async def test_region_names_resolve_in_the_client() -> None:
    async with ZegoClient(app_id=APP_ID, server_secret=SECRET, base_url="sgp") as client:
        assert client.base_url == "https://aigc-aiagent-api-sgp.zegotech.cn"


async def test_base_url_path_prefix_is_kept(recorder: Recorder) -> None:
    async with make_client(recorder, base_url="http://127.0.0.1:9/zego/") as zego:
        await zego.register_agent(m.RegisterAgentRequest(agent_id="a"))
    assert str(recorder.requests[0].url).startswith("http://127.0.0.1:9/zego/?Action=RegisterAgent&AppId=")


# --- every action: name, body and typed result ---------------------------------------------------

IID = "1912122918452641792"
CASES: list[tuple[str, m.WireModel, Any, Any]] = [
    ("register_agent", m.RegisterAgentRequest(agent_id="a"), None, None),
    ("unregister_agent", m.UnregisterAgentRequest(agent_id="a"), None, None),
    ("update_agent", m.UpdateAgentRequest(agent_id="a", name="n"), None, None),
    (
        "list_agents",
        m.ListAgentsRequest(limit=10),
        {"Total": 1, "Agents": [{"AgentId": "a"}], "Cursor": ""},
        m.ListAgentsData(total=1, agents=[m.Agent(agent_id="a")]),
    ),
    (
        "query_agents",
        m.QueryAgentsRequest(agent_ids=["a"]),
        {"Agents": [{"AgentId": "a"}]},
        m.QueryAgentsData(agents=[m.Agent(agent_id="a")]),
    ),
    (
        "create_agent_instance",
        create_request(),
        {"AgentInstanceId": IID},
        m.CreateAgentInstanceData(agent_instance_id=IID),
    ),
    (
        "create_digital_human_agent_instance",
        m.CreateDigitalHumanAgentInstanceRequest(
            **create_request().model_dump(), digital_human=m.DigitalHuman(digital_human_id="dh")
        ),
        {"AgentInstanceId": IID, "DigitalHumanConfig": "e30="},
        m.CreateDigitalHumanAgentInstanceData(agent_instance_id=IID, digital_human_config="e30="),
    ),
    (
        "create_live_digital_human_agent_instance",
        m.CreateLiveDigitalHumanAgentInstanceRequest(
            agent_id="a", digital_human=m.DigitalHuman(digital_human_id="dh"), cdn=m.CDN(url="rtmp://x/y")
        ),
        {"AgentInstanceId": IID, "DigitalHumanConfig": "e30="},
        m.CreateLiveDigitalHumanAgentInstanceData(agent_instance_id=IID, digital_human_config="e30="),
    ),
    (
        "update_agent_instance",
        m.UpdateAgentInstanceRequest(agent_instance_id=IID, llm=sample_llm()),
        None,
        None,
    ),
    ("delete_agent_instance", m.DeleteAgentInstanceRequest(agent_instance_id=IID), None, None),
    (
        "send_agent_instance_llm",
        m.SendAgentInstanceLLMRequest(agent_instance_id=IID, text="hi"),
        {"Round": BIG_ROUND},
        m.RoundData(round=BIG_ROUND),
    ),
    (
        "send_agent_instance_tts",
        m.SendAgentInstanceTTSRequest(agent_instance_id=IID, text="hi"),
        {"Round": 158422001},
        m.RoundData(round=158422001),
    ),
    (
        "query_agent_instance_status",
        m.QueryAgentInstanceStatusRequest(agent_instance_id=IID),
        {"Status": "SPEAKING"},
        m.QueryAgentInstanceStatusData(status="SPEAKING"),
    ),
    (
        "interrupt_agent_instance",
        m.InterruptAgentInstanceRequest(agent_instance_id=IID),
        {"Round": 7},
        m.RoundData(round=7),
    ),
    (
        "get_agent_instance_msg_list",
        m.GetAgentInstanceMsgListRequest(agent_instance_id=IID),
        {"Total": 1, "MessageList": [{"Role": "user", "Content": "你好"}]},
        m.GetAgentInstanceMsgListData(total=1, message_list=[m.Message(role="user", content="你好")]),
    ),
    ("reset_agent_instance_msg_list", m.ResetAgentInstanceMsgListRequest(agent_instance_id=IID), None, None),
    (
        "add_agent_instance_msg",
        m.AddAgentInstanceMsgRequest(
            agent_instance_id=IID, messages=[m.Message(role="assistant", content="x")]
        ),
        None,
        None,
    ),
    (
        "start_listening",
        m.StartListeningRequest(agent_instance_id=IID, sequence=BIG_ROUND),
        {"Round": 1},
        m.RoundData(round=1),
    ),
    (
        "stop_listening",
        m.StopListeningRequest(agent_instance_id=IID, sequence=2),
        {"Round": 2},
        m.RoundData(round=2),
    ),
    (
        "get_digital_human_list",
        dh.GetDigitalHumanListRequest(fetch_mode=dh.FETCH_PUBLIC, offset=0, limit=20),
        {"Total": 1, "DigitalHumans": [{"DigitalHumanId": "d", "Name": "n", "AvatarUrl": "https://x/a.png"}]},
        dh.GetDigitalHumanListData(
            total=1,
            digital_humans=[
                dh.DigitalHumanSummary(digital_human_id="d", name="n", avatar_url="https://x/a.png")
            ],
        ),
    ),
    (
        "get_digital_human_info",
        dh.GetDigitalHumanInfoRequest(digital_human_id="d"),
        {"DigitalHumanId": "d", "IsPublic": True, "Actions": [{"Action": "wave", "PreviewUrl": "u"}]},
        dh.DigitalHumanInfo(
            digital_human_id="d", is_public=True, actions=[dh.AvatarAction(action="wave", preview_url="u")]
        ),
    ),
    (
        "get_timbre_list",
        dh.GetTimbreListRequest(digital_human_id="d", limit=5),
        {"Total": 1, "Timbres": [{"TimbreId": "t", "Name": "v"}]},
        dh.GetTimbreListData(total=1, timbres=[dh.Timbre(timbre_id="t", name="v")]),
    ),
]


def test_cases_cover_every_action() -> None:
    assert [name for name, *_ in CASES] == [a.name.lower() for a in Action]
    assert len(Action) == 19 + len(DIGITAL_HUMAN_ACTIONS)


async def test_digital_human_actions_go_to_their_own_host(recorder: Recorder) -> None:
    async with make_client(
        recorder, base_url="http://127.0.0.1:9/agent", digital_human_base_url="http://127.0.0.1:9/dh"
    ) as zego:
        await zego.get_timbre_list(dh.GetTimbreListRequest())
        await zego.register_agent(m.RegisterAgentRequest(agent_id="a"))
    dh_url, agent_url = (str(r.url) for r in recorder.requests)
    assert dh_url.startswith("http://127.0.0.1:9/dh/?Action=GetTimbreList&AppId=")
    assert agent_url.startswith("http://127.0.0.1:9/agent/?Action=RegisterAgent&AppId=")
    # Signed the same way as the AI Agent API.
    query = recorder.requests[0].url.params
    assert verify_api_signature(
        int(query["AppId"]), query["SignatureNonce"], SECRET, int(query["Timestamp"]), query["Signature"]
    )


@pytest.mark.parametrize(
    ("agent_base", "expected"),
    [
        ("unified", "https://aigc-digitalhuman-api.zegotech.cn"),
        ("sgp", "https://aigc-digitalhuman-api.zegotech.cn"),
        ("http://127.0.0.1:9", "http://127.0.0.1:9/digitalhuman"),
    ],
)
async def test_digital_human_host_is_derived_when_unset(agent_base: str, expected: str) -> None:
    async with ZegoClient(app_id=APP_ID, server_secret=SECRET, base_url=agent_base) as client:
        assert client.digital_human_base_url == expected


def test_digital_human_host_names_and_urls() -> None:
    assert dh.resolve_digital_human_base("sample") == "https://aigc-digital-human-api.zegotech.cn"
    assert dh.resolve_digital_human_base("UNIFIED") == "https://aigc-digitalhuman-api.zegotech.cn"
    assert dh.resolve_digital_human_base("http://127.0.0.1:1/x/") == "http://127.0.0.1:1/x"
    with pytest.raises(ValueError, match="Digital Human API host"):
        dh.resolve_digital_human_base("sgp")


async def test_digital_human_actions_share_the_per_action_limiter(recorder: Recorder) -> None:
    recorder.outcomes = [answer(data={"DigitalHumanId": "d"})]
    async with make_client(recorder, rate_per_second=1.0) as zego:
        await zego.get_digital_human_info(dh.GetDigitalHumanInfoRequest(digital_human_id="d"))
        with pytest.raises(exc.ZegoDeadlineExceeded):
            await zego.get_digital_human_info(
                dh.GetDigitalHumanInfoRequest(digital_human_id="d"), timeout=0.2
            )
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(("method", "request_model", "data", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_every_action(
    zego: ZegoClient, recorder: Recorder, method: str, request_model: m.WireModel, data: Any, expected: Any
) -> None:
    recorder.outcomes = [answer(data=data)]
    result = await getattr(zego, method)(request_model, timeout=5.0)
    assert result == expected
    sent = recorder.requests[0]
    assert Action(sent.url.params["Action"]).name.lower() == method
    assert json.loads(sent.content) == request_model.to_wire()


@pytest.mark.parametrize("with_data", [False, True])
async def test_error_envelope_with_or_without_data(recorder: Recorder, with_data: bool) -> None:
    """ZEGO's docs disagree on whether an error carries Data; both forms give the same error."""
    body: dict[str, Any] = {"Code": 410001002, "Message": "gone", "RequestId": REQUEST_ID}
    if with_data:
        body["Data"] = None
    recorder.outcomes = [httpx.Response(200, json=body)]
    async with make_client(recorder) as zego:
        with pytest.raises(exc.ZegoInstanceNotFound) as info:
            await zego.delete_agent_instance(m.DeleteAgentInstanceRequest(agent_instance_id="1"))
    assert info.value.request_id == REQUEST_ID


async def test_data_keys_for_no_data_actions_are_ignored(zego: ZegoClient, recorder: Recorder) -> None:
    recorder.outcomes = [answer(data={"Whatever": 1})]
    await zego.delete_agent_instance(m.DeleteAgentInstanceRequest(agent_instance_id="1"))
    assert len(recorder.requests) == 1


async def test_big_round_survives_the_wire(zego: ZegoClient, recorder: Recorder) -> None:
    recorder.outcomes = [
        httpx.Response(200, content=f'{{"Code":0,"RequestId":"1","Data":{{"Round":{BIG_ROUND}}}}}')
    ]
    data = await zego.interrupt_agent_instance(m.InterruptAgentInstanceRequest(agent_instance_id="1"))
    assert data.round == BIG_ROUND


# --- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (100000005, exc.ZegoCredentialsRejected),
        (100000004, exc.ZegoCredentialsRejected),
        (410000002, exc.ZegoCredentialsRejected),
        (410000003, exc.ZegoInvalidRequest),
        (100000014, exc.ZegoInvalidRequest),
        (410001027, exc.ZegoDigitalHumanNotFound),
        (410001048, exc.ZegoDigitalHumanNotFound),
        (400000003, exc.ZegoDigitalHumanNotFound),
        (400000001, exc.ZegoInvalidRequest),
        (400000002, exc.ZegoCredentialsRejected),
        (410001025, exc.ZegoConcurrencyLimit),
        (410001031, exc.ZegoConcurrencyLimit),
        (410001008, exc.ZegoAgentAlreadyExists),
        (410001009, exc.ZegoAgentNotFound),
        (410001002, exc.ZegoInstanceNotFound),
        (410000011, exc.ZegoConcurrencyLimit),
        (410001031, exc.ZegoConcurrencyLimit),
        (410001025, exc.ZegoConcurrencyLimit),
        (410001029, exc.ZegoRateLimited),
        (410001013, exc.ZegoStateConflict),
        (410001049, exc.ZegoStateConflict),
        (410000001, exc.ZegoServiceError),
        (100000015, exc.ZegoServiceError),
        (499999999, exc.ZegoServiceError),
    ],
)
async def test_each_code_raises_its_class_without_retry(
    recorder: Recorder, code: int, cls: type[exc.ZegoApiError]
) -> None:
    recorder.outcomes = [answer(code=code, message="something went wrong")]
    observer = Observer()
    async with make_client(recorder, observer=observer) as zego:
        with pytest.raises(cls) as caught:
            await zego.list_agents(LIST)  # read-only, yet a ZEGO answer is never retried
    error = caught.value
    assert type(error) is cls
    assert (error.code, error.message, error.request_id, error.action) == (
        code,
        "something went wrong",
        REQUEST_ID,
        "ListAgents",
    )
    assert str(error) == f"ListAgents: code {code}: something went wrong (request_id={REQUEST_ID})"
    assert len(recorder.requests) == 1
    assert observer.finished[0][:2] == ("ListAgents", str(code))
    assert observer.retries == []


async def test_configured_rate_limit_code(recorder: Recorder) -> None:
    recorder.outcomes = [answer(code=410000099)]
    async with make_client(recorder, rate_limit_codes={410000099}) as zego:
        with pytest.raises(exc.ZegoRateLimited):
            await zego.query_agents(m.QueryAgentsRequest(agent_ids=["a"]))


def test_from_code_table() -> None:
    assert exc.from_code(410001008, "m", "r", "RegisterAgent").__class__ is exc.ZegoAgentAlreadyExists
    assert type(exc.from_code(1, "m", "r", "X", rate_limit_codes=[1])) is exc.ZegoRateLimited
    assert all(issubclass(c, exc.ZegoApiError) for c in exc.API_ERROR_CLASSES.values())
    assert issubclass(exc.ZegoTimeout, exc.ZegoTransportError)
    assert not issubclass(exc.ZegoDeadlineExceeded, exc.ZegoTransportError)


@pytest.mark.parametrize(
    ("response", "status_code"),
    [
        (httpx.Response(200, content=b"<html>busy</html>"), 200),
        (httpx.Response(200, json=["not", "an", "object"]), 200),
        (httpx.Response(200, json={"Message": "no code"}), 200),
        (httpx.Response(200, json={"Code": "0"}), 200),
        (httpx.Response(200, json={"Code": True}), 200),
        (httpx.Response(200, json={"Code": 0, "Data": {"MessageList": "not-a-list"}}), 200),
        (httpx.Response(403, json={"Code": 0}), 403),
    ],
)
async def test_unusable_answers_are_protocol_errors_and_not_retried(
    recorder: Recorder, response: httpx.Response, status_code: int
) -> None:
    recorder.outcomes = [response]
    async with make_client(recorder) as zego:
        with pytest.raises(exc.ZegoProtocolError) as caught:
            await zego.get_agent_instance_msg_list(m.GetAgentInstanceMsgListRequest(agent_instance_id="1"))
    assert caught.value.status_code == status_code
    assert len(recorder.requests) == 1


async def test_missing_required_data_is_a_protocol_error(zego: ZegoClient, recorder: Recorder) -> None:
    recorder.outcomes = [answer(data=None)]
    with pytest.raises(exc.ZegoProtocolError, match="AgentInstanceId"):
        await zego.create_agent_instance(create_request())


async def test_server_errors_are_retried_on_reads(zego: ZegoClient, recorder: Recorder) -> None:
    recorder.outcomes = [httpx.Response(503), httpx.Response(502), answer(data={"Status": "IDLE"})]
    assert (await zego.query_agent_instance_status(STATUS)).status == "IDLE"
    assert len(recorder.requests) == 3


# --- retries ------------------------------------------------------------------------------------


def transport_failures() -> list[tuple[Exception, type[exc.ZegoTransportError]]]:
    request = httpx.Request("POST", "http://zego.test/")
    return [
        (httpx.ConnectError("refused", request=request), exc.ZegoConnectError),
        (httpx.ConnectTimeout("slow", request=request), exc.ZegoTimeout),
        (httpx.ReadTimeout("slow", request=request), exc.ZegoTimeout),
        (httpx.ReadError("reset", request=request), exc.ZegoProtocolError),
        (httpx.RemoteProtocolError("garbage", request=request), exc.ZegoProtocolError),
    ]


@pytest.mark.parametrize(("failure", "cls"), transport_failures())
async def test_transport_errors_are_retried_on_read_only_actions(
    recorder: Recorder, failure: Exception, cls: type[exc.ZegoTransportError]
) -> None:
    recorder.outcomes = [failure, failure, answer(data={"Agents": []})]
    observer = Observer()
    async with make_client(recorder, observer=observer, max_retries=2) as zego:
        assert await zego.query_agents(m.QueryAgentsRequest(agent_ids=["a"])) == m.QueryAgentsData()
    assert len(recorder.requests) == 3
    assert observer.retries == ["QueryAgents", "QueryAgents"]
    assert [o for _, o, _ in observer.finished] == [cls("x", "y").outcome] * 2 + ["0"]
    # Every attempt is signed afresh.
    assert len({r.url.params["SignatureNonce"] for r in recorder.requests}) == 3


@pytest.mark.parametrize(("failure", "cls"), transport_failures())
async def test_transport_errors_are_not_retried_on_mutations(
    recorder: Recorder, failure: Exception, cls: type[exc.ZegoTransportError]
) -> None:
    recorder.outcomes = [failure, answer(data={"AgentInstanceId": "1"})]
    observer = Observer()
    async with make_client(recorder, observer=observer) as zego:
        with pytest.raises(cls) as caught:
            await zego.create_agent_instance(create_request())
    assert caught.value.action == "CreateAgentInstance"
    assert len(recorder.requests) == 1
    assert observer.retries == []


async def test_retries_give_up_after_max_retries(recorder: Recorder) -> None:
    recorder.outcomes = [httpx.ConnectError("refused")]
    async with make_client(recorder, max_retries=2) as zego:
        with pytest.raises(exc.ZegoConnectError):
            await zego.list_agents(LIST)
    assert len(recorder.requests) == 3


def test_read_only_set() -> None:
    assert {a.value for a in READ_ONLY_ACTIONS} == {
        "ListAgents",
        "QueryAgents",
        "QueryAgentInstanceStatus",
        "GetAgentInstanceMsgList",
        "GetDigitalHumanList",
        "GetDigitalHumanInfo",
        "GetTimbreList",
    }


async def test_retry_never_outlasts_the_budget(recorder: Recorder) -> None:
    recorder.outcomes = [httpx.ConnectError("refused"), answer(data={"Status": "IDLE"})]
    async with make_client(recorder, backoff_initial=0.5, backoff_max=0.5) as zego:
        started = time.monotonic()
        with pytest.raises(exc.ZegoConnectError):
            await zego.query_agent_instance_status(STATUS, timeout=0.3)
    assert time.monotonic() - started < 0.2  # gave up instead of sleeping past the deadline
    assert len(recorder.requests) == 1


# --- deadlines and timeouts ----------------------------------------------------------------------


async def test_spent_budget_raises_before_sending(zego: ZegoClient, recorder: Recorder) -> None:
    for budget in (0.0, 0.04, -1.0):  # the 50 ms margin eats anything below it
        with pytest.raises(exc.ZegoDeadlineExceeded):
            await zego.delete_agent_instance(
                m.DeleteAgentInstanceRequest(agent_instance_id="1"), timeout=budget
            )
    assert recorder.requests == []


@pytest.mark.parametrize(("budget", "expected"), [(None, 10.0), (60.0, 10.0), (1.0, 0.95), (0.5, 0.45)])
async def test_timeout_is_min_of_config_and_budget(
    zego: ZegoClient, recorder: Recorder, budget: float | None, expected: float
) -> None:
    await zego.query_agent_instance_status(STATUS, timeout=budget)
    timeouts = recorder.requests[0].extensions["timeout"]
    assert set(timeouts) == {"connect", "read", "write", "pool"}
    for value in timeouts.values():
        assert expected - 0.05 < value <= expected


async def slow(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(5)
    return answer()


async def test_budget_bound_timeout_is_deadline_exceeded(recorder: Recorder) -> None:
    recorder.outcomes = [slow]
    observer = Observer()
    async with make_client(recorder, observer=observer) as zego:
        started = time.monotonic()
        with pytest.raises(exc.ZegoDeadlineExceeded):
            await zego.list_agents(LIST, timeout=0.15)
    assert time.monotonic() - started < 0.5
    assert len(recorder.requests) == 1  # the deadline is not a transport error: no retry
    assert observer.finished[0][1] == "deadline_exceeded"


async def test_config_bound_timeout_is_zego_timeout(recorder: Recorder) -> None:
    recorder.outcomes = [slow]
    async with make_client(recorder, timeout_seconds=0.05, max_retries=0) as zego:
        with pytest.raises(exc.ZegoTimeout):
            await zego.list_agents(LIST, timeout=30.0)


# --- rate limiting -------------------------------------------------------------------------------


async def test_client_waits_for_the_rate_limiter(recorder: Recorder) -> None:
    observer = Observer()
    async with make_client(recorder, observer=observer, rate_per_second=20.0, rate_burst=1) as zego:
        started = time.monotonic()
        await zego.query_agent_instance_status(STATUS)
        await zego.query_agent_instance_status(STATUS)
        await zego.list_agents(LIST)  # another action has its own bucket: no wait
    assert 0.03 < time.monotonic() - started < 0.5
    assert [a for a, _ in observer.waits] == ["QueryAgentInstanceStatus"]
    assert observer.waits[0][1] > 0.03


async def test_rate_limit_wait_beyond_budget_raises_without_sending(recorder: Recorder) -> None:
    async with make_client(recorder, rate_per_second=1.0, rate_burst=1) as zego:
        await zego.send_agent_instance_tts(m.SendAgentInstanceTTSRequest(agent_instance_id="1", text="a"))
        started = time.monotonic()
        with pytest.raises(exc.ZegoDeadlineExceeded, match="rate-limit"):
            await zego.send_agent_instance_tts(
                m.SendAgentInstanceTTSRequest(agent_instance_id="1", text="b"), timeout=0.3
            )
    assert time.monotonic() - started < 0.1
    assert len(recorder.requests) == 1


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_rate_limiter_bucket_with_fake_time() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10.0, burst=2, clock=fake.clock, sleep=fake.sleep)
    assert await limiter.acquire("A") == 0.0
    assert await limiter.acquire("A") == 0.0
    assert await limiter.acquire("A") == pytest.approx(0.1)
    assert await limiter.acquire("B") == 0.0  # buckets are per action
    fake.now += 10  # an idle period refills only up to the burst
    assert [await limiter.acquire("A") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


async def test_rate_limiter_max_wait_takes_no_token() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1.0, burst=1, clock=fake.clock, sleep=fake.sleep)
    await limiter.acquire("A")
    with pytest.raises(TimeoutError):
        await limiter.acquire("A", max_wait=0.5)
    assert fake.sleeps == []
    assert await limiter.acquire("A", max_wait=1.0) == pytest.approx(1.0)


async def test_rate_limiter_is_fifo_fair() -> None:
    limiter = RateLimiter(100.0, burst=1)
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire("A")
        order.append(i)

    await asyncio.gather(*(take(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]


async def test_rate_limiter_refunds_a_cancelled_reservation() -> None:
    limiter = RateLimiter(20.0, burst=1)
    await limiter.acquire("A")
    waiter = asyncio.create_task(limiter.acquire("A"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # The cancelled slot was handed back: the next caller waits one interval, not two.
    assert await limiter.acquire("A") < 0.07


def test_rate_limiter_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(10, burst=0.5)


# --- secrets stay out of logs, reprs and errors --------------------------------------------------


async def test_secrets_never_reach_logs_or_errors(
    caplog: pytest.LogCaptureFixture, recorder: Recorder
) -> None:
    caplog.set_level(logging.DEBUG)
    stored_agent = {"AgentId": "a", "LLM": {"Url": "u", "ApiKey": API_KEY, "Model": "m"}}
    recorder.outcomes = [
        answer(data={"AgentInstanceId": "1"}),
        answer(code=410000003, message="invalid LLM"),
        httpx.ConnectError("refused"),
        answer(data={"Agents": [stored_agent | {"Name": ["not", "a", "string"]}]}),
        answer(data={"Agents": [stored_agent]}),
    ]
    errors: list[exc.ZegoError] = []
    async with make_client(recorder, max_retries=0) as zego:
        await zego.create_agent_instance(create_request())
        for call in (
            zego.create_agent_instance(create_request()),
            zego.create_agent_instance(create_request()),
        ):
            with pytest.raises(exc.ZegoError) as caught:
                await call
            errors.append(caught.value)
        with pytest.raises(exc.ZegoProtocolError) as caught_schema:  # bad Name: schema error, ApiKey in input
            await zego.list_agents(LIST)
        errors.append(caught_schema.value)
        listed = await zego.list_agents(LIST)
        texts = [repr(zego), repr(listed), str(listed)]
    assert [type(e) for e in errors] == [exc.ZegoInvalidRequest, exc.ZegoConnectError, exc.ZegoProtocolError]
    signatures = [r.url.params["Signature"] for r in recorder.requests]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [record.getMessage() for record in caplog.records]
    assert any("zego CreateAgentInstance" in t for t in texts)  # we did log
    assert any(record.name == "httpx" for record in caplog.records)  # and so did httpx
    for text in texts:
        assert SECRET not in text
        assert API_KEY not in text
        assert TTS_TOKEN not in text
        assert not any(signature in text for signature in signatures)


def test_signature_auth_repr_hides_the_secret() -> None:
    assert SECRET not in repr(ZegoSignatureAuth(APP_ID, SECRET))


# --- construction and regions --------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"app_id": 0},
        {"app_id": 2**32},
        {"server_secret": ""},
        {"timeout_seconds": 0},
        {"max_retries": -1},
        {"backoff_initial": 1.0, "backoff_max": 0.5},
        {"base_url": "mars"},
    ],
)
def test_constructor_rejects_bad_settings(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        base: dict[str, Any] = {"app_id": APP_ID, "server_secret": SECRET, "base_url": "unified"}
        ZegoClient(**(base | options))


def test_resolve_base_url() -> None:
    assert resolve_base_url("unified") == "https://aigc-aiagent-api.zegotech.cn"
    assert resolve_base_url(" FRA ") == "https://aigc-aiagent-api-fra.zegotech.cn"
    assert resolve_base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert set(REGION_BASE_URLS) == {"unified", "sha", "hkg", "fra", "lax", "bom", "sgp"}
    assert all(url.startswith("https://aigc-aiagent-api") for url in REGION_BASE_URLS.values())
    for bad in ("", "mars", "ftp://x", "https://", "aigc-aiagent-api.zegotech.cn", "http://h/?Action=X"):
        with pytest.raises(ValueError, match="ZEGO"):
            resolve_base_url(bad)


async def test_error_action_is_a_plain_string(recorder: Recorder) -> None:
    recorder.outcomes = [answer(code=410001002)]
    async with make_client(recorder) as zego:
        with pytest.raises(exc.ZegoInstanceNotFound) as caught:
            await zego.query_agent_instance_status(STATUS)
    assert type(caught.value.action) is str
    assert caught.value.action == "QueryAgentInstanceStatus"
