"""The gateway process: wires the ledger, the ZEGO client (or the embedded emulator), the domain
services, the gRPC server and the HTTP server, with an explicit start/stop lifecycle.

Start order: emulator (only without ZEGO credentials) -> core (ledger, ZEGO client, event log,
sessions, reconciliation, reaper; see ``service.core``) -> gRPC (health NOT_SERVING) -> HTTP ->
health SERVING. Stop runs through one ``AsyncExitStack``, so a failure half-way through start-up
still releases what was acquired: health NOT_SERVING -> gRPC (event streams end at once with
UNAVAILABLE and their resume cursor; unary calls drain within the grace period) -> HTTP (so ZEGO's
callbacks are accepted until gRPC has drained) -> core -> emulator.

The pieces live beside this module: ``service.listeners`` (addresses), ``service.grpc_server``,
``service.http_server`` and ``service.embedded`` (the emulator).

Usage::

    async with Gateway(settings) as gw:
        print(gw.grpc_port, gw.http_port)
        await gw.wait_closed()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self

import grpc
from grpc_health.v1 import health, health_pb2

from service import __version__, tracing
from service.auth.setup import build_authenticator
from service.config import Settings
from service.core import build_core
from service.embedded import EMULATOR_APP_ID, PointCallbacks, start_embedded_emulator
from service.grpc_server import SERVICE_NAMES, SERVICES, bind_grpc, build_grpc_server, grpc_server_options
from service.http_server import serve_http
from service.listeners import ListenError, check_listen, check_listeners, split_address
from service.metrics import Metrics
from service.store.lock import LedgerLock

__all__ = [
    "EMULATOR_APP_ID",
    "SERVICES",
    "SERVICE_NAMES",
    "Gateway",
    "ListenError",
    "check_listen",
    "grpc_server_options",
]

log = logging.getLogger("agentgw")


class Gateway:
    """One agentgw process. Use as an async context manager, or call start() and stop()."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._ready = False
        self._closed = asyncio.Event()
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.grpc_port = 0
        self.http_port = 0
        """The port serving ZEGO callbacks (and, unless split, health and metrics)."""
        self.admin_port = 0
        """The port serving /metrics, /healthz and /readyz (``http_port`` unless split)."""
        self.zego_base_url = settings.zego.api_base
        self.server: grpc.aio.Server | None = None
        self._grpc_stopped = False
        self._emulator_admin: PointCallbacks | None = None

    @property
    def ready(self) -> bool:
        """Whether the gateway serves traffic (false before start and once shutdown begins)."""
        return self._ready

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Acquire everything and start serving. On failure, releases what it acquired and raises."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        self._start_tracing()
        settings = self.settings
        # One ledger, one owner: refuse before anything starts (the ledger's own lock is the guarantee).
        if settings.ledger.database_url is None:  # a PostgreSQL ledger is shared by design
            LedgerLock.probe(settings.ledger.db_path)
        # Fail before anything starts, with the address named, rather than with gRPC's C-core
        # line or uvicorn's unnamed OSError half-way through start-up.
        check_listeners(settings.listen)
        if settings.uses_emulator:
            log.warning("no ZEGO credentials configured: starting the bundled ZEGO emulator on loopback")
            settings, self._emulator_admin = await start_embedded_emulator(settings, self._stack)
            self.zego_base_url = settings.zego.api_base
        self.settings = settings
        metrics = self.metrics = Metrics(
            version=__version__, interaction_budget_seconds=settings.latency.budget_seconds
        )
        authenticator = await build_authenticator(settings.auth, self._stack)
        core = self.core = await build_core(settings, self._stack, metrics)
        self.sessions = core.sessions

        server = build_grpc_server(settings, core, metrics, authenticator, self._health)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.grpc_port = bind_grpc(server, settings.listen)
        await server.start()
        self.server = server
        self._stack.push_async_callback(self._stop_grpc, server)  # if the HTTP side fails to start

        ports = await serve_http(self._stack, settings, core, metrics, lambda: self._ready)
        self.http_port, self.admin_port = ports.callbacks, ports.admin
        # Stopped before the HTTP side: callbacks ZEGO sends while gRPC drains are still accepted.
        self._stack.push_async_callback(self._stop_grpc, server)
        http_host = split_address(settings.listen.callback_address)[0]
        if self._emulator_admin is not None:
            await self._emulator_admin(f"http://{http_host}:{self.http_port}/v1/zego/callbacks")

        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._ready = True
        self._log_serving(http_host)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    def _log_serving(self, http_host: str) -> None:
        settings = self.settings
        log.info(
            "agentgw serving",
            extra={
                "grpc": f"{split_address(settings.listen.grpc)[0]}:{self.grpc_port}",
                "http": f"{http_host}:{self.http_port}",
                "admin_http_port": self.admin_port,
                "tls": settings.listen.tls,
                "auth_mode": ",".join(sorted(settings.auth.mode)),
                "zego": self.zego_base_url,
                "emulator": self._emulator_admin is not None,
                "db": str(settings.ledger.db_path),
            },
        )

    def _start_tracing(self) -> None:
        """Tracing on if ``OTEL_*`` asks for it (``service.tracing``); before the gRPC server is built,
        since its handlers are wrapped in spans only while tracing is on. Stopping flushes the spans."""
        provider = tracing.configure_from_env()
        if provider is not None:

            async def stop_tracing() -> None:
                tracing.install(None)
                # The last export may wait on an unreachable collector: not on the event loop.
                await asyncio.to_thread(provider.shutdown)

            self._stack.push_async_callback(stop_tracing)

    async def _stop_grpc(self, server: grpc.aio.Server) -> None:
        """End every event stream at once (UNAVAILABLE, with the cursor to resume after), then let
        unary calls finish within the grace period. Idempotent."""
        if self._grpc_stopped:
            return
        self._grpc_stopped = True
        self.core.bus.shut_down()
        await server.stop(self.settings.server.shutdown_grace_seconds)

    async def stop(self) -> None:
        """Graceful shutdown: NOT_SERVING first, then drain in-flight RPCs, then release everything.

        Sessions are never ended by a shutdown: the ledger keeps them and the next start picks
        them up.
        """
        if self._closed.is_set():
            return
        self._ready = False
        await self._health.enter_graceful_shutdown()
        try:
            await self._stack.aclose()
        finally:
            self._closed.set()
            log.info("agentgw stopped")

    async def wait_closed(self) -> None:
        """Wait until stop() has finished."""
        await self._closed.wait()
