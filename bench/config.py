"""Constants and the per-run parameters (full or ``--quick``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

APP_ID = 770_001
SERVER_SECRET = "bench-server-secret-0123456789ab"  # ZEGO ServerSecrets are 32 characters
CALLBACK_SECRET = "bench-callback-secret"
AGENT_ID = "bench-agent"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent

assert len(SERVER_SECRET) == 32


@dataclass(frozen=True)
class Params:
    """Sizes and durations of one run. Every load loop is bounded by a count and a time."""

    quick: bool
    unary_seconds: float
    unary_max_calls: int
    unary_concurrency: tuple[int, ...]
    upstream_pairs: int
    upstream_concurrency: int
    fanout_ns: tuple[int, ...]
    fanout_events: tuple[int, ...]
    """Events sent at each N of fanout_ns (more at small N, where p99 needs the samples)."""
    ingest_seconds: float
    ingest_max_per_sender: int
    ingest_senders: int
    ingest_sender_concurrency: int
    ingest_subscribers: int
    capacity_streams: int
    capacity_window_seconds: float
    heartbeat_seconds: float
    resume_events: int
    growth_sessions: int = 1_000_000
    """Ended sessions bulk-inserted before the growth scenario measures (``--growth-sessions``)."""
    growth_events: int = 10_000_000
    """Events bulk-inserted before the growth scenario measures (``--growth-events``)."""


FULL = Params(
    quick=False,
    unary_seconds=5.0,
    unary_max_calls=200_000,
    unary_concurrency=(1, 10, 50),
    upstream_pairs=600,
    upstream_concurrency=10,
    fanout_ns=(1, 10, 100, 1000),
    fanout_events=(200, 100, 60, 40),
    ingest_seconds=10.0,
    ingest_max_per_sender=100_000,
    ingest_senders=2,
    ingest_sender_concurrency=32,
    ingest_subscribers=10,
    capacity_streams=5000,
    capacity_window_seconds=10.0,
    heartbeat_seconds=2.0,
    resume_events=100_000,
)

QUICK = Params(
    quick=True,
    unary_seconds=1.5,
    unary_max_calls=50_000,
    unary_concurrency=(1, 10, 50),
    upstream_pairs=120,
    upstream_concurrency=10,
    fanout_ns=(1, 10, 100, 1000),
    fanout_events=(40, 30, 20, 12),
    ingest_seconds=3.0,
    ingest_max_per_sender=20_000,
    ingest_senders=2,
    ingest_sender_concurrency=32,
    ingest_subscribers=10,
    capacity_streams=1000,
    capacity_window_seconds=5.0,
    heartbeat_seconds=2.0,
    resume_events=20_000,
    growth_sessions=100_000,
    growth_events=1_000_000,
)
