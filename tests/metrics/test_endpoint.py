"""GET /metrics: content negotiation, refresh before scrape, and promtool's linter on the output."""

from __future__ import annotations

import asyncio
from asyncio.subprocess import PIPE
from collections.abc import Awaitable, Callable, Mapping

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from agentgw_client.gen.agentgw.v1 import session_service_pb2
from service.api.metrics_interceptor import preinitialize
from service.domain.model import SessionKind, SessionState
from service.http.metrics import metrics_endpoint
from service.metrics import Metrics

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class FakeLedger:
    def __init__(self) -> None:
        self.counts: dict[tuple[SessionKind, SessionState], int] = {}

    async def count_by_kind_state(self) -> Mapping[tuple[SessionKind, SessionState], int]:
        return self.counts


def client(metrics: Metrics, refresh: Callable[[], Awaitable[None]] | None, **kw: float) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/metrics", metrics_endpoint(metrics, refresh, **kw))])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agentgw.test")


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(version="9.9.9")
    preinitialize(m, [session_service_pb2.DESCRIPTOR.services_by_name["SessionService"]])
    return m


async def test_text_format_by_default(metrics: Metrics) -> None:
    async with client(metrics, None) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE agentgw_sessions gauge" in response.text
    assert 'agentgw_build_info{version="9.9.9"} 1.0' in response.text
    assert "# EOF" not in response.text


async def test_openmetrics_when_asked(metrics: Metrics) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    async with client(metrics, None) as http:
        response = await http.get("/metrics", headers={"Accept": accept})
    assert response.headers["content-type"].startswith(OPENMETRICS)
    assert response.text.endswith("# EOF\n")
    assert "# TYPE agentgw_sessions_created counter" in response.text


async def test_refresh_runs_before_every_scrape(metrics: Metrics) -> None:
    ledger = FakeLedger()

    async def refresh() -> None:
        await metrics.refresh_from_ledger(ledger, {"voice": 4, "digital_human": 2})

    async with client(metrics, refresh) as http:
        ledger.counts = {(SessionKind.VOICE, SessionState.ACTIVE): 3}
        first = (await http.get("/metrics")).text
        ledger.counts = {}
        second = (await http.get("/metrics")).text
    assert 'agentgw_sessions{kind="voice",state="ACTIVE"} 3.0' in first
    assert 'agentgw_sessions{kind="voice",state="ACTIVE"} 0.0' in second
    assert 'agentgw_session_limit{kind="live_digital_human"} 2.0' in second


async def test_failed_or_slow_refresh_still_serves(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise OSError("database is locked")

    async def hung() -> None:
        await asyncio.sleep(30)

    for refresh in (broken, hung):
        async with client(metrics, refresh, refresh_timeout=0.05) as http:
            response = await http.get("/metrics")
        assert response.status_code == 200
        assert "agentgw_sessions" in response.text
    assert sum("metrics refresh failed" in r.getMessage() for r in caplog.records) == 2


async def test_promtool_finds_nothing_to_lint(metrics: Metrics, promtool: str) -> None:
    metrics.session_created("voice", "created")
    metrics.interaction("voice", "user_speech", 1.2, budget_exceeded=False)
    async with client(metrics, None) as http:
        body = (await http.get("/metrics")).content
    lint = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    async with asyncio.timeout(30):
        out, err = await lint.communicate(body)
    assert lint.returncode == 0, err.decode()
    assert (out + err).decode() == ""  # promtool prints one line per lint problem
