"""A ledger that fails reaches the caller as UNAVAILABLE with a RetryInfo, never as INTERNAL, and
never with the driver's words (SQL, the database's path) in the status.

The failure is injected under the real SQLite store (its connection raises
``sqlite3.OperationalError``), so the whole path is exercised: the store adapter translates the
driver's error into the domain's ``StoreError``, and the one status table maps it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.server import Gateway
from tests.conftest import rich_error


@pytest.fixture
def ledger_backend() -> str:
    """SQLite only: the fault is injected under its connection. PostgreSQL's lost server, statement
    timeouts and exhausted pool are ``StoreUnavailable`` in ``tests/store/test_pg_resilience.py``,
    mapped by the same table (``tests/store/test_pg_selection.py``)."""
    return "sqlite"


SECRET_SQL = "SELECT secret_column FROM sessions WHERE session_id = 'x'"


class _BrokenConnection:
    """A connection whose every statement fails as a lost or unreadable database does."""

    def __init__(self, inner: sqlite3.Connection, path: str) -> None:
        self._inner = inner
        self._path = path

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError(f"disk I/O error in {self._path} while running {SECRET_SQL}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def ledger_down(gateway: Gateway) -> Iterator[str]:
    db = gateway.core.ledger._db  # the fault goes under the store adapter
    inner = db._conn
    assert inner is not None
    path = str(gateway.settings.ledger.db_path)
    db._conn = _BrokenConnection(inner, path)  # type: ignore[assignment]
    try:
        yield path
    finally:
        db._conn = inner


def _assert_unavailable(exc: grpc.aio.AioRpcError, path: str) -> None:
    assert exc.code() == grpc.StatusCode.UNAVAILABLE
    error = rich_error(exc)
    assert error.reason == "LEDGER_UNAVAILABLE"
    retry = error.get(error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds + retry.retry_delay.nanos > 0
    for shown in (error.message, exc.details() or ""):
        assert "secret" not in shown and "SELECT" not in shown
        assert path not in shown and "disk I/O" not in shown
    info = error.get(error_details_pb2.ErrorInfo)
    assert all("secret" not in v and path not in v for v in info.metadata.values())


async def test_a_failing_ledger_is_unavailable_with_retry_info(
    gateway: Gateway, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = rpc.SessionServiceStub(channel)
    with caplog.at_level(logging.ERROR, logger="agentgw"), ledger_down(gateway) as path:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.GetSession(api.GetSessionRequest(session_id="s-1"), timeout=5)
    _assert_unavailable(failed.value, path)
    # The operator still learns why: the driver's error is in the gateway's log, with its cause.
    [logged] = [r for r in caplog.records if r.getMessage() == "rpc failed"]
    assert logged.exc_info is not None and isinstance(logged.exc_info[1], Exception)
    assert isinstance(logged.exc_info[1].__cause__, sqlite3.OperationalError)

    # Once the ledger is back, the same call succeeds as far as the ledger goes (NOT_FOUND).
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetSession(api.GetSessionRequest(session_id="s-1"), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_watch_on_a_failing_ledger_is_unavailable(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    stub = erpc.EventServiceStub(channel)
    with ledger_down(gateway) as path:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for _ in stub.WatchEvents(
                eapi.WatchEventsRequest(start=eapi.START_POSITION_OLDEST), timeout=5
            ):
                pass
    _assert_unavailable(failed.value, path)
