"""The building blocks of the settings: ``ConfigError``, ``Secret``, the value parsers, ``setting()``.

Nothing here imports a component at module level: the settings classes are imported by the
components they configure (the domain included), so ``service.config`` must stay a leaf. The few
parsers that need a component's vocabulary (auth modes, ZEGO regions, roles) import it when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.auth.principal import Role

__all__ = ["ConfigError", "Secret", "setting"]


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


def setting(default: Any, parse: Callable[[str], Any], doc: str, *, key: str) -> Any:
    """A settings field. ``key`` is its public name: the variable ``AGENTGW_<KEY>`` and the flag
    ``--<key-with-dashes>``, which stay as documented whatever section holds the field."""
    return field(default=default, metadata={"key": key, "parse": parse, "doc": doc})


def positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def positive_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number")
    return value


def non_negative_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be zero or a positive number")
    return value


def app_id(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 2**32:
        raise ValueError("must be a ZEGO AppId, an integer from 1 to 4294967295")
    return value


def server_secret(raw: str) -> Secret:
    # ZEGO's ServerSecret is 32 characters; Token04 uses it as an AES-256 key (spec §13).
    if len(raw) != 32:
        raise ValueError(f"must be the 32-character ServerSecret from the ZEGO console (got {len(raw)})")
    return Secret(raw)


def secret(raw: str) -> Secret:
    if not raw:
        raise ValueError("must not be empty")
    return Secret(raw)


def database_url(raw: str) -> Secret:
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


def listen(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:50051")
    return raw


def log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


def validation_policy(raw: str) -> str:
    policy = raw.strip().lower()
    if policy not in {"strict", "fail_open", "off"}:
        raise ValueError("must be one of strict, fail_open, off")
    return policy


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def auth_mode(raw: str) -> frozenset[str]:
    from service.auth.authenticator import AUTH_MODES  # called, not imported: see the module docstring

    modes = frozenset(part.strip().lower() for part in raw.split(",") if part.strip())
    unknown = sorted(modes - AUTH_MODES)
    if not modes or unknown:
        raise ValueError("must be none, jwt, mtls or jwt,mtls")
    if "none" in modes and len(modes) > 1:
        raise ValueError("none cannot be combined with jwt or mtls")
    return modes


def existing_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise ValueError(f"no such file: {raw}")
    return path


def http_url(raw: str) -> str:
    if not raw.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return raw


def leeway(raw: str) -> float:
    value = non_negative_float(raw)
    if value > 300:
        raise ValueError("must be at most 300 seconds")
    return value


def roles(raw: str) -> tuple[tuple[str, Role], ...]:
    from service.auth.certs import parse_roles

    return tuple(sorted(parse_roles(raw).items()))


def state_file(raw: str) -> str:
    if raw.strip() != raw or raw.endswith("/"):
        raise ValueError("must be auto, off, or a file path")
    return raw


def zego_api_base(raw: str) -> str:
    from service.zego.regions import resolve_base_url

    return resolve_base_url(raw)


def zego_digital_human_api_base(raw: str) -> str:
    from service.zego.digital_human import resolve_digital_human_base

    return resolve_digital_human_base(raw)
