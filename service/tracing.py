"""OpenTelemetry traces: off unless the standard ``OTEL_*`` environment variables turn them on.

Tracing is **on** when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``, or both,
comma-separated) or, with it unset, when an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). It stays off with none of them, with
``OTEL_TRACES_EXPORTER=none`` or with ``OTEL_SDK_DISABLED=true``. The OpenTelemetry spec defaults the
exporter to ``otlp``; we do not, so an unconfigured gateway never dials ``localhost:4317``.

Everything else is the SDK's own reading of the environment: the OTLP exporter's endpoint, headers,
TLS and timeout (``OTEL_EXPORTER_OTLP_*``), the sampler (``OTEL_TRACES_SAMPLER``), the batch
processor (``OTEL_BSP_*``), the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``;
``service.name`` defaults to ``agentgw``) and the propagators (``OTEL_PROPAGATORS``, W3C
``traceparent`` by default).

While off, :data:`_tracer` is ``None`` and every hook here returns after one comparison: the RPC
wrapper is not even installed (``service.api.rpc_tracing``), and a ZEGO call or a callback pays a
function call. The hooks never raise into the caller's path on a tracing failure they can avoid, and
never record a secret: ZEGO spans carry the action, code, RequestId and host, never the URL (its
query holds the Signature) or a body.

What is traced (the README's Tracing section has the table):

* every RPC: a SERVER span, child of the caller's ``traceparent`` (``service.api.rpc_tracing``);
* every ZEGO attempt: a CLIENT span, child of whatever is current (:func:`start_zego`);
* every callback: a root SERVER span (ZEGO sends no trace context) **linked** to the trace of the
  session's CreateSession, whose ``traceparent`` the ledger keeps (:func:`current_traceparent`,
  :func:`link_session`);
* every stored event carries the trace id of the span it was produced in (:func:`current_trace_id`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service import __version__

__all__ = [
    "TracingConfigError",
    "configure_from_env",
    "current_trace_id",
    "current_traceparent",
    "enabled",
    "end_zego",
    "extract",
    "install",
    "link_session",
    "start_zego",
    "traced_callback",
    "tracer",
    "tracing_requested",
]

log = logging.getLogger("agentgw.tracing")

_tracer: Tracer | None = None
"""The gateway's tracer, or None while tracing is off (the one flag every hook checks)."""

_W3C = TraceContextTextMapPropagator()
"""The session's stored context is always W3C ``traceparent``, whatever ``OTEL_PROPAGATORS`` says."""

_TRUE = {"true", "1", "yes"}
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


class TracingConfigError(ValueError):
    """The ``OTEL_*`` variables ask for something this install cannot do (e.g. an unknown exporter)."""


def enabled() -> bool:
    """Whether spans are being recorded."""
    return _tracer is not None


def tracer() -> Tracer | None:
    """The gateway's tracer, None while off."""
    return _tracer


def install(provider: trace.TracerProvider | None) -> None:
    """Trace with ``provider`` from now on (``None``: off). Tests install one with an in-memory
    exporter; the gateway installs the one :func:`configure_from_env` builds.

    The global OpenTelemetry provider is left alone: it can be set once per process, and the
    gateway's spans need no library to find it.
    """
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("agentgw", __version__)


def tracing_requested(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporter names the environment asks for; empty means tracing stays off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        endpoints = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if any(environ.get(name, "").strip() for name in endpoints) else []
    return [] if names == ["none"] else [n for n in names if n != "none"]


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    """Load an exporter the way the SDK's auto-configuration does: by entry point name."""
    entry = name
    if name == "otlp":
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        ) or "grpc"
        entry = _OTLP_BY_PROTOCOL.get(protocol.strip().lower(), "")
        if not entry:
            raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol {protocol!r}")
    found = entry_points(group="opentelemetry_traces_exporter", name=entry)
    if not found:
        installed = sorted(e.name for e in entry_points(group="opentelemetry_traces_exporter"))
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER: no exporter {name!r} ({entry}) is installed; installed: {installed}"
        )
    exporter_class = next(iter(found)).load()
    exporter: SpanExporter = exporter_class()
    return exporter


def configure_from_env(environ: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """Build and install a provider if the environment asks for tracing; else change nothing.

    Returns the provider (the caller shuts it down at exit, which flushes pending spans), or None.

    Raises:
        TracingConfigError: an unknown exporter or OTLP protocol.
    """
    names = tracing_requested(environ)
    if not names:
        return None
    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, which win over its
    # defaults but not over what we pass: pass service.name only where no variable names it.
    attributes: dict[str, str] = {"service.version": __version__}
    if environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = environ["OTEL_SERVICE_NAME"]
    elif "service.name=" not in environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.name"] = "agentgw"
    provider = TracerProvider(resource=Resource.create(attributes))  # the sampler comes from OTEL_*
    for name in dict.fromkeys(names):
        exporter = _exporter(name, environ)
        # The console is for a quick look: print each span as it ends rather than in batches.
        processor = SimpleSpanProcessor(exporter) if name == "console" else BatchSpanProcessor(exporter)
        provider.add_span_processor(processor)
    install(provider)
    log.info("tracing on", extra={"exporters": names})
    return provider


# --- propagation ---------------------------------------------------------------------------------


def extract(carrier: Mapping[str, str]) -> otel_context.Context:
    """The caller's context from request headers or gRPC metadata (``OTEL_PROPAGATORS``)."""
    return propagate.extract(carrier)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (what a session keeps of its CreateSession), or
    None while tracing is off or nothing is being traced."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def current_trace_id() -> str:
    """The current span's trace id, 32 hex characters; empty while off or outside a span."""
    if _tracer is None:
        return ""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def link_session(traceparent: str | None, session_id: str) -> None:
    """Link the current span (a callback's) to the trace of the session's CreateSession."""
    if _tracer is None:
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("agentgw.session_id", session_id)
    if traceparent:
        linked = trace.get_current_span(_W3C.extract({"traceparent": traceparent})).get_span_context()
        if linked.is_valid:
            span.add_link(linked, {"agentgw.link": "create_session"})


# --- ZEGO calls ----------------------------------------------------------------------------------


def start_zego(action: str, host: str) -> Span | None:
    """A CLIENT span for one ZEGO attempt, child of the current span; None while off."""
    if _tracer is None:
        return None
    return _tracer.start_span(
        f"ZEGO {action}",
        kind=SpanKind.CLIENT,
        attributes={
            "zego.action": action,
            "rpc.system": "zego",
            "rpc.method": action,
            "http.request.method": "POST",
            "server.address": host,
        },
    )


def end_zego(span: Span | None, outcome: str, request_id: str = "", code: int | None = None) -> None:
    """End a :func:`start_zego` span. ``outcome``: ``"0"``, a ZEGO code, or a transport failure name
    (the metrics' vocabulary); ``code``: ZEGO's ``Code`` when it answered."""
    if span is None:
        return
    if code is not None:
        span.set_attribute("zego.code", code)
    if request_id:
        span.set_attribute("zego.request_id", request_id)
    span.set_attribute("zego.outcome", outcome)
    if outcome != "0":
        span.set_status(Status(StatusCode.ERROR, f"ZEGO {outcome}"))
    span.end()


# --- callbacks -----------------------------------------------------------------------------------

P = ParamSpec("P")
S = TypeVar("S")
R = TypeVar("R", bound="_Outcome")


class _Outcome(Protocol):
    @property
    def event(self) -> str: ...  # ZEGO's event name, bounded

    @property
    def result(self) -> Any: ...  # a StrEnum


def traced_callback(
    ingest: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Awaitable[R]]:
    """Decorate ``CallbackIngestor.ingest``: while on, each callback is a root SERVER span, named
    after ZEGO's event once it is known, with the ingest result as an attribute."""

    @functools.wraps(ingest)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if _tracer is None:
            return await ingest(self, *args, **kwargs)
        # A new trace: the HTTP request carries no context of ours. The link to the session's
        # trace is added once the session is known (link_session).
        with _tracer.start_as_current_span(
            "ZEGO callback", context=otel_context.Context(), kind=SpanKind.SERVER
        ) as span:
            outcome = await ingest(self, *args, **kwargs)
            span.update_name(f"ZEGO callback {outcome.event}")
            span.set_attribute("zego.event", outcome.event)
            span.set_attribute("agentgw.callback.result", str(outcome.result))
            if not outcome.result.stored:
                span.set_status(Status(StatusCode.ERROR, str(outcome.result)))
            return outcome

    return wrapper
