"""Configuration of the bundled ZEGO AI Agent emulator."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["DEFAULT_RATE_LIMIT_CODE", "EmulatorConfig"]

DEFAULT_RATE_LIMIT_CODE = 410001029
"""ZEGO does not document the code for exceeding 10 QPS (spec §17); 410001029 is the only rate-limit code
it lists (for digital-human APIs), so it is the default guess."""

_SECRET_FIELDS = frozenset({"server_secret", "callback_secret"})


@dataclass(frozen=True, repr=False)
class EmulatorConfig:
    """Everything the emulator needs to behave like one ZEGO project (one AppId).

    ``repr`` masks the secrets, so the config can be logged safely.
    """

    app_id: int
    """The project's AppId (uint32). Requests with another AppId get ``100000010``."""

    server_secret: str
    """ServerSecret (32 characters): verifies API signatures and Token04 tokens."""

    callback_secret: str
    """CallbackSecret: will sign server callbacks (a later issue; kept so the config is complete)."""

    callback_url: str | None = None
    """Where server callbacks will be POSTed. Callback delivery is not implemented yet."""

    signature_skew_seconds: int = 600
    """Maximum ``|now - Timestamp|`` before ``100000004`` (ZEGO: 10 minutes)."""

    voice_instance_limit: int = 10
    """Concurrent voice instances per AppId; beyond it CreateAgentInstance returns ``410000011``."""

    digital_human_instance_limit: int = 10
    """Concurrent digital-human instances per AppId, shared by interactive and live ones (``410001031``)."""

    rate_limit_per_second: float = 10.0
    """Token-bucket rate per action (ZEGO: 10 requests/second per action)."""

    rate_limit_code: int = DEFAULT_RATE_LIMIT_CODE
    """Code returned when the per-action bucket is empty; configurable because ZEGO does not document it."""

    time_scale: float = 1.0
    """Multiplies every emulated delay and idle timeout; ``0.01`` makes a 120 s idle timeout last 1.2 s."""

    default_max_idle_seconds: int = 120
    """``AdvancedConfig.MaxIdleTime`` default for voice and digital-human instances."""

    live_default_max_idle_seconds: int = 900
    """``AdvancedConfig.MaxIdleTime`` default for live (broadcast) digital-human instances."""

    def __post_init__(self) -> None:
        if not 0 < self.app_id < 2**32:
            raise ValueError("app_id must be a non-zero uint32")
        if len(self.server_secret) != 32:
            # Token04 uses the secret as a raw AES-256 key, so ZEGO requires exactly 32 characters.
            raise ValueError("server_secret must be exactly 32 characters")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if self.rate_limit_per_second <= 0:
            raise ValueError("rate_limit_per_second must be positive")
        if self.voice_instance_limit < 0 or self.digital_human_instance_limit < 0:
            raise ValueError("instance limits must not be negative")
        if self.signature_skew_seconds < 0:
            raise ValueError("signature_skew_seconds must not be negative")

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown = "'***'" if f.name in _SECRET_FIELDS else repr(value)
            parts.append(f"{f.name}={shown}")
        return f"EmulatorConfig({', '.join(parts)})"

    def scaled(self, seconds: float) -> float:
        """An emulated duration in real seconds, after applying :attr:`time_scale`."""
        return seconds * self.time_scale
