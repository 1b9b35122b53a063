"""Emulated time: how long speech lasts, and the emulated wall clock that stamps callbacks.

Two clocks are involved. Scheduling uses the real monotonic clock: an emulated duration of ``ms``
milliseconds lasts ``ms * time_scale / 1000`` real seconds. Callback ``Timestamp`` values use an emulated wall
clock per instance (:class:`SimClock`), which runs at ``1 / time_scale`` times real speed while the instance
is busy, so every step is stamped at its *unscaled* emulated offset. With ``time_scale=0.01`` a turn whose
SPEAK_END -> SPEAKING gap is 2100 ms takes 21 ms of real time, and the two callbacks' Timestamps still differ
by exactly 2100.

Each busy spell (an "episode") starts from the real wall clock, or from the instance's last stamp if that is
later, so Timestamps never go backwards per instance. With ``time_scale < 1`` they can run ahead of the real
wall clock by the emulated length of recent activity; with ``time_scale == 1`` they track it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SPEAK_BASE_MS", "SPEAK_MS_PER_CHAR", "SimClock", "Timing", "wall_ms"]

# Emulated speech length [INFER: ZEGO publishes only the < 1.5 s interaction budget]. Integer milliseconds,
# so emulated offsets add up exactly.
SPEAK_BASE_MS = 500
SPEAK_MS_PER_CHAR = 60


def wall_ms() -> int:
    """The real Unix time in milliseconds."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Timing:
    """Converts emulated milliseconds to real seconds (``time_scale``) and sizes emulated speech."""

    scale: float

    def real(self, ms: int) -> float:
        """Real seconds that ``ms`` emulated milliseconds last."""
        return ms * self.scale / 1000

    @staticmethod
    def speech_ms(text: str) -> int:
        """Emulated milliseconds it takes to say ``text`` (the agent's TTS or the simulated user)."""
        return SPEAK_BASE_MS + SPEAK_MS_PER_CHAR * len(text)


class SimClock:
    """One instance's emulated wall clock in Unix milliseconds, for callback Timestamps."""

    def __init__(self, scale: float, now: float, clock_ms: Callable[[], int] = wall_ms) -> None:
        self._scale = scale
        self._clock_ms = clock_ms
        self.last_ms = 0
        """The latest Timestamp stamped on one of this instance's events."""
        self._anchor_t = now
        self._anchor_ms = 0
        self.sync(now)

    def sync(self, now: float) -> None:
        """Start an episode at real monotonic ``now``: resume from the wall clock, never going backwards."""
        self._anchor_t = now
        self._anchor_ms = max(self._clock_ms(), self.last_ms)

    def at(self, t: float) -> int:
        """The emulated Unix ms of real monotonic time ``t`` in the current episode."""
        return self._anchor_ms + round((t - self._anchor_t) / self._scale * 1000)

    def stamp(self, ms: int) -> int:
        """Stamp an event at ``ms`` (or at the previous stamp, if that is later) and return the stamp."""
        self.last_ms = max(ms, self.last_ms)
        return self.last_ms
