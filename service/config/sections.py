"""The gateway's own sections of the settings: ZEGO, listeners, auth, the ledger, the process.

Each section is a frozen dataclass handed whole to the component that consumes it. Every field's
``key`` is its public name (``AGENTGW_<KEY>``, ``--<key>``); the attribute may be shorter, since
the section already says what it is about (``settings.zego.app_id`` is ``AGENTGW_ZEGO_APP_ID``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from service.config import values as v
from service.config.values import Secret, setting

if TYPE_CHECKING:
    from service.auth.principal import Role

__all__ = [
    "AuthSettings",
    "EmulatorSettings",
    "LedgerSettings",
    "ListenSettings",
    "ServerSettings",
    "ZegoSettings",
]


@dataclass(frozen=True)
class ZegoSettings:
    """The ZEGO account and how the ZEGO client calls it (``service.zego.client``)."""

    app_id: int | None = setting(
        None, v.app_id, "ZEGO AppId. Unset: run the bundled emulator.", key="zego_app_id"
    )
    """ZEGO AppId from the console. With no AppId and no ServerSecret, agentgw starts its emulator."""

    server_secret: Secret | None = setting(
        None, v.server_secret, "ZEGO ServerSecret (32 chars).", key="zego_server_secret"
    )
    """Signs API requests and RTC tokens."""

    callback_secret: Secret | None = setting(
        None, v.secret, "ZEGO CallbackSecret.", key="zego_callback_secret"
    )
    """Verifies ZEGO's server callbacks."""

    api_base: str = setting(
        "https://aigc-aiagent-api.zegotech.cn",
        v.zego_api_base,
        "ZEGO API host: a region name (unified, sha, hkg, fra, lax, bom, sgp) or a URL.",
        key="zego_api_base",
    )
    """Base URL of the ZEGO AI Agent API (spec §1.1)."""

    digital_human_api_base: str | None = setting(
        None,
        v.zego_digital_human_api_base,
        "ZEGO Digital Human API host: unified, sample, or a URL. Unset: derived from zego_api_base.",
        key="zego_digital_human_api_base",
    )
    """Base URL of ZEGO's Digital Human API (docs/zego-digital-human-api.md §1). ZEGO's docs say
    ``aigc-digitalhuman-api.zegotech.cn`` (``unified``), its sample server ``aigc-digital-human-api``
    (``sample``). Unset: the documented host for a ZEGO region, ``<zego_api_base>/digitalhuman`` for
    any other URL (the emulator serves both APIs) [INFER]."""

    rate_per_second: float = setting(
        10.0, v.positive_float, "Client-side limit per ZEGO action.", key="zego_rate_per_second"
    )
    """Requests per second per action; ZEGO documents 10."""

    timeout_seconds: float = setting(
        10.0, v.positive_float, "Upper bound of one ZEGO call.", key="zego_timeout_seconds"
    )
    """Per-call timeout, further bounded by the caller's gRPC deadline."""

    max_retries: int = setting(
        2, v.non_negative_int, "Retries of read-only ZEGO calls.", key="zego_max_retries"
    )
    """Retries after transport errors, for read-only actions only."""

    @property
    def uses_emulator(self) -> bool:
        """True when no ZEGO credentials are configured, so the bundled emulator is started."""
        return self.app_id is None and self.server_secret is None


@dataclass(frozen=True)
class ListenSettings:
    """Where the gRPC and HTTP servers listen, and the gRPC port's TLS (``service.server``)."""

    grpc: str = setting("127.0.0.1:50051", v.listen, "gRPC listen address.", key="grpc_listen")
    """Where the gRPC server listens."""

    http: str = setting(
        "127.0.0.1:8080", v.listen, "HTTP listen address (health, callbacks, metrics).", key="http_listen"
    )
    """Where the HTTP server listens."""

    callback: str | None = setting(
        None,
        v.listen,
        "Address serving only POST /v1/zego/callbacks (what ZEGO must reach).",
        key="callback_listen",
    )
    """With ``admin``, splits the HTTP side; unset, ``http`` serves callbacks."""

    admin: str | None = setting(
        None, v.listen, "Address serving /metrics, /healthz and /readyz.", key="admin_listen"
    )
    """With ``callback``, splits the HTTP side; unset, ``http`` serves them."""

    tls_cert_file: Path | None = setting(
        None, v.existing_file, "Server certificate (PEM) for gRPC TLS.", key="tls_cert_file"
    )
    """With ``tls_key_file``, the gRPC port serves TLS."""

    tls_key_file: Path | None = setting(
        None, v.existing_file, "Server private key (PEM) for gRPC TLS.", key="tls_key_file"
    )
    """The key of ``tls_cert_file``."""

    tls_client_ca_file: Path | None = setting(
        None,
        v.existing_file,
        "CA bundle (PEM) that client certificates must chain to.",
        key="tls_client_ca_file",
    )
    """Set: every gRPC client must present a certificate signed by it (mTLS)."""

    @property
    def tls(self) -> bool:
        """True when the gRPC port serves TLS."""
        return self.tls_cert_file is not None

    @property
    def callback_address(self) -> str:
        """The address serving ZEGO's callbacks: ``callback``, else ``http``."""
        return self.callback or self.http

    @property
    def admin_address(self) -> str:
        """The address serving /metrics, /healthz and /readyz: ``admin``, else ``http``."""
        return self.admin or self.http

    @property
    def split(self) -> bool:
        """True when callbacks and the admin routes are configured apart."""
        return self.callback is not None or self.admin is not None


@dataclass(frozen=True)
class AuthSettings:
    """How callers authenticate (``service.auth.setup``)."""

    mode: frozenset[str] = setting(
        frozenset({"none"}), v.auth_mode, "none, jwt, mtls or jwt,mtls.", key="auth_mode"
    )
    """How callers authenticate. ``none`` is refused on a non-loopback gRPC address unless
    ``allow_insecure`` is set."""

    allow_insecure: bool = setting(
        False, v.boolean, "Allow AUTH_MODE=none on a non-loopback address.", key="allow_insecure"
    )
    """Accept unauthenticated calls on a reachable address (never do this in production)."""

    jwks_file: Path | None = setting(
        None, v.existing_file, "JWKS file of the JWT keys (reloaded).", key="auth_jwks_file"
    )
    """Verification keys for bearer tokens; re-read when the file changes."""

    jwks_url: str | None = setting(
        None, v.http_url, "JWKS URL of the JWT keys (cached).", key="auth_jwks_url"
    )
    """Verification keys for bearer tokens, fetched and cached for five minutes."""

    issuer: str | None = setting(None, str, "Required JWT iss, when set.", key="auth_issuer")
    """Tokens from another issuer are refused."""

    audience: str | None = setting(None, str, "Required JWT aud, when set.", key="auth_audience")
    """Tokens for another audience are refused."""

    leeway_seconds: float = setting(
        30.0, v.leeway, "Clock skew allowed on exp/nbf (max 300).", key="auth_leeway_seconds"
    )
    """Tolerance for clock differences between the token issuer and the gateway."""

    roles: tuple[tuple[str, Role], ...] = setting(
        (), v.roles, "Roles of certificate callers, e.g. sre-bot=viewer,ops=admin.", key="auth_roles"
    )
    """mTLS identities and their roles; unlisted identities are callers."""


@dataclass(frozen=True)
class LedgerSettings:
    """The durable ledger (``service.store``)."""

    db_path: Path = setting(Path("var/agentgw.db"), Path, "SQLite ledger file.", key="db_path")
    """The ledger's SQLite file; its directory is created if missing."""

    database_url: Secret | None = setting(
        None,
        v.database_url,
        "PostgreSQL ledger URL (postgresql://user@host:5432/db). Unset: SQLite.",
        key="database_url",
    )
    """Set: the ledger is this PostgreSQL database, which several replicas may share (a fleet);
    ``db_path`` then holds no ledger. Masked like every secret (it may carry a password)."""

    pool_min_size: int = setting(
        1, v.non_negative_int, "PostgreSQL connections kept open.", key="db_pool_min_size"
    )
    """Connections the PostgreSQL ledger's pool keeps open when idle."""

    pool_max_size: int = setting(
        10, v.positive_int, "Most PostgreSQL connections at once.", key="db_pool_max_size"
    )
    """Upper bound of the PostgreSQL ledger's pool (per replica: mind the server's max_connections)."""

    statement_timeout_seconds: float = setting(
        5.0,
        v.positive_float,
        "PostgreSQL statement_timeout of the ledger's connections.",
        key="db_statement_timeout_seconds",
    )
    """A ledger statement running (or waiting for a lock) longer than this is cancelled and the call
    fails UNAVAILABLE; transactions idle this long (x4) are ended by the server."""


@dataclass(frozen=True)
class ServerSettings:
    """The process around the components: logs, reflection, shutdown (``service.server``)."""

    shutdown_grace_seconds: float = setting(
        10.0, v.positive_float, "Grace period for in-flight RPCs.", key="shutdown_grace_seconds"
    )
    """On SIGTERM, RPCs get this long to finish before they are cancelled."""

    log_level: str = setting("INFO", v.log_level, "DEBUG, INFO, WARNING or ERROR.", key="log_level")
    """Log level of the JSON logs on stderr."""

    reflection: bool = setting(True, v.boolean, "Serve gRPC server reflection.", key="reflection")
    """Reflection lists every method; turn it off where callers should not browse the API."""


@dataclass(frozen=True)
class EmulatorSettings:
    """The embedded ZEGO emulator, started only without ZEGO credentials."""

    state_file: str = setting(
        "auto",
        v.state_file,
        "Embedded emulator's state file: auto (emulator.json beside the ledger), off, or a path.",
        key="emulator_state_file",
    )
    """Where the embedded emulator (no ZEGO credentials) keeps its agents, instances and secrets, so
    a restart finds them as ZEGO would; ``off`` keeps them in memory only. Unused with ZEGO."""
