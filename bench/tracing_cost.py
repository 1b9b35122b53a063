"""``python -m bench.tracing_cost``: what tracing costs, off and on, in one process.

* **off** (no ``OTEL_*``): the hooks a ZEGO attempt, a stored event and a log line pay, and a
  unary RPC (GetSession over loopback gRPC) against a gateway built with tracing off;
* **on**: the same RPC against a gateway built with tracing on (an SDK provider whose batch
  processor hands spans to an exporter that drops them: the cost of making spans, not of shipping).

Off, the RPC handlers are the very objects of an untraced build (``service.api.rpc_tracing``), so
the RPC rows should differ only by noise; compare them, on a shared machine, as a ratio.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import timeit
from collections.abc import Sequence
from pathlib import Path

import grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service import tracing
from service.api.rpc_tracing import trace_handler
from service.config import Settings
from service.domain.event_log import _traced
from service.domain.events import EventType, NewEvent
from service.logs import _ContextFilter
from service.server import Gateway

N_HOOKS = 200_000
N_RPCS = 2_000


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _ns(stmt: str, scope: dict[str, object]) -> float:
    return min(timeit.repeat(stmt, number=N_HOOKS, repeat=5, globals=scope)) / N_HOOKS * 1e9


def hooks() -> None:
    event = NewEvent(EventType.CREATED, "s", "1", "a", "r", 1, 1.0, 1, None, {})
    record = logging.LogRecord("agentgw", logging.INFO, __file__, 1, "m", None, None)
    context_filter = _ContextFilter()

    def zego() -> None:
        tracing.end_zego(tracing.start_zego("CreateAgentInstance", "zego"), "0", "r", 0)

    scope: dict[str, object] = {"zego": zego, "_traced": _traced, "event": event}
    scope |= {"flt": context_filter, "record": record, "noop": lambda: None}
    print(f"  {'a no-op call (reference)':<44} {_ns('noop()', scope):8.0f} ns")
    print(f"  {'ZEGO attempt: start_zego + end_zego':<44} {_ns('zego()', scope):8.0f} ns")
    print(f"  {'stored event: trace id lookup':<44} {_ns('_traced(event)', scope):8.0f} ns")
    print(f"  {'log line: context filter':<44} {_ns('flt.filter(record)', scope):8.0f} ns")


class _Context:
    """Just what the span layer asks of a ServicerContext."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("user-agent", "grpc-python"),)

    def code(self) -> None:
        return None

    def time_remaining(self) -> float:
        return 5.0


async def layer() -> None:
    """The span layer alone, around a handler that does nothing: the SDK's cost of one span."""

    async def behavior(request: object, context: object) -> object:
        return request

    handler = grpc.unary_unary_rpc_method_handler(behavior)
    untraced = trace_handler(handler, "/agentgw.v1.SessionService/ListSessions").unary_unary
    assert untraced is behavior  # off: the very same handler
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    tracing.install(provider)
    traced = trace_handler(handler, "/agentgw.v1.SessionService/ListSessions").unary_unary
    context = _Context()
    try:
        for name, fn in (("off (the handler itself)", behavior), ("on (span layer + handler)", traced)):
            for _ in range(1000):
                await fn(1, context)
            cpu = time.process_time()
            for _ in range(20_000):
                await fn(1, context)
            print(f"  {name:<44} {(time.process_time() - cpu) / 20_000 * 1e6:8.2f} us CPU/call")
    finally:
        tracing.install(None)
        provider.shutdown()


async def rpcs(label: str, directory: Path) -> float:
    settings = Settings.from_flat(
        grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", db_path=directory / f"{label}.db"
    )
    async with Gateway(settings) as gw, grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
        stub = rpc.SessionServiceStub(ch)  # type: ignore[no-untyped-call]
        request = api.ListSessionsRequest(page_size=1)
        for _ in range(200):
            await stub.ListSessions(request, timeout=5)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(N_RPCS):
            await stub.ListSessions(request, timeout=5)
        us = (time.perf_counter() - started) / N_RPCS * 1e6
        cpu_us = (time.process_time() - cpu) / N_RPCS * 1e6
    print(f"  {'ListSessions, tracing ' + label:<44} {us:8.1f} us/call {cpu_us:8.1f} us CPU/call")
    return cpu_us


async def main() -> None:
    logging.disable(logging.WARNING)
    print("tracing off: per-call cost of the hooks")
    hooks()
    print("the RPC span layer alone")
    await layer()
    with tempfile.TemporaryDirectory() as tmp:
        print("unary RPC round trip (c=1, client and gateway in this process; CPU is both's)")
        off = await rpcs("off", Path(tmp))
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(_Drop()))
        tracing.install(provider)
        try:
            on = await rpcs("on", Path(tmp))
        finally:
            tracing.install(None)
            provider.shutdown()
        off_again = await rpcs("off again", Path(tmp))
        print(f"  CPU on / off = {on / min(off, off_again):.2f}; off again / off = {off_again / off:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
