"""How the client authenticates: TLS from PEM files and a bearer token, ready for the identity work."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["Credentials"]

TokenSource = str | Callable[[], str]
"""A fixed token, or a callable returning the current one (called once per attempt, so it may rotate)."""


def _is_loopback(target: str) -> bool:
    host = target.rsplit(":", 1)[0] if not target.startswith("[") else target[1:].split("]", 1)[0]
    host = host.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    if host == "localhost" or target.startswith("unix:"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Credentials:
    """TLS material (PEM file paths) and an optional bearer token.

    ``Credentials()`` is a plaintext channel with no token (loopback development). Use
    :meth:`tls` for TLS, with ``cert`` and ``key`` for mutual TLS.
    """

    use_tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    bearer_token: TokenSource | None = None
    server_name: str | None = None
    """Overrides the name checked in the server's certificate (``grpc.ssl_target_name_override``)."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        if not self.use_tls and (self.ca_file or self.cert_file):
            raise ValueError("TLS files given without use_tls; use Credentials.tls(...)")

    @classmethod
    def tls(
        cls,
        *,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        bearer_token: TokenSource | None = None,
        server_name: str | None = None,
    ) -> Credentials:
        """TLS, verifying the server against ``ca`` (the system roots if None); ``cert``+``key`` for mTLS."""
        return cls(
            use_tls=True,
            ca_file=Path(ca) if ca else None,
            cert_file=Path(cert) if cert else None,
            key_file=Path(key) if key else None,
            bearer_token=bearer_token,
            server_name=server_name,
        )

    def channel(self, target: str, options: list[tuple[str, str | int]]) -> grpc.aio.Channel:
        """A channel to ``target`` with these credentials. A token over plaintext must stay on loopback."""
        if not self.use_tls:
            if self.bearer_token is not None and not _is_loopback(target):
                raise ValueError(f"refusing to send a bearer token in plaintext to {target}; use TLS")
            return grpc.aio.insecure_channel(target, options=options)
        ssl = grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )
        if self.server_name:
            options = [*options, ("grpc.ssl_target_name_override", self.server_name)]
        return grpc.aio.secure_channel(target, ssl, options=options)

    def metadata(self) -> list[tuple[str, str]]:
        """The per-call metadata these credentials add (``authorization``)."""
        if self.bearer_token is None:
            return []
        token = self.bearer_token() if callable(self.bearer_token) else self.bearer_token
        return [("authorization", f"Bearer {token}")]
