"""The gRPC side of the gateway: the services, their handlers, server options and binding.

No grpc interceptors: every handler is wrapped once, at registration, by ``RpcHandlers``.
"""

from __future__ import annotations

import hashlib

import grpc
from grpc_health.v1 import health, health_pb2_grpc

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
from service.api.agents import AgentServicer
from service.api.audit import AuditHook, AuditServicer
from service.api.digital_humans import DigitalHumanServicer
from service.api.events import EventServicer
from service.api.metrics_interceptor import preinitialize
from service.api.paging import PageTokens
from service.api.reflection import reflection_services, register_reflection
from service.api.rpc_handlers import RpcHandlers
from service.api.sessions import SessionServicer
from service.api.tokens import RoomTokenServicer
from service.auth.authenticator import Authenticator
from service.auth.setup import server_credentials
from service.config import ListenSettings, Settings
from service.core import Core
from service.listeners import ListenError, split_address
from service.metrics import Metrics

__all__ = ["SERVICES", "SERVICE_NAMES", "bind_grpc", "build_grpc_server", "grpc_server_options"]

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


def _register_services(handlers: RpcHandlers, settings: Settings, core: Core, metrics: Metrics) -> None:
    zego = settings.zego
    assert zego.server_secret is not None and zego.app_id is not None
    # Page tokens are MACed with a key derived from the ServerSecret: stable across restarts,
    # never the secret itself.
    token_key = hashlib.sha256(b"agentgw-page-tokens:" + zego.server_secret.reveal().encode()).digest()
    handlers.register(
        agent_service_pb2_grpc.add_AgentServiceServicer_to_server,
        AgentServicer(core.agents, PageTokens(token_key, "agents")),
    )
    handlers.register(
        session_service_pb2_grpc.add_SessionServiceServicer_to_server,
        SessionServicer(
            core.sessions,
            PageTokens(token_key, "sessions"),
            max_duration_cap_seconds=settings.sessions.max_duration_cap_seconds,
            on_api_turn=core.latency.api_turn,
            budget_seconds=settings.latency.budget_seconds,
            digital_humans=core.digital_humans,
        ),
    )
    handlers.register(
        digital_human_service_pb2_grpc.add_DigitalHumanServiceServicer_to_server,
        DigitalHumanServicer(core.digital_humans, PageTokens(token_key, "digital_humans")),
    )
    handlers.register(
        event_service_pb2_grpc.add_EventServiceServicer_to_server,
        EventServicer(core.watch, on_unreadable=metrics.event_unreadable),
    )
    handlers.register(
        room_token_service_pb2_grpc.add_RoomTokenServiceServicer_to_server,
        RoomTokenServicer(zego.app_id, zego.server_secret, authorize=core.sessions.authorize_room_token),
    )
    handlers.register(
        audit_service_pb2_grpc.add_AuditServiceServicer_to_server,
        AuditServicer(core.audit, PageTokens(token_key, "audit")),
    )


def build_grpc_server(
    settings: Settings,
    core: Core,
    metrics: Metrics,
    authenticator: Authenticator,
    health_servicer: health.aio.HealthServicer,  # type: ignore[name-defined]
) -> grpc.aio.Server:
    """A server with every agentgw service, health and (unless turned off) reflection; not bound."""
    handlers = RpcHandlers(
        metrics, authenticator, AuditHook(core.audit, authenticating=authenticator.enabled)
    )
    _register_services(handlers, settings, core, metrics)
    handlers.register(health_pb2_grpc.add_HealthServicer_to_server, health_servicer)
    preinitialized = list(SERVICES)
    if settings.server.reflection:
        register_reflection(handlers, (*SERVICE_NAMES, health.SERVICE_NAME))
        preinitialized += reflection_services()
    preinitialize(metrics, preinitialized)
    server = grpc.aio.server(options=grpc_server_options())
    server.add_generic_rpc_handlers((handlers,))
    return server


def bind_grpc(server: grpc.aio.Server, listen: ListenSettings) -> int:
    """Bind ``listen.grpc`` (with TLS when configured); the port bound.

    Raises:
        ListenError: the port was taken since ``check_listen``.
    """
    host, port = split_address(listen.grpc)
    credentials = server_credentials(listen)
    try:
        if credentials is None:
            return server.add_insecure_port(f"{host}:{port}")
        return server.add_secure_port(f"{host}:{port}", credentials)
    except RuntimeError as exc:  # gRPC says only "Failed to bind"
        raise ListenError("grpc_listen", listen.grpc, str(exc)) from None
