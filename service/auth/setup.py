"""Builds the gateway's :class:`Authenticator` and gRPC server credentials from the settings."""

from __future__ import annotations

import contextlib
import logging

import grpc

from service.auth.authenticator import Authenticator
from service.auth.bearer import JwtVerifier
from service.auth.jwks import JwksFile, JwksSource, JwksUrl
from service.config import AuthSettings, ListenSettings

__all__ = ["build_authenticator", "server_credentials"]

log = logging.getLogger("agentgw.auth")


async def build_authenticator(settings: AuthSettings, stack: contextlib.AsyncExitStack) -> Authenticator:
    """The authenticator of ``settings.mode``; key sources are released with ``stack``."""
    verifier = None
    if "jwt" in settings.mode:
        source: JwksSource
        if settings.jwks_file is not None:
            source = JwksFile(settings.jwks_file)
        else:
            assert settings.jwks_url is not None
            url_source = JwksUrl(settings.jwks_url)
            stack.push_async_callback(url_source.aclose)
            source = url_source
        verifier = JwtVerifier(
            source,
            issuer=settings.issuer,
            audience=settings.audience,
            leeway_seconds=settings.leeway_seconds,
        )
    authenticator = Authenticator(settings.mode, verifier=verifier, certificate_roles=dict(settings.roles))
    if authenticator.enabled:
        log.info("authentication on", extra={"auth_mode": ",".join(sorted(settings.mode))})
    else:
        log.warning("authentication is off (AGENTGW_AUTH_MODE=none): every caller is an anonymous admin")
    return authenticator


def server_credentials(settings: ListenSettings) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC port, requiring client certificates when a client CA is set."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )
