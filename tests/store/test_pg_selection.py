"""Selecting the PostgreSQL ledger (AGENTGW_DATABASE_URL / --database-url): its settings, its
password kept out of every log, error, help text and repr, its errors mapped to UNAVAILABLE, and
no single-owner file lock (a fleet shares the database on purpose)."""

from __future__ import annotations

import io
import logging
import pathlib
from contextlib import redirect_stderr, redirect_stdout

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2

from service.api.status import to_status
from service.config import ConfigError, argument_parser, load_settings, redact_url
from service.server import Gateway
from service.store.base import StoreUnavailable
from service.store.postgres import PoolOptions, PostgresLedger
from service.store.sqlite import SqliteLedger
from tests.conftest import Emulator, gateway_settings, unpack_details
from tools.pgcluster import free_port

PASSWORD = "hunter2-s3cr3t"
URL = f"postgresql://agentgw:{PASSWORD}@db.internal:5432/agentgw"


def test_the_url_selects_postgresql_and_is_masked_everywhere() -> None:
    settings = load_settings([], {"AGENTGW_DATABASE_URL": URL})
    assert settings.database_url is not None and settings.database_url.reveal() == URL
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.describe())
    assert load_settings([], {}).database_url is None  # unset: SQLite, as before


def test_the_flag_wins_over_the_variable() -> None:
    other = "postgresql://agentgw@other:5432/x"
    settings = load_settings(["--database-url", other], {"AGENTGW_DATABASE_URL": URL})
    assert settings.database_url is not None and settings.database_url.reveal() == other


def test_pool_and_timeout_settings() -> None:
    env = {"AGENTGW_DB_POOL_MIN_SIZE": "2", "AGENTGW_DB_POOL_MAX_SIZE": "20"}
    settings = load_settings(["--db-statement-timeout-seconds", "1.5"], env)
    assert (settings.db_pool_min_size, settings.db_pool_max_size) == (2, 20)
    assert settings.db_statement_timeout_seconds == 1.5
    with pytest.raises(ConfigError, match="AGENTGW_DB_POOL_MIN_SIZE"):
        load_settings([], {"AGENTGW_DB_POOL_MIN_SIZE": "30"})
    with pytest.raises(ValueError, match="pool sizes"):
        PoolOptions(min_size=3, max_size=2)


@pytest.mark.parametrize("bad", [f"mysql://root:{PASSWORD}@h/db", f"{PASSWORD}", "postgresql://"])
def test_a_bad_url_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings([], {"AGENTGW_DATABASE_URL": bad})
    assert "AGENTGW_DATABASE_URL" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_help_names_the_flag_and_shows_no_url() -> None:
    text = argument_parser().format_help()
    assert "--database-url" in text and "AGENTGW_DATABASE_URL" in text
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out), pytest.raises(SystemExit):
        load_settings(["--help"], {"AGENTGW_DATABASE_URL": URL})
    assert "--database-url" in out.getvalue() and PASSWORD not in out.getvalue()


def test_redact_url() -> None:
    assert redact_url(URL) == "postgresql://agentgw:***@db.internal:5432/agentgw"
    assert redact_url("postgresql://agentgw@h/db") == "postgresql://agentgw@h/db"
    assert PASSWORD not in redact_url(f"postgres://u:{PASSWORD}@h:1/d?sslmode=require")


async def test_an_unreachable_server_is_unavailable_and_never_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://agentgw:{PASSWORD}@127.0.0.1:{free_port()}/agentgw"
    ledger = PostgresLedger(url, options=PoolOptions(connect_timeout_seconds=2))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreUnavailable) as caught:
        await ledger.open()
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)
    assert PASSWORD not in repr(ledger) and PASSWORD not in caplog.text


def test_store_unavailable_maps_to_unavailable_with_retry_info() -> None:
    status = to_status(StoreUnavailable("ledger database unavailable (OSError): refused"), "r1")
    assert status.code == code_pb2.UNAVAILABLE
    kinds = {type(d) for d in unpack_details(status)}
    assert error_details_pb2.RetryInfo in kinds
    info = next(d for d in unpack_details(status) if isinstance(d, error_details_pb2.ErrorInfo))
    assert info.reason == "STORE_UNAVAILABLE"


async def test_the_gateway_uses_postgresql_and_takes_no_file_lock(
    emulator: Emulator, tmp_path: pathlib.Path, database_url: str | None, ledger_backend: str
) -> None:
    db_path = tmp_path / "ledger.db"
    settings = gateway_settings(emulator, db_path, database_url)
    async with Gateway(settings) as first:
        kind = type(first.core.ledger)
        if ledger_backend == "sqlite":
            assert kind is SqliteLedger and db_path.exists()
            return
        assert kind is PostgresLedger
        assert not db_path.exists() and not db_path.with_name("ledger.db.lock").exists()
        # A second replica on the same database (and the same db_path) starts: no owner lock.
        async with Gateway(gateway_settings(emulator, db_path, database_url)) as second:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{second.grpc_port}") as channel:
                await channel.channel_ready()
            assert first.core.ledger is not second.core.ledger
