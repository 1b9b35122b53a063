"""What every chaos scenario takes: its sizes and durations, and ZEGO's clocks it must outlast."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "SMOKE", "ZEGO_DEFAULT_MAX_IDLE_SECONDS", "ZEGO_RETRY_SECONDS", "Params"]

ZEGO_RETRY_SECONDS = 2 + 4 + 8 + 16 + 32
"""ZEGO's callback retries span 62 s (spec §8.1); the emulator scales them by its time_scale."""

ZEGO_DEFAULT_MAX_IDLE_SECONDS = 120
"""ZEGO ends an instance whose creating user is absent this long (spec §5.1, §6.9), unless the create
set ``AdvancedConfig.MaxIdleTime``; the emulator scales it by its time_scale (12 s at 0.1)."""


@dataclass(frozen=True)
class Params:
    """Sizes and durations; every loop is bounded by a count and a time."""

    cap: int = 6
    time_scale: float = 0.1
    settle_seconds: float = 25.0
    kill_timings: tuple[float, ...] = (0.02, 0.15, 0.3, 0.42, 0.55, 0.8)
    burst: int = 6
    create_latency_ms: int = 400
    down_seconds: float = 1.0
    steady: int = 3
    in_flight: int = 3
    outage_factor: float = 1.5
    workers: int = 4
    cycles: int = 96
    cycle_seconds: float = 90.0
    event_sessions: int = 4
    subscribers: int = 3
    phase_seconds: float = 4.0
    refill: bool = True


FULL = Params()
QUICK = Params(
    settle_seconds=15.0, kill_timings=(0.05, 0.45), cycles=20, cycle_seconds=30.0, phase_seconds=2.5
)
SMOKE = Params(cap=3, settle_seconds=4.0, kill_timings=(0.1,), burst=2, create_latency_ms=300, refill=False)
