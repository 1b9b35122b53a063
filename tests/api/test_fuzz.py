"""Fuzz every RPC of our four services with hypothesis: whatever the request, the answer is never
UNKNOWN or INTERNAL, every error is a rich ``google.rpc.Status`` that fit in the trailers, and nothing
reaches the emulator unvalidated (ZEGO never answers with an input-rejection code).

The gateway and the emulator run on an event loop in a background thread, so hypothesis drives plain
synchronous calls. Requests are built from the message descriptors: random values, biased towards edge
cases (NaN, infinities, huge strings, extreme integers, unknown enum numbers) and towards values that
pass the first checks (a registered agent, an existing session), so the deeper rules are reached too.
Examples are bounded (``FUZZ_EXAMPLES`` per RPC, default 25) and derandomized, so ``make test`` is
repeatable; for a longer hunt, raise ``FUZZ_EXAMPLES`` and set ``FUZZ_RANDOM=1`` (fresh examples).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import descriptor, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentgw_client.gen.agentgw.v1 import agent_pb2
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as sapi
from service.api.status import DOMAIN
from service.server import SERVICES, Gateway
from service.zego import exceptions as zx
from tests.api.sessions_helpers import AGENT_ID, register_agent, voice_request
from tests.conftest import Emulator, emulator_config, gateway_settings, unpack_details
from zego_emulator.testing import emulator_for

T = TypeVar("T")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
DERANDOMIZE = os.environ.get("FUZZ_RANDOM", "") in ("", "0")
CALL_TIMEOUT = 5.0
STREAM_TIMEOUT = 0.3
"""A valid WatchEvents stream never ends on its own: it is read this long, then its deadline ends it."""
MAX_DEPTH = 4
LIMITS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


class Background:
    """An event loop in a thread, running the emulator and a gateway."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-gateway", daemon=True)
        self._thread.start()
        self._stack = contextlib.AsyncExitStack()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self, db_path: Path) -> tuple[Gateway, Emulator]:
        emulator = await self._stack.enter_async_context(emulator_for(emulator_config()))
        gateway = await self._stack.enter_async_context(Gateway(gateway_settings(emulator, db_path)))
        return gateway, emulator

    def close(self) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


class Target:
    """The running gateway, a channel to it, and the ids that pass the first checks."""

    def __init__(self, background: Background, gateway: Gateway, emulator: Emulator) -> None:
        self.background = background
        self.gateway = gateway
        self.emulator = emulator
        self.channel = grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}")
        self.session_id = ""

    def zego_input_rejections(self) -> dict[tuple[str, str], float]:
        """ZEGO answers that say our request broke one of its input rules, by (action, code)."""
        found: dict[tuple[str, str], float] = {}
        for family in self.gateway.metrics.registry.collect():
            for sample in family.samples:
                if sample.name != "agentgw_zego_requests_total" or not sample.value:
                    continue
                code = sample.labels["code"]
                if code.isdigit() and _input_rule(zx.from_code(int(code), "", "", "x")):
                    found[(sample.labels["action"], code)] = sample.value
        return found


def _input_rule(error: zx.ZegoApiError) -> bool:
    """An input rule the gateway can check itself. An avatar ZEGO does not know is not one: only
    ZEGO knows which exist (the gateway asks it)."""
    return isinstance(error, zx.ZegoInvalidRequest) and not isinstance(error, zx.ZegoDigitalHumanNotFound)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    background = Background()
    try:
        gateway, emulator = background.run(background.start(tmp_path_factory.mktemp("fuzz") / "ledger.db"))
        target = Target(background, gateway, emulator)
        background.run(register_agent(emulator))
        create = target.channel.unary_unary(
            "/agentgw.v1.SessionService/CreateSession",
            request_serializer=sapi.CreateSessionRequest.SerializeToString,
            response_deserializer=sapi.CreateSessionResponse.FromString,
        )
        target.session_id = create(
            voice_request(user="fuzz_user", room="fuzz_room"), timeout=CALL_TIMEOUT
        ).session.session_id
        yield target
        target.channel.close()
    finally:
        background.close()


# --- requests from descriptors --------------------------------------------------------------------

EDGE_TEXT = [
    "",
    " ",
    "\x00",
    "a" * 64,
    "a" * 65,
    "x" * 20_000,
    "é" * 300,
    "🙂" * 40,
    "a=b,!c",
    "../..",
    "%s%n",
]


def _plausible(target_session: str) -> list[str]:
    return [
        AGENT_ID,
        "fuzz-agent",
        "user_1",
        "room_1",
        target_session,
        "https://llm.example/v1",
        "Tencent",
        "ByteDance",
        "m",
        "k",
        "llm",
        "tts",
        "asr",
        "display_name",
        "env=prod",
    ]


def _text(session_id: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(_plausible(session_id)), st.sampled_from(EDGE_TEXT), st.text(max_size=80)
    )


def _json(session_id: str) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**60), 2**60).map(float),
        _text(session_id),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=12,
    )


def _scalar(field: FieldDescriptor, session_id: str) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in LIMITS:
        low, high = LIMITS[kind]
        return st.one_of(
            st.sampled_from([low, high, 0, 1, -1 if low < 0 else 2, 100, 1001]), st.integers(low, high)
        )
    if kind in FLOATS:
        return st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.5, -1.0, 1e308]), st.floats())
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return _text(session_id)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    raise AssertionError(f"unhandled field type {kind}")


def _message(
    desc: descriptor.Descriptor, session_id: str, depth: int = 0, *, max_fields: int | None = None
) -> st.SearchStrategy[Message]:
    cls = message_factory.GetMessageClass(desc)
    if desc.full_name == "google.protobuf.Struct":
        return st.dictionaries(st.text(max_size=10), _json(session_id), max_size=4).map(_struct(cls))
    if depth > MAX_DEPTH:
        return st.just(cls())
    fields = list(desc.fields)
    most = len(fields) if max_fields is None else min(max_fields, len(fields))

    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Message:
        msg = cls()
        chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=most)) if fields else []
        for field in chosen:
            _fill(draw, msg, field, session_id, depth)
        return msg

    return build()


def _valid_parts(session_id: str) -> dict[str, Message | str]:
    llm = agent_pb2.LlmConfig(url="https://llm.example/v1", api_key="k", model="m")
    tts = agent_pb2.TtsConfig(vendor="ByteDance")
    tts.app.update({"appid": "a", "token": "t"})
    return {
        "session_id": session_id,
        "agent_id": AGENT_ID,
        "user_id": "fuzz_user_2",
        "text": "hello",
        "llm": llm,
        "tts": tts,
        "asr": agent_pb2.AsrConfig(vendor="Tencent"),
        "agent": agent_pb2.Agent(agent_id="fuzz-agent", llm=llm, tts=tts),
        "voice": sapi.VoiceSpec(),
        "rtc": sapi.RtcSpec(room_id="fuzz_room_2", user_stream_id="fuzz_user_2_stream"),
    }


def _template(desc: descriptor.Descriptor, session_id: str) -> Message:
    """A request of type ``desc`` that passes the first checks: the fields most requests share, valid."""
    msg = message_factory.GetMessageClass(desc)()
    for name, value in _valid_parts(session_id).items():
        field = desc.fields_by_name.get(name)
        if field is None:
            continue
        if isinstance(value, str) and field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
            setattr(msg, name, value)
        elif isinstance(value, Message) and field.message_type is value.DESCRIPTOR:
            getattr(msg, name).CopyFrom(value)
    return msg


def _request(desc: descriptor.Descriptor, session_id: str) -> st.SearchStrategy[Message]:
    """Half random, half a valid template with one or two fields (at any depth) overridden."""

    def mutate(change: Message) -> Message:
        msg = _template(desc, session_id)
        msg.MergeFrom(change)
        return msg

    return st.one_of(_message(desc, session_id), _message(desc, session_id, max_fields=2).map(mutate))


def _struct(cls: type[Message]) -> Callable[[dict[str, Any]], Message]:
    def make(data: dict[str, Any]) -> Message:
        msg = cls()
        msg.update(data)  # type: ignore[attr-defined]
        return msg

    return make


def _fill(draw: Any, msg: Message, field: FieldDescriptor, session_id: str, depth: int) -> None:
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field, value_field = (
            field.message_type.fields_by_name["key"],
            field.message_type.fields_by_name["value"],
        )
        entries = draw(st.lists(st.tuples(_scalar(key_field, session_id), st.just(None)), max_size=4))
        target = getattr(msg, field.name)
        for key, _ in entries:
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                target[key].CopyFrom(draw(_message(value_field.message_type, session_id, depth + 1)))
            else:
                target[key] = draw(_scalar(value_field, session_id))
        return
    if field.is_repeated:
        size = draw(st.one_of(st.integers(0, 4), st.sampled_from([0, 150])))
        target = getattr(msg, field.name)
        for _ in range(size):
            if is_message:
                target.add().CopyFrom(draw(_message(field.message_type, session_id, depth + 1)))
            else:
                target.append(draw(_scalar(field, session_id)))
        return
    if is_message:
        getattr(msg, field.name).CopyFrom(draw(_message(field.message_type, session_id, depth + 1)))
    else:
        setattr(msg, field.name, draw(_scalar(field, session_id)))


# --- calls and the rules every answer keeps ---------------------------------------------------------

# What ends the shared session or deletes the shared agent goes last, so the rest reach deeper rules.
_LAST = ("EndSession", "DeleteAgent")
METHODS = sorted(
    ((service, method) for service in SERVICES for method in service.methods),
    key=lambda sm: sm[1].name in _LAST,
)


def _raw(data: bytes) -> bytes:
    return data


def _call(
    target: Target, service: descriptor.ServiceDescriptor, method: descriptor.MethodDescriptor, body: bytes
) -> None:
    path = f"/{service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            call = target.channel.unary_stream(path, request_serializer=_raw, response_deserializer=_raw)
            for _ in call(body, timeout=STREAM_TIMEOUT):
                pass
        else:
            target.channel.unary_unary(path, request_serializer=_raw, response_deserializer=_raw)(
                body, timeout=CALL_TIMEOUT
            )
    except grpc.RpcError as exc:
        _check_error(exc, path, streaming=method.server_streaming)


def _check_error(exc: grpc.RpcError, path: str, *, streaming: bool) -> None:
    code = exc.code()  # type: ignore[attr-defined]
    if streaming and code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return  # a valid watch, still open when the test stopped reading it
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (path, code, exc.details())  # type: ignore[attr-defined]
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    # A transport error (a trailer over gRPC's metadata limit, say) has no rich status.
    assert status is not None, (path, code, exc.details())  # type: ignore[attr-defined]
    infos = [d for d in unpack_details(status) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert len(infos) == 1 and infos[0].domain == DOMAIN, (path, status)
    assert infos[0].reason not in ("UPSTREAM_REJECTED_INPUT", "UPSTREAM_REQUEST_MALFORMED"), (path, status)


def _fuzz(
    service: descriptor.ServiceDescriptor, method: descriptor.MethodDescriptor
) -> Callable[[Target], None]:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(data=st.data())
    def run(target: Target, data: st.DataObject) -> None:
        request = data.draw(_request(method.input_type, target.session_id), label="request")
        before = target.zego_input_rejections()
        _call(target, service, method, request.SerializeToString())
        # Checked per example, so hypothesis shrinks to the request that got through.
        assert target.zego_input_rejections() == before, "the gateway let through what ZEGO refused"

    return run


@pytest.mark.timeout(max(60, EXAMPLES * 2))
@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s.name}.{m.name}" for s, m in METHODS])
def test_no_request_gets_an_unknown_or_internal_answer(
    target: Target, service: descriptor.ServiceDescriptor, method: descriptor.MethodDescriptor
) -> None:
    _fuzz(service, method)(target)


@settings(
    max_examples=EXAMPLES * 2,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(index=st.integers(0, len(METHODS) - 1), body=st.binary(max_size=256))
def test_random_bytes_never_get_an_unknown_or_internal_answer(
    target: Target, index: int, body: bytes
) -> None:
    service, method = METHODS[index]
    _call(target, service, method, body)


def test_the_fuzz_reaches_every_rpc(target: Target) -> None:
    """Guard against a fuzz that silently covers less: every method of the four services is in it."""
    names = {f"{s.name}.{m.name}" for s, m in METHODS}
    assert len(names) == sum(len(s.methods) for s in SERVICES) >= 23
    assert target.session_id
