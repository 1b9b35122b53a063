"""The one configuration object: a frozen, typed ``Settings``, loaded from env vars and CLI flags.

Every field maps to an environment variable ``AGENTGW_<FIELD>`` and a flag ``--<field-with-dashes>``;
a flag wins over the variable, and both win over the default. Invalid input raises ``ConfigError``
with one line naming the variable (or flag) at fault, so start-up fails clearly.

Secrets are held in ``Secret``, whose ``repr`` and ``str`` are masked: printing the settings, or
logging them, never shows a secret.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service import __version__
from service.auth.authenticator import AUTH_MODES
from service.auth.certs import parse_roles
from service.auth.principal import Role
from service.domain.quotas import load_quotas
from service.zego.digital_human import resolve_digital_human_base
from service.zego.regions import resolve_base_url

__all__ = ["ConfigError", "Secret", "Settings", "load_settings", "redact_url"]

ENV_PREFIX = "AGENTGW_"


class ConfigError(ValueError):
    """Raised when a setting is invalid. The message is one line and names the variable."""


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must use it (signing, token minting)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be zero or a positive number")
    return value


def _app_id(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 2**32:
        raise ValueError("must be a ZEGO AppId, an integer from 1 to 4294967295")
    return value


def _server_secret(raw: str) -> Secret:
    # ZEGO's ServerSecret is 32 characters; Token04 uses it as an AES-256 key (spec §13).
    if len(raw) != 32:
        raise ValueError(f"must be the 32-character ServerSecret from the ZEGO console (got {len(raw)})")
    return Secret(raw)


def _secret(raw: str) -> Secret:
    if not raw:
        raise ValueError("must not be empty")
    return Secret(raw)


def _listen(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:50051")
    return raw


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


def _validation_policy(raw: str) -> str:
    policy = raw.strip().lower()
    if policy not in {"strict", "fail_open", "off"}:
        raise ValueError("must be one of strict, fail_open, off")
    return policy


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _auth_mode(raw: str) -> frozenset[str]:
    modes = frozenset(part.strip().lower() for part in raw.split(",") if part.strip())
    unknown = sorted(modes - AUTH_MODES)
    if not modes or unknown:
        raise ValueError("must be none, jwt, mtls or jwt,mtls")
    if "none" in modes and len(modes) > 1:
        raise ValueError("none cannot be combined with jwt or mtls")
    return modes


def _existing_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise ValueError(f"no such file: {raw}")
    return path


def _http_url(raw: str) -> str:
    if not raw.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return raw


def _leeway(raw: str) -> float:
    value = _non_negative_float(raw)
    if value > 300:
        raise ValueError("must be at most 300 seconds")
    return value


def _roles(raw: str) -> tuple[tuple[str, Role], ...]:
    return tuple(sorted(parse_roles(raw).items()))


def _state_file(raw: str) -> str:
    if raw.strip() != raw or raw.endswith("/"):
        raise ValueError("must be auto, off, or a file path")
    return raw


def _database_url(raw: str) -> Secret:
    # Never echo the value: it may hold a password.
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme not in ("postgresql", "postgres") or not rest:
        raise ValueError("must be a postgresql:// URL, e.g. postgresql://user@host:5432/agentgw")
    return Secret(raw)


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url if sep else "***"
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _setting(default: Any, parse: Callable[[str], Any], doc: str) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Everything agentgw reads at start-up. Build it with :func:`load_settings`."""

    zego_app_id: int | None = _setting(None, _app_id, "ZEGO AppId. Unset: run the bundled emulator.")
    """ZEGO AppId from the console. With no AppId and no ServerSecret, agentgw starts its emulator."""

    zego_server_secret: Secret | None = _setting(None, _server_secret, "ZEGO ServerSecret (32 chars).")
    """Signs API requests and RTC tokens."""

    zego_callback_secret: Secret | None = _setting(None, _secret, "ZEGO CallbackSecret.")
    """Verifies ZEGO's server callbacks."""

    zego_api_base: str = _setting(
        "https://aigc-aiagent-api.zegotech.cn",
        resolve_base_url,
        "ZEGO API host: a region name (unified, sha, hkg, fra, lax, bom, sgp) or a URL.",
    )
    """Base URL of the ZEGO AI Agent API (spec §1.1)."""

    zego_digital_human_api_base: str | None = _setting(
        None,
        resolve_digital_human_base,
        "ZEGO Digital Human API host: unified, sample, or a URL. Unset: derived from zego_api_base.",
    )
    """Base URL of ZEGO's Digital Human API (docs/zego-digital-human-api.md §1). ZEGO's docs say
    ``aigc-digitalhuman-api.zegotech.cn`` (``unified``), its sample server ``aigc-digital-human-api``
    (``sample``). Unset: the documented host for a ZEGO region, ``<zego_api_base>/digitalhuman`` for
    any other URL (the emulator serves both APIs) [INFER]."""

    digital_human_cache_seconds: float = _setting(
        300.0, _non_negative_float, "How long digital-human lookups are cached."
    )
    """Cache lifetime of avatar and voice answers; never past the avatar URL's 24 h validity."""

    digital_human_not_found_cache_seconds: float = _setting(
        10.0, _non_negative_float, "How long an unknown digital_human_id is remembered."
    )
    """A short negative cache, so a retried typo does not spend ZEGO's 10 requests/s."""

    digital_human_validation: str = _setting(
        "fail_open", _validation_policy, "CreateSession's digital_human_id check: strict, fail_open, off."
    )
    """``fail_open``: unknown ids are NOT_FOUND before any create, but if the Digital Human API cannot
    answer the create proceeds; ``strict`` fails it then; ``off`` never looks the id up [INFER]."""

    zego_rate_per_second: float = _setting(10.0, _positive_float, "Client-side limit per ZEGO action.")
    """Requests per second per action; ZEGO documents 10."""

    zego_timeout_seconds: float = _setting(10.0, _positive_float, "Upper bound of one ZEGO call.")
    """Per-call timeout, further bounded by the caller's gRPC deadline."""

    zego_max_retries: int = _setting(2, _non_negative_int, "Retries of read-only ZEGO calls.")
    """Retries after transport errors, for read-only actions only."""

    grpc_listen: str = _setting("127.0.0.1:50051", _listen, "gRPC listen address.")
    """Where the gRPC server listens."""

    http_listen: str = _setting(
        "127.0.0.1:8080", _listen, "HTTP listen address (health, callbacks, metrics)."
    )
    """Where the HTTP server listens."""

    db_path: Path = _setting(Path("var/agentgw.db"), Path, "SQLite ledger file.")
    """The ledger's SQLite file; its directory is created if missing."""

    database_url: Secret | None = _setting(
        None, _database_url, "PostgreSQL ledger URL (postgresql://user@host:5432/db). Unset: SQLite."
    )
    """Set: the ledger is this PostgreSQL database, which several replicas may share (a fleet);
    ``db_path`` then holds no ledger. Masked like every secret (it may carry a password)."""

    db_pool_min_size: int = _setting(1, _non_negative_int, "PostgreSQL connections kept open.")
    """Connections the PostgreSQL ledger's pool keeps open when idle."""

    db_pool_max_size: int = _setting(10, _positive_int, "Most PostgreSQL connections at once.")
    """Upper bound of the PostgreSQL ledger's pool (per replica: mind the server's max_connections)."""

    db_statement_timeout_seconds: float = _setting(
        5.0, _positive_float, "PostgreSQL statement_timeout of the ledger's connections."
    )
    """A ledger statement running (or waiting for a lock) longer than this is cancelled and the call
    fails UNAVAILABLE; transactions idle this long (x4) are ended by the server."""

    voice_limit: int = _setting(10, _positive_int, "Concurrent voice instances allowed.")
    """Admission limit for voice sessions (ZEGO's default cap is 10 per AppId)."""

    digital_human_limit: int = _setting(10, _positive_int, "Concurrent digital-human instances allowed.")
    """Admission limit shared by digital-human and live digital-human sessions."""

    max_session_duration_seconds: int = _setting(3600, _positive_int, "Default session max_duration.")
    """A session without max_duration is ended after this long."""

    max_session_duration_cap_seconds: int = _setting(86400, _positive_int, "Largest max_duration allowed.")
    """Requests asking for a longer max_duration are rejected."""

    idempotency_ttl_seconds: int = _setting(86400, _positive_int, "How long request_ids are honoured.")
    """A retried request_id returns the original result for at least this long."""

    callback_skew_seconds: float = _setting(300.0, _positive_float, "Allowed callback Timestamp skew.")
    """Callbacks whose Timestamp is further than this from our clock are rejected as stale."""

    callback_max_body_bytes: int = _setting(1_048_576, _positive_int, "Largest callback body accepted.")
    """Larger callback bodies are rejected with 413 before they are read in full."""

    event_retention_seconds: int = _setting(86400, _positive_int, "How long events stay resumable.")
    """Events older than this are purged; resuming before them is CURSOR_EXPIRED."""

    subscriber_queue_size: int = _setting(1000, _positive_int, "Events buffered per subscriber.")
    """A WatchEvents subscriber further behind than this is cut off (SUBSCRIBER_TOO_SLOW)."""

    heartbeat_seconds: float = _setting(15.0, _positive_float, "Heartbeat interval on idle streams.")
    """Idle WatchEvents streams get a heartbeat with the current cursor this often."""

    end_confirm_seconds: float = _setting(2.0, _non_negative_float, "Wait for ZEGO's end callback.")
    """After EndSession's delete, wait this long for ZEGO's AgentInstanceDeleted (it carries ZEGO's
    LatencyData) before synthesizing the session's ended event; 0 never waits."""

    leak_give_up_seconds: float = _setting(3600.0, _positive_float, "Give up confirming a leak after.")
    """An instance that may still run at ZEGO (a possible leak) is retried until ZEGO confirms it
    gone or this long after its session ended; then it is reported as a leak (metric, alert). Its
    capacity slot stays held either way."""

    leak_retry_initial_seconds: float = _setting(5.0, _positive_float, "First delay between leak retries.")
    """The delay after the first failed attempt to confirm a possible leak gone; it doubles per attempt."""

    leak_retry_max_seconds: float = _setting(300.0, _positive_float, "Largest delay between leak retries.")
    """The cap of the doubling delay between attempts to confirm a possible leak gone."""

    interaction_budget_seconds: float = _setting(1.5, _positive_float, "Turn-latency budget.")
    """A turn slower than this (end of user speech to agent speaking) is a budget breach."""

    shutdown_grace_seconds: float = _setting(10.0, _positive_float, "Grace period for in-flight RPCs.")
    """On SIGTERM, RPCs get this long to finish before they are cancelled."""

    log_level: str = _setting("INFO", _log_level, "DEBUG, INFO, WARNING or ERROR.")
    """Log level of the JSON logs on stderr."""

    callback_listen: str | None = _setting(
        None, _listen, "Address serving only POST /v1/zego/callbacks (what ZEGO must reach)."
    )
    """With ``admin_listen``, splits the HTTP side; unset, ``http_listen`` serves callbacks."""

    admin_listen: str | None = _setting(None, _listen, "Address serving /metrics, /healthz and /readyz.")
    """With ``callback_listen``, splits the HTTP side; unset, ``http_listen`` serves them."""

    auth_mode: frozenset[str] = _setting(frozenset({"none"}), _auth_mode, "none, jwt, mtls or jwt,mtls.")
    """How callers authenticate. ``none`` is refused on a non-loopback gRPC address unless
    ``allow_insecure`` is set."""

    allow_insecure: bool = _setting(False, _bool, "Allow AUTH_MODE=none on a non-loopback address.")
    """Accept unauthenticated calls on a reachable address (never do this in production)."""

    auth_jwks_file: Path | None = _setting(None, _existing_file, "JWKS file of the JWT keys (reloaded).")
    """Verification keys for bearer tokens; re-read when the file changes."""

    auth_jwks_url: str | None = _setting(None, _http_url, "JWKS URL of the JWT keys (cached).")
    """Verification keys for bearer tokens, fetched and cached for five minutes."""

    auth_issuer: str | None = _setting(None, str, "Required JWT iss, when set.")
    """Tokens from another issuer are refused."""

    auth_audience: str | None = _setting(None, str, "Required JWT aud, when set.")
    """Tokens for another audience are refused."""

    auth_leeway_seconds: float = _setting(30.0, _leeway, "Clock skew allowed on exp/nbf (max 300).")
    """Tolerance for clock differences between the token issuer and the gateway."""

    auth_roles: tuple[tuple[str, Role], ...] = _setting(
        (), _roles, "Roles of certificate callers, e.g. sre-bot=viewer,ops=admin."
    )
    """mTLS identities and their roles; unlisted identities are callers."""

    tls_cert_file: Path | None = _setting(None, _existing_file, "Server certificate (PEM) for gRPC TLS.")
    """With ``tls_key_file``, the gRPC port serves TLS."""

    tls_key_file: Path | None = _setting(None, _existing_file, "Server private key (PEM) for gRPC TLS.")
    """The key of ``tls_cert_file``."""

    tls_client_ca_file: Path | None = _setting(
        None, _existing_file, "CA bundle (PEM) that client certificates must chain to."
    )
    """Set: every gRPC client must present a certificate signed by it (mTLS)."""

    quotas_file: Path | None = _setting(None, _existing_file, "Per-caller quotas (TOML).")
    """Concurrent sessions per pool and a share of ZEGO's request rate, per caller (see
    ``service.domain.quotas``); unset, callers share the pools freely."""

    audit_retention_seconds: int = _setting(7_776_000, _positive_int, "How long audit records are kept.")
    """Audit records older than this are purged (default 90 days)."""

    reflection: bool = _setting(True, _bool, "Serve gRPC server reflection.")
    """Reflection lists every method; turn it off where callers should not browse the API."""

    @property
    def tls(self) -> bool:
        """True when the gRPC port serves TLS."""
        return self.tls_cert_file is not None

    emulator_state_file: str = _setting(
        "auto",
        _state_file,
        "Embedded emulator's state file: auto (emulator.json beside the ledger), off, or a path.",
    )
    """Where the embedded emulator (no ZEGO credentials) keeps its agents, instances and secrets, so
    a restart finds them as ZEGO would; ``off`` keeps them in memory only. Unused with ZEGO."""

    @property
    def emulator_state_path(self) -> Path | None:
        """The embedded emulator's state file, or None when it keeps its state in memory only."""
        if self.emulator_state_file == "off":
            return None
        if self.emulator_state_file == "auto":
            return self.db_path.parent / "emulator.json"
        return Path(self.emulator_state_file)

    @property
    def uses_emulator(self) -> bool:
        """True when no ZEGO credentials are configured, so the bundled emulator is started."""
        return self.zego_app_id is None and self.zego_server_secret is None

    def describe(self) -> dict[str, str]:
        """Every setting as text, secrets masked, for the start-up log line."""
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def env_name(field_name: str) -> str:
    """The environment variable for a settings field."""
    return ENV_PREFIX + field_name.upper()


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def argument_parser() -> argparse.ArgumentParser:
    """The CLI: one flag per setting, documented with its environment variable."""
    parser = argparse.ArgumentParser(
        prog="agentgw serve",
        description="gRPC gateway for ZEGO AI agents and digital humans. Every flag can also be set "
        "by its environment variable; a flag wins over the variable, which wins over the default.",
        epilog="Without ZEGO credentials the gateway starts its bundled ZEGO emulator on loopback.",
    )
    parser.add_argument("--version", action="version", version=f"agentgw {__version__}")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="Start the embedded emulator empty: delete its state file first (dev mode only).",
    )
    for f in dataclasses.fields(Settings):
        default = "unset" if f.default is None else str(f.default)
        parser.add_argument(
            _flag(f.name),
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            # "%" would start an argparse format specifier.
            help=f"{f.metadata['doc']} (default: {default}; env {env_name(f.name)})".replace("%", "%%"),
        )
    return parser


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from flags (first), environment variables, then defaults.

    Raises:
        ConfigError: one line naming the variable or flag at fault.
    """
    environ = os.environ if environ is None else environ
    args = vars(argument_parser().parse_args([] if argv is None else list(argv)))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw, source = args.get(f.name), _flag(f.name)
        if raw is None:
            raw, source = environ.get(env_name(f.name)), env_name(f.name)
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            # int("abc") says "invalid literal for int() with base 10"; say what we wanted instead.
            reason = str(exc) if "literal" not in str(exc) and "convert" not in str(exc) else "not a number"
            raise ConfigError(f"{source}: {reason}") from None
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_security(settings: Settings) -> None:
    modes = settings.auth_mode
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        missing = "tls_key_file" if settings.tls_key_file is None else "tls_cert_file"
        raise ConfigError(f"{env_name(missing)}: required when the other TLS file is set")
    if settings.tls_client_ca_file is not None and settings.tls_cert_file is None:
        raise ConfigError(f"{env_name('tls_cert_file')}: client certificates need the server's TLS files")
    if "jwt" in modes and settings.auth_jwks_file is None and settings.auth_jwks_url is None:
        raise ConfigError(
            f"{env_name('auth_jwks_file')}: jwt mode needs a JWKS file or AGENTGW_AUTH_JWKS_URL"
        )
    if "mtls" in modes and settings.tls_client_ca_file is None:
        raise ConfigError(f"{env_name('tls_client_ca_file')}: mtls mode needs the client CA bundle")
    if (
        modes == frozenset({"none"})
        and not settings.allow_insecure
        and not _is_loopback(settings.grpc_listen)
    ):
        raise ConfigError(
            f"{env_name('auth_mode')}: authentication is off and {settings.grpc_listen} is not loopback; "
            f"set AGENTGW_AUTH_MODE=jwt or mtls, or AGENTGW_ALLOW_INSECURE=true to accept any caller"
        )


def _check_consistency(settings: Settings) -> None:
    _check_security(settings)
    if settings.quotas_file is not None:
        try:
            load_quotas(settings.quotas_file)
        except ValueError as exc:
            raise ConfigError(f"{env_name('quotas_file')}: {exc}") from None
    if (settings.zego_app_id is None) != (settings.zego_server_secret is None):
        missing = "zego_server_secret" if settings.zego_server_secret is None else "zego_app_id"
        raise ConfigError(f"{env_name(missing)}: required when the other ZEGO credential is set")
    if settings.db_pool_min_size > settings.db_pool_max_size:
        raise ConfigError(
            f"{env_name('db_pool_min_size')}: must not exceed {env_name('db_pool_max_size')}"
            f" ({settings.db_pool_max_size})"
        )
    if settings.leak_retry_max_seconds < settings.leak_retry_initial_seconds:
        raise ConfigError(
            f"{env_name('leak_retry_max_seconds')}: must not be below "
            f"{env_name('leak_retry_initial_seconds')} ({settings.leak_retry_initial_seconds:g})"
        )
    if settings.max_session_duration_seconds > settings.max_session_duration_cap_seconds:
        raise ConfigError(
            f"{env_name('max_session_duration_seconds')}: must not exceed "
            f"{env_name('max_session_duration_cap_seconds')} ({settings.max_session_duration_cap_seconds})"
        )
