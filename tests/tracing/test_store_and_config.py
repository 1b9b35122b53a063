"""What tracing keeps in the ledger (migration 8), how OTEL_* turns it on, and what it costs off."""

from __future__ import annotations

import dataclasses
import io
import pathlib
import sqlite3

import grpc
import pytest
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

from service import tracing
from service.api.rpc_tracing import trace_handler
from service.domain.events import EventFilter, EventType, NewEvent
from service.store.migrations import MIGRATIONS, migrate
from tests.backends import LedgerFactory
from tests.store.test_sqlite_ledger import new
from tests.tracing.conftest import Spans

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_the_ledger_keeps_the_traceparent_and_each_events_trace_id(
    tmp_path: pathlib.Path, make_ledger: LedgerFactory
) -> None:
    path = tmp_path / "ledger.db"
    store = make_ledger(path)
    await store.open()
    outcome = await store.reserve_session(dataclasses.replace(new(1), trace_parent=TRACEPARENT), 10)
    assert outcome.session is not None and outcome.session.trace_parent == TRACEPARENT
    untraced = await store.reserve_session(new(2), 10)
    assert untraced.session is not None and untraced.session.trace_parent is None
    event = NewEvent(EventType.CREATED, "s-0001", "9", "a", "r", 1, 1.0, 5, None, {}, trace_id="ab" * 16)
    assert await store.append_event(event) is not None
    await store.close()

    reopened = make_ledger(path)
    await reopened.open()
    try:
        record = await reopened.get_session("s-0001")
        assert record is not None and record.trace_parent == TRACEPARENT
        [logged] = await reopened.events_after(0, 10, EventFilter())
        assert logged.trace_id == "ab" * 16
    finally:
        await reopened.close()


def test_migration_8_gives_old_rows_no_trace(tmp_path: pathlib.Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    try:
        before = tuple(m for m in MIGRATIONS if m[0] < 8)
        migrate(conn, name="old.db", clock=lambda: 0.0, migrations=before)
        conn.execute(
            "INSERT INTO events (event_type, event_time_ms, received_at, data) VALUES ('created', 1, 1, '{}')"
        )
        migrate(conn, name="old.db", clock=lambda: 0.0)
        assert conn.execute("SELECT trace_id FROM events").fetchall() == [("",)]
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
        assert "trace_parent" in columns
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1"}, []),
    ],
)
def test_tracing_is_off_unless_otel_variables_ask(environ: dict[str, str], expected: list[str]) -> None:
    assert tracing.tracing_requested(environ) == expected


def test_nothing_is_installed_when_off() -> None:
    assert tracing.configure_from_env({}) is None
    assert not tracing.enabled()


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "no exporter 'zipkin'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
            "unknown protocol",
        ),
        # The HTTP exporter is not installed: say so rather than fail at the first export.
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
            "otlp_proto_http",
        ),
    ],
)
def test_an_exporter_we_cannot_build_is_a_clear_error(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(tracing.TracingConfigError, match=problem):
        tracing.configure_from_env(environ)
    assert not tracing.enabled()


def test_the_console_exporter_prints_each_span() -> None:
    provider = tracing.configure_from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "gw-a"})
    assert provider is not None
    try:
        processors = provider._active_span_processor._span_processors
        assert [type(p) for p in processors] == [SimpleSpanProcessor]
        [processor] = processors
        assert isinstance(processor.span_exporter, ConsoleSpanExporter)
        # Its stdout was bound when the SDK was imported (under pytest: pytest's); read it here.
        processor.span_exporter.out = printed = io.StringIO()
        tracer = tracing.tracer()
        assert tracer is not None
        with tracer.start_as_current_span("quick look"):
            pass
        output = printed.getvalue()
        assert '"name": "quick look"' in output and '"service.name": "gw-a"' in output
    finally:
        tracing.install(None)
        provider.shutdown()


def test_otlp_is_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = tracing.configure_from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert provider is not None
    try:
        assert [type(p) for p in provider._active_span_processor._span_processors] == [BatchSpanProcessor]
        assert provider.resource.attributes["service.name"] == "agentgw"
    finally:
        tracing.install(None)
        provider.shutdown()


def _handler() -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    async def behavior(request: object, context: object) -> object:
        return request

    return grpc.unary_unary_rpc_method_handler(behavior)


def test_off_the_rpc_handler_is_left_as_it_is() -> None:
    handler = _handler()
    assert trace_handler(handler, "/agentgw.v1.SessionService/GetSession") is handler
    assert tracing.current_traceparent() is None and tracing.current_trace_id() == ""
    assert tracing.start_zego("CreateAgentInstance", "zego.test") is None


def test_on_the_rpc_handler_gets_a_span_layer(spans: Spans) -> None:
    handler = _handler()
    traced = trace_handler(handler, "/agentgw.v1.SessionService/GetSession")
    assert traced is not handler and traced.unary_unary is not handler.unary_unary
    assert traced.request_deserializer is handler.request_deserializer
    assert trace_handler(handler, "/grpc.health.v1.Health/Check") is handler
