"""Loading the settings: flags, then ``AGENTGW_*`` variables, then defaults; checks across fields.

Invalid input raises ``ConfigError`` with one line naming the variable (or flag) at fault, so
start-up fails clearly.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from typing import Any

from service import __version__
from service.config.settings import Leaf, Settings, leaves
from service.config.values import ConfigError

__all__ = ["ENV_PREFIX", "argument_parser", "env_name", "env_names", "load_settings"]

ENV_PREFIX = "AGENTGW_"


def env_name(key: str) -> str:
    """The environment variable of a setting's public key (``grpc_listen`` -> ``AGENTGW_GRPC_LISTEN``)."""
    return ENV_PREFIX + key.upper()


def env_names() -> frozenset[str]:
    """Every environment variable agentgw reads as a setting."""
    return frozenset(env_name(leaf.key) for leaf in leaves())


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def argument_parser() -> argparse.ArgumentParser:
    """The CLI: one flag per setting, grouped by section, documented with its environment variable."""
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
    groups: dict[str, argparse._ArgumentGroup] = {}
    for leaf in leaves():
        if leaf.section not in groups:
            groups[leaf.section] = parser.add_argument_group(f"{leaf.section} settings")
        default = "unset" if leaf.default is None else str(leaf.default)
        groups[leaf.section].add_argument(
            _flag(leaf.key),
            dest=leaf.key,
            default=None,
            metavar=leaf.key.upper(),
            # "%" would start an argparse format specifier.
            help=f"{leaf.doc} (default: {default}; env {env_name(leaf.key)})".replace("%", "%%"),
        )
    return parser


def _parse(leaf: Leaf, raw: str, source: str) -> Any:
    try:
        return leaf.parse(raw)
    except ValueError as exc:
        # int("abc") says "invalid literal for int() with base 10"; say what we wanted instead.
        reason = str(exc) if "literal" not in str(exc) and "convert" not in str(exc) else "not a number"
        raise ConfigError(f"{source}: {reason}") from None


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from flags (first), environment variables, then defaults.

    Raises:
        ConfigError: one line naming the variable or flag at fault.
    """
    environ = os.environ if environ is None else environ
    args = vars(argument_parser().parse_args([] if argv is None else list(argv)))
    values: dict[str, Any] = {}
    for leaf in leaves():
        raw, source = args.get(leaf.key), _flag(leaf.key)
        if raw is None:
            raw, source = environ.get(env_name(leaf.key)), env_name(leaf.key)
        if raw is not None and raw != "":
            values[leaf.key] = _parse(leaf, raw, source)
    settings = Settings.from_flat(**values)
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


def _check_tls(settings: Settings) -> None:
    tls = settings.listen
    if (tls.tls_cert_file is None) != (tls.tls_key_file is None):
        missing = "tls_key_file" if tls.tls_key_file is None else "tls_cert_file"
        raise ConfigError(f"{env_name(missing)}: required when the other TLS file is set")
    if tls.tls_client_ca_file is not None and tls.tls_cert_file is None:
        raise ConfigError(f"{env_name('tls_cert_file')}: client certificates need the server's TLS files")


def _check_security(settings: Settings) -> None:
    _check_tls(settings)
    auth, modes = settings.auth, settings.auth.mode
    if "jwt" in modes and auth.jwks_file is None and auth.jwks_url is None:
        raise ConfigError(
            f"{env_name('auth_jwks_file')}: jwt mode needs a JWKS file or AGENTGW_AUTH_JWKS_URL"
        )
    if "mtls" in modes and settings.listen.tls_client_ca_file is None:
        raise ConfigError(f"{env_name('tls_client_ca_file')}: mtls mode needs the client CA bundle")
    grpc_listen = settings.listen.grpc
    if modes == frozenset({"none"}) and not auth.allow_insecure and not _is_loopback(grpc_listen):
        raise ConfigError(
            f"{env_name('auth_mode')}: authentication is off and {grpc_listen} is not loopback; "
            f"set AGENTGW_AUTH_MODE=jwt or mtls, or AGENTGW_ALLOW_INSECURE=true to accept any caller"
        )


def _check_quotas(settings: Settings) -> None:
    from service.domain.quotas import load_quotas  # config is a leaf (see service.config.values)

    if settings.sessions.quotas_file is not None:
        try:
            load_quotas(settings.sessions.quotas_file)
        except ValueError as exc:
            raise ConfigError(f"{env_name('quotas_file')}: {exc}") from None


def _check_consistency(settings: Settings) -> None:
    _check_security(settings)
    _check_quotas(settings)
    zego, leaks, sessions = settings.zego, settings.leaks, settings.sessions
    if (zego.app_id is None) != (zego.server_secret is None):
        missing = "zego_server_secret" if zego.server_secret is None else "zego_app_id"
        raise ConfigError(f"{env_name(missing)}: required when the other ZEGO credential is set")
    if settings.ledger.pool_min_size > settings.ledger.pool_max_size:
        raise ConfigError(
            f"{env_name('db_pool_min_size')}: must not exceed {env_name('db_pool_max_size')}"
            f" ({settings.ledger.pool_max_size})"
        )
    if leaks.retry_max_seconds < leaks.retry_initial_seconds:
        raise ConfigError(
            f"{env_name('leak_retry_max_seconds')}: must not be below "
            f"{env_name('leak_retry_initial_seconds')} ({leaks.retry_initial_seconds:g})"
        )
    if sessions.max_duration_seconds > sessions.max_duration_cap_seconds:
        raise ConfigError(
            f"{env_name('max_session_duration_seconds')}: must not exceed "
            f"{env_name('max_session_duration_cap_seconds')} ({sessions.max_duration_cap_seconds})"
        )
