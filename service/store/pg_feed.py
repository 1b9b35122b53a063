"""Live fan-out across replicas: tail the shared event log in cursor order into the local bus.

In a fleet, ``EventLog`` stores events without publishing them (``publish=False``): an event
appended through replica A must reach subscribers on every replica, and only the shared log knows
the order. Each replica runs one :class:`PgEventTailer`, which reads the log after the last cursor
it delivered, in cursor order, and calls ``bus.publish`` (and the observers, e.g. the latency
tracker) for each event, so the replay/live join of the watch stream is unchanged.

Two things wake the tailer, and the second is what makes it correct:

* LISTEN/NOTIFY: the append transaction notifies :data:`CHANNEL` on commit, and the tailer holds
  a dedicated connection LISTENing on it, so an event is read within a round trip of its commit.
* Its own periodic read every ``poll_seconds``: a NOTIFY sent while the listening connection was
  down is lost for good (PostgreSQL does not queue notifications for a session that is gone), so
  the read, not luck, bounds the delay of every event by ``poll_seconds``. The listener also wakes
  the tailer after every (re)connection, to catch up at once.

Gap-freedom is the reader's (the ledger's) contract: ``log_after`` returns an event only once no
transaction can still commit a smaller cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import asyncpg

from service.domain.events import Event
from service.store.postgres import events as _events
from service.store.postgres.db import PgDatabase

__all__ = ["CHANNEL", "FeedObserver", "LogReader", "PgEventTailer", "PgLogReader", "Publisher"]

log = logging.getLogger("agentgw.feed")

CHANNEL = "agentgw_events"
"""The NOTIFY channel the append transaction signals (its payload, the new head, is a hint only)."""

_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class LogReader(Protocol):
    """The part of the ledger the tailer reads."""

    async def log_after(self, after: int, limit: int) -> Sequence[Event]:
        """Every event with cursor > ``after`` (hidden ones too), oldest first, only as far as the
        log is gap-free (no transaction can still commit a smaller cursor)."""

    async def event_bounds(self) -> tuple[int, int]:
        """(purged_through, head) of the event log."""


class PgLogReader:
    """:class:`LogReader` on the PostgreSQL ledger's pool.

    Plain ``cursor > after`` in cursor order is gap-free there: appends are serialised by the
    log's lock, so commit order is cursor order (``service.store.postgres.events``).
    """

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def log_after(self, after: int, limit: int) -> Sequence[Event]:
        """Every event after ``after``, hidden ones included, oldest first."""
        rows = await self._db.fetch(
            "SELECT * FROM events WHERE cursor > $1 ORDER BY cursor LIMIT $2", after, limit
        )
        return [_events.event_from_row(row) for row in rows]

    async def event_bounds(self) -> tuple[int, int]:
        """(purged_through, head) of the event log."""
        return await self._db.run(_events.bounds)


class Publisher(Protocol):
    """The local fan-out (``EventBus``)."""

    head: int

    def publish(self, event: Event) -> None:
        """Offer an event to the local subscribers; called in cursor order."""


class FeedObserver(Protocol):
    """Metrics hooks (``service.metrics.Metrics`` satisfies it)."""

    def feed_delivered(self, lag_seconds: float) -> None:
        """A batch was delivered; its newest event was received ``lag_seconds`` ago (by any replica)."""


class PgEventTailer:
    """Reads the shared log in cursor order and feeds the local bus; see the module docstring.

    Args:
        url: the ledger's ``postgresql://`` URL, for the dedicated LISTEN connection.
        reader: reads the log (the PostgreSQL ledger).
        bus: where delivered (not hidden) events are published.
        observers: called with every event in cursor order, hidden ones included (the latency
            tracker learns other replicas' RPC-side turn starts from hidden events); an observer
            that raises is logged and skipped.
        poll_seconds: the periodic read's interval: the bound on the delay of an event whose NOTIFY
            was lost.
    """

    def __init__(
        self,
        url: str,
        reader: LogReader,
        bus: Publisher,
        *,
        observers: Sequence[Callable[[Event], None]] = (),
        poll_seconds: float = 1.0,
        batch: int = 500,
        observer: FeedObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not poll_seconds > 0 or batch < 1:
            raise ValueError("poll_seconds must be positive and batch at least 1")
        self._url = url
        self._reader = reader
        self._bus = bus
        self._observers = tuple(observers)
        self._poll = poll_seconds
        self._batch = batch
        self._observer = observer
        self._clock = clock
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.cursor = 0
        """The last cursor delivered."""
        self.listening = False
        """Whether the LISTEN connection is up (tests and health)."""
        self.listen_pid: int | None = None
        """The server process of the LISTEN connection (tests terminate it)."""
        self.reconnects = 0
        """How many times the LISTEN connection was re-established after a failure."""

    async def __aenter__(self) -> PgEventTailer:
        """Start after the log's current head (what came before is replayed from the ledger)."""
        _, head = await self._reader.event_bounds()
        self.cursor = max(self.cursor, head)
        self._bus.head = max(self._bus.head, head)
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="feed-listen"),
            asyncio.create_task(self._tail_forever(), name="feed-tail"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def wake(self) -> None:
        """Read the log now (NOTIFY arrived, or a local append committed)."""
        self._wake.set()

    # --- reading --------------------------------------------------------------------------------

    async def _tail_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()
            try:
                await self.catch_up()
            except _ERRORS as exc:
                log.warning("reading the event log failed (%s); retrying in %.1f s", exc, self._poll)
            except Exception:
                log.exception("reading the event log failed; retrying in %.1f s", self._poll)

    async def catch_up(self) -> int:
        """Deliver everything after :attr:`cursor` that the log has now; returns how many events."""
        delivered = 0
        while True:
            events = await self._reader.log_after(self.cursor, self._batch)
            for event in events:
                if event.cursor <= self.cursor:
                    continue  # never twice, never out of order
                self._deliver(event)
                self.cursor = event.cursor
                delivered += 1
            if events and self._observer is not None:
                self._observer.feed_delivered(max(0.0, self._clock() - events[-1].received_at))
            if len(events) < self._batch:
                return delivered

    def _deliver(self, event: Event) -> None:
        if not event.hidden:
            self._bus.publish(event)
        for observe in self._observers:
            try:  # an observer must never stop the feed
                observe(event)
            except Exception:
                log.exception("feed observer failed")

    # --- listening ------------------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except _ERRORS as exc:
                failures += 1
                log.warning("event log LISTEN connection lost (%s); reconnecting", exc)
            except Exception:
                failures += 1
                log.exception("event log LISTEN connection failed; reconnecting")
            self.listening = False
            self.reconnects += 1
            await asyncio.sleep(min(self._poll * failures, 5.0))

    async def _listen_once(self) -> None:
        """Hold one LISTEN connection until it fails; ping it each poll interval to notice promptly."""
        conn: asyncpg.Connection[Any] = await asyncpg.connect(
            self._url,
            timeout=max(5.0, self._poll),
            server_settings={"application_name": "agentgw-feed"},
        )
        closed = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: closed.set())
            await conn.add_listener(CHANNEL, self._notified)
            self.listen_pid = conn.get_server_pid()
            self.listening = True
            self.wake()  # whatever was committed while we were not listening
            while not closed.is_set() and not conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), self._poll)
                if not closed.is_set():
                    await conn.fetchval("SELECT 1", timeout=self._poll)
            raise asyncpg.InterfaceError("the LISTEN connection was closed")
        finally:
            conn.terminate()

    def _notified(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self.wake()
