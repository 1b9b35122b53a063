"""The gateway process: wires the ledger, the ZEGO client (or the embedded emulator), the domain
services, the gRPC server and the HTTP server, with an explicit start/stop lifecycle.

Start order: emulator (only without ZEGO credentials) -> core (ledger, ZEGO client, event log,
sessions, reconciliation, reaper; see ``service.core``) -> gRPC (health NOT_SERVING) -> HTTP ->
health SERVING. Stop runs through one ``AsyncExitStack``, so a failure half-way through start-up
still releases what was acquired: health NOT_SERVING -> gRPC (event streams end at once with
UNAVAILABLE and their resume cursor; unary calls drain within the grace period) -> HTTP (so ZEGO's
callbacks are accepted until gRPC has drained) -> core -> emulator.

Usage::

    async with Gateway(settings) as gw:
        print(gw.grpc_port, gw.http_port)
        await gw.wait_closed()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace
from types import TracebackType
from typing import Self

import grpc
import httpx
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.routing import Route

from agentgw_client.gen.agentgw.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    digital_human_service_pb2,
    digital_human_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    room_token_service_pb2,
    room_token_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
)
from service import __version__, tracing
from service.api.agents import AgentServicer
from service.api.audit import AuditHook, AuditServicer
from service.api.digital_humans import DigitalHumanServicer
from service.api.events import EventServicer
from service.api.interceptors import RpcHandlers
from service.api.metrics_interceptor import preinitialize
from service.api.paging import PageTokens
from service.api.reflection import reflection_services, register_reflection
from service.api.sessions import SessionServicer
from service.api.tokens import RoomTokenServicer
from service.auth.authenticator import Authenticator
from service.auth.setup import build_authenticator, server_credentials
from service.config import Secret, Settings
from service.core import Core, build_core
from service.http.app import create_http_app
from service.http.asgi import serve_asgi
from service.http.callbacks import callback_endpoint
from service.http.metrics import metrics_endpoint
from service.metrics import Metrics
from service.store.lock import LedgerLock
from service.zego.digital_human import EMULATOR_DIGITAL_HUMAN_PATH
from service.zego.emulator import persist
from service.zego.emulator.config import EmulatorConfig
from service.zego.emulator.server import run_emulator

__all__ = ["EMULATOR_APP_ID", "Gateway", "ListenError", "check_listen"]

log = logging.getLogger("agentgw")

EMULATOR_APP_ID = 1000000001
"""The AppId the embedded emulator uses when no ZEGO credentials are configured."""

SERVICES = (
    agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"],
    session_service_pb2.DESCRIPTOR.services_by_name["SessionService"],
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"],
    room_token_service_pb2.DESCRIPTOR.services_by_name["RoomTokenService"],
    digital_human_service_pb2.DESCRIPTOR.services_by_name["DigitalHumanService"],
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
)
SERVICE_NAMES = tuple(service.full_name for service in SERVICES)


def grpc_server_options() -> list[tuple[str, int]]:
    """Keepalive and connection-age settings for long-lived streams (conventions §3.6)."""
    return [
        # gRPC enables SO_REUSEPORT by default: a second process could silently share our port.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # Rebalance connections across replicas and exercise stream resumption routinely.
        ("grpc.max_connection_age_ms", 30 * 60_000),
        ("grpc.max_connection_age_grace_ms", 5 * 60_000),
        # gRPC core cancels calls beyond 3,000 waiting to be served; a burst of reconnecting
        # WatchEvents subscribers after a deploy is larger than that.
        ("grpc.server.max_pending_requests", 20_000),
        ("grpc.server.max_pending_requests_hard_limit", 20_000),
    ]


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class ListenError(OSError):
    """A listen address cannot be bound (busy, not local, not resolvable); names the setting."""

    def __init__(self, setting: str, address: str, reason: str) -> None:
        super().__init__(f"cannot listen on {address} ({setting}): {reason}")
        self.setting = setting
        self.address = address


def check_listen(setting: str, listen: str) -> None:
    """Bind ``listen`` once and release it, as the servers will (SO_REUSEADDR, no SO_REUSEPORT).

    Raises:
        ListenError: the address is busy, invalid or not resolvable.
    """
    host, port = _split(listen)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:  # socket.gaierror included
        raise ListenError(setting, listen, exc.strerror or str(exc)) from None


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
        self.zego_base_url = settings.zego_api_base
        self.server: grpc.aio.Server | None = None
        self._grpc_stopped = False
        self._emulator_admin: Callable[[str], Awaitable[None]] | None = None

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
        if settings.database_url is None:  # a PostgreSQL ledger is shared by design
            LedgerLock.probe(settings.db_path)
        # Fail before anything starts, with the address named, rather than with gRPC's C-core
        # line or uvicorn's unnamed OSError half-way through start-up.
        check_listen("grpc_listen", settings.grpc_listen)
        for name in ("http_listen", "callback_listen", "admin_listen"):
            address = getattr(settings, name)
            if address is not None and not (
                name == "http_listen" and settings.callback_listen and settings.admin_listen
            ):
                check_listen(name, address)
        if settings.uses_emulator:
            log.warning("no ZEGO credentials configured: starting the bundled ZEGO emulator on loopback")
            settings = await self._start_emulator(settings)
        assert settings.zego_app_id is not None and settings.zego_server_secret is not None
        self.settings = settings
        metrics = self.metrics = Metrics(
            version=__version__, interaction_budget_seconds=settings.interaction_budget_seconds
        )
        authenticator = await build_authenticator(settings, self._stack)
        core = self.core = await build_core(settings, self._stack, metrics)
        self.sessions = core.sessions

        server = self._grpc_server(settings, core, metrics, authenticator)
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        host, port = _split(settings.grpc_listen)
        credentials = server_credentials(settings)
        try:
            if credentials is None:
                self.grpc_port = server.add_insecure_port(f"{host}:{port}")
            else:
                self.grpc_port = server.add_secure_port(f"{host}:{port}", credentials)
        except RuntimeError as exc:  # taken since check_listen: gRPC says only "Failed to bind"
            raise ListenError("grpc_listen", settings.grpc_listen, str(exc)) from None
        await server.start()
        self.server = server
        self._stack.push_async_callback(self._stop_grpc, server)  # if the HTTP side fails to start

        await self._serve_http(settings, core, metrics)
        # Stopped before the HTTP side: callbacks ZEGO sends while gRPC drains are still accepted.
        self._stack.push_async_callback(self._stop_grpc, server)
        http_host = _split(settings.callback_listen or settings.http_listen)[0]
        if self._emulator_admin is not None:
            await self._emulator_admin(f"http://{http_host}:{self.http_port}/v1/zego/callbacks")

        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._ready = True
        log.info(
            "agentgw serving",
            extra={
                "grpc": f"{host}:{self.grpc_port}",
                "http": f"{http_host}:{self.http_port}",
                "admin_http_port": self.admin_port,
                "tls": settings.tls,
                "auth_mode": ",".join(sorted(settings.auth_mode)),
                "zego": self.zego_base_url,
                "emulator": self._emulator_admin is not None,
                "db": str(settings.db_path),
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

    async def _serve_http(self, settings: Settings, core: Core, metrics: Metrics) -> None:
        """Callbacks on ``callback_listen`` and health and metrics on ``admin_listen`` (the one unset
        defaults to ``http_listen``); everything on ``http_listen`` when neither is set, or when
        both name the same fixed address."""
        callback_listen = settings.callback_listen or settings.http_listen
        admin_listen = settings.admin_listen or settings.http_listen
        refresh = functools.partial(
            metrics.refresh_from_ledger,
            core.ledger,
            core.limits,
            leak_give_up_seconds=settings.leak_give_up_seconds,
        )
        callbacks = Route(
            "/v1/zego/callbacks",
            callback_endpoint(
                core.ingestor, max_body_bytes=settings.callback_max_body_bytes, observe=metrics.callback
            ),
            methods=["POST"],
        )
        metrics_route = Route("/metrics", metrics_endpoint(metrics, refresh))
        split = settings.callback_listen is not None or settings.admin_listen is not None
        if not split or (callback_listen == admin_listen and not callback_listen.endswith(":0")):
            both = create_http_app(lambda: self._ready, [callbacks, metrics_route])
            host, port = _split(callback_listen)
            self.http_port = self.admin_port = await self._stack.enter_async_context(
                serve_asgi(both, host, port)
            )
            return
        admin = create_http_app(lambda: self._ready, [metrics_route])
        # The internet-facing side answers the callback route and nothing else.
        host, port = _split(callback_listen)
        self.http_port = await self._stack.enter_async_context(
            serve_asgi(Starlette(routes=[callbacks]), host, port, name="callbacks")
        )
        host, port = _split(admin_listen)
        self.admin_port = await self._stack.enter_async_context(serve_asgi(admin, host, port, name="admin"))

    def _grpc_server(
        self, settings: Settings, core: Core, metrics: Metrics, authenticator: Authenticator
    ) -> grpc.aio.Server:
        # No grpc interceptors: every handler is wrapped once, at registration, by RpcHandlers.
        handlers = RpcHandlers(
            metrics, authenticator, AuditHook(core.audit, authenticating=authenticator.enabled)
        )
        # Page tokens are MACed with a key derived from the ServerSecret: stable across restarts,
        # never the secret itself.
        assert settings.zego_server_secret is not None and settings.zego_app_id is not None
        token_key = hashlib.sha256(
            b"agentgw-page-tokens:" + settings.zego_server_secret.reveal().encode()
        ).digest()
        handlers.register(
            agent_service_pb2_grpc.add_AgentServiceServicer_to_server,
            AgentServicer(core.agents, PageTokens(token_key, "agents")),
        )
        handlers.register(
            session_service_pb2_grpc.add_SessionServiceServicer_to_server,
            SessionServicer(
                core.sessions,
                PageTokens(token_key, "sessions"),
                max_duration_cap_seconds=settings.max_session_duration_cap_seconds,
                on_api_turn=core.latency.api_turn,
                budget_seconds=settings.interaction_budget_seconds,
                digital_humans=core.digital_humans,
            ),
        )
        handlers.register(
            digital_human_service_pb2_grpc.add_DigitalHumanServiceServicer_to_server,
            DigitalHumanServicer(core.digital_humans, PageTokens(token_key, "digital_humans")),
        )
        handlers.register(
            event_service_pb2_grpc.add_EventServiceServicer_to_server,
            EventServicer(
                core.ledger,
                core.bus,
                on_delivered=metrics.event_delivered,
                on_unreadable=metrics.event_unreadable,
            ),
        )
        handlers.register(
            room_token_service_pb2_grpc.add_RoomTokenServiceServicer_to_server,
            RoomTokenServicer(
                settings.zego_app_id,
                settings.zego_server_secret,
                authorize=core.sessions.authorize_room_token,
            ),
        )
        handlers.register(
            audit_service_pb2_grpc.add_AuditServiceServicer_to_server,
            AuditServicer(core.audit, PageTokens(token_key, "audit")),
        )
        handlers.register(health_pb2_grpc.add_HealthServicer_to_server, self._health)
        preinitialized = list(SERVICES)
        if settings.reflection:
            register_reflection(handlers, (*SERVICE_NAMES, health.SERVICE_NAME))
            preinitialized += reflection_services()
        preinitialize(metrics, preinitialized)
        server = grpc.aio.server(options=grpc_server_options())
        server.add_generic_rpc_handlers((handlers,))
        return server

    async def _start_emulator(self, settings: Settings) -> Settings:
        state_path = settings.emulator_state_path
        # Dev mode: the secrets persist with the emulator's state, so clients that signed with them
        # (and the page tokens MACed with a key derived from them) keep working after a restart.
        saved = (
            persist.secrets_of(persist.StateFile(state_path).load(), EMULATOR_APP_ID) if state_path else None
        )
        server_secret, callback_secret = saved or (secrets.token_hex(16), secrets.token_hex(16))
        http_host, http_port = _split(settings.callback_listen or settings.http_listen)
        config = EmulatorConfig(
            app_id=EMULATOR_APP_ID,
            server_secret=server_secret,
            callback_secret=callback_secret,
            callback_url=f"http://{http_host}:{http_port}/v1/zego/callbacks",
        )
        url = await self._stack.enter_async_context(
            run_emulator(config, host="127.0.0.1", port=0, state_file=state_path)
        )
        self.zego_base_url = url
        log.warning(
            "ZEGO emulator listening",
            extra={
                "url": url,
                "app_id": EMULATOR_APP_ID,
                "state_file": str(state_path) if state_path else None,
            },
        )

        async def point_callbacks_at(callback_url: str) -> None:
            # The HTTP port is known only once bound (it may be 0), so tell the emulator now.
            async with httpx.AsyncClient(base_url=url, timeout=5) as admin:
                response = await admin.post("/_emulator/callbacks", json={"url": callback_url})
                response.raise_for_status()

        self._emulator_admin = point_callbacks_at
        return replace(
            settings,
            zego_app_id=EMULATOR_APP_ID,
            zego_server_secret=Secret(server_secret),
            zego_callback_secret=Secret(callback_secret),
            zego_api_base=url,
            zego_digital_human_api_base=url + EMULATOR_DIGITAL_HUMAN_PATH,
        )

    async def _stop_grpc(self, server: grpc.aio.Server) -> None:
        """End every event stream at once (UNAVAILABLE, with the cursor to resume after), then let
        unary calls finish within the grace period. Idempotent."""
        if self._grpc_stopped:
            return
        self._grpc_stopped = True
        self.core.bus.shut_down()
        await server.stop(self.settings.shutdown_grace_seconds)

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
