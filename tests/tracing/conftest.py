"""Tracing fixtures: the SDK's in-memory exporter installed before the gateway starts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import tracing


class Spans:
    """The finished spans, looked up by name."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r} in {[s.name for s in self.all()]}"
        return found[0]


@pytest.fixture
def spans() -> Iterator[Spans]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield Spans(exporter)
    finally:
        tracing.install(None)
        provider.shutdown()


@pytest.fixture
def gateway_overrides(spans: Spans) -> dict[str, Any]:
    # Depending on `spans` makes tracing on before the gateway builds its handlers.
    return {}


@pytest.fixture
def emulator_overrides() -> dict[str, Any]:
    # Emulated delays run 100x faster; callback Timestamps still carry the emulated times.
    return {"time_scale": 0.01, "latency_seed": 7}
