"""Server-callback delivery (spec §8): ZEGO's signed envelope, POSTed with ZEGO's retry policy.

:class:`CallbackDeliverer` is an :class:`~.events.EventSink`. For each internal event it:

1. applies the instance's ``CallbackConfig`` gates (spec §6.8): ASRResult, LLMResult, Interrupted,
   UserSpeakAction, AgentInstanceStatus and UserAudioData only when their flag is 1; Exception,
   AgentInstanceCreated, AgentInstanceDeleted and AgentInstanceMetaInfo always (the state model emits MetaInfo
   only when ``AdvancedConfig.LLMMetaInfo`` asks for keys);
2. builds the envelope (spec §8.2) with a random numeric Nonce, the event's emulated ms Timestamp, the sha1
   Signature of §8.4 and a ``Sequence`` from one AppId-wide allocator (strictly increasing, not contiguous,
   beyond 2**53);
3. queues it on the instance's lane and returns at once: the API path never waits for a receiver.

One background task per instance with pending callbacks sends them in order through one pooled
``httpx.AsyncClient``: a callback is not sent before the previous one of its instance was acknowledged
(2xx) or dropped. A non-2xx answer or a transport error is retried up to 5 times after 2, 4, 8, 16 and 32 s
(each times ``time_scale``); then the callback is dropped and the drop recorded. Whether ZEGO re-signs a
retry is unknown [INFER]: by default the identical body is resent; ``callback_retry_resign`` sends a fresh
Nonce and a Timestamp advanced by the unscaled waits instead. ``CallbackConfig.HostTag`` is ignored: there
is one URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from service.zego.signing import callback_signature

from .callback_faults import CallbackFaults
from .config import EmulatorConfig
from .ids import CallbackSequences
from .validation import Json

__all__ = ["GATED_EVENTS", "RETRY_DELAYS_SECONDS", "CallbackDeliverer"]

logger = logging.getLogger(__name__)

GATED_EVENTS = frozenset(
    {"ASRResult", "LLMResult", "Interrupted", "UserSpeakAction", "AgentInstanceStatus", "UserAudioData"}
)
"""Events sent only when the instance's ``CallbackConfig`` flag of the same name is 1 (spec §6.8)."""

RETRY_DELAYS_SECONDS = (2, 4, 8, 16, 32)
"""ZEGO's waits before each retry (spec §8.1); the emulator multiplies them by ``time_scale``."""

REORDER_WAIT_SECONDS = 1.0
"""How long a ``reorder`` fault waits (real time) for the next callback of the instance to swap with."""

MAX_RECENT_DROPS = 100

Describe = Callable[[str], Json | None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class _Callback:
    """One callback to deliver: its envelope and the facts needed to re-sign it."""

    instance_id: str
    event: str
    sequence: int
    body: Json
    corrupt: bool = False
    """A ``bad_signature`` fault: every attempt carries a corrupted Signature."""


@dataclass
class _Lane:
    """An instance's pending callbacks and the task that sends them in order."""

    items: deque[_Callback] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    in_flight: int = 0


@dataclass
class _Stats:
    generated: int = 0
    sent: int = 0
    retried: int = 0
    dropped: int = 0
    duplicated: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    recent_drops: deque[Json] = field(default_factory=lambda: deque(maxlen=MAX_RECENT_DROPS))


def _nonce() -> str:
    """A random numeric Nonce like ZEGO's (``"7450395512627324902"``)."""
    return str(10**18 + secrets.randbelow(9 * 10**18))


def _corrupt(signature: str) -> str:
    """A different 40-hex string: every digit shifted by one."""
    return "".join("0123456789abcdef"[(int(c, 16) + 1) % 16] for c in signature)


def _encode(body: Json) -> bytes:
    # Python ints serialize exactly, so a Sequence beyond 2**53 reaches the receiver digit for digit.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class CallbackDeliverer:
    """The callback sink: gates, signs, sequences and delivers every instance's events (see module doc).

    ``describe`` gives an instance's envelope facts (``EmulatorState.describe``). ``transport`` and ``sleep``
    are seams for tests; production uses a real pooled client and ``asyncio.sleep``.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        describe: Describe,
        *,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._describe = describe
        self._rng = rng or random.Random(config.latency_seed)
        self._sequences = CallbackSequences(self._rng)
        self._transport = transport
        self._sleep = sleep
        self._client: httpx.AsyncClient | None = None
        self._lanes: dict[str, _Lane] = {}
        self._stats = _Stats()
        self._closed = False
        self.url: str | None = config.callback_url
        """Where callbacks go; None generates none. Settable at runtime (``POST /_emulator/callbacks``)."""
        self.faults = CallbackFaults()

    # --- the sink ---------------------------------------------------------------------------------

    def emit(self, instance_id: str, event: str, data: dict[str, Any], timestamp_ms: int) -> None:
        """Queue the callback of one event (never blocks; nothing is generated without a URL)."""
        if self._closed or self.url is None:
            return
        facts = self._describe(instance_id)
        if facts is None:
            logger.warning("callback %s for unknown instance %s not sent", event, instance_id)
            return
        if event in GATED_EVENTS and facts.get("CallbackConfig", {}).get(event) != 1:
            return
        sequence = self._sequences.next()
        body = self._envelope(facts, event, dict(data), timestamp_ms, sequence)
        callback = _Callback(instance_id=instance_id, event=event, sequence=sequence, body=body)
        self._stats.generated += 1
        lane = self._lanes.setdefault(instance_id, _Lane())
        if len(lane.items) >= self._config.callback_max_pending:
            self._drop(lane.items.popleft(), "too many pending callbacks for the instance")
        lane.items.append(callback)
        lane.arrived.set()
        if lane.task is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a synchronous unit test): stays pending until the next emit in a loop
            lane.task = loop.create_task(
                self._run(instance_id, lane), name=f"zego-emulator-callbacks-{instance_id}"
            )

    def _envelope(self, facts: Json, event: str, data: Json, timestamp_ms: int, sequence: int) -> Json:
        nonce = _nonce()
        return {
            "AppId": self._config.app_id,
            "Event": event,
            "Nonce": nonce,
            "Timestamp": timestamp_ms,
            "Signature": callback_signature(self._config.callback_secret, timestamp_ms, nonce),
            "AgentInstanceId": facts["AgentInstanceId"],
            # A live instance on CDN has no RTC identity; ZEGO's field is a string, so it is sent empty.
            "AgentUserId": facts.get("AgentUserId") or "",
            "AgentId": facts.get("AgentId") or "",
            "Name": facts.get("Name") or "",
            "RoomId": facts.get("RoomId") or "",
            "Sequence": sequence,
            "Data": data,
        }

    # --- delivery ---------------------------------------------------------------------------------

    async def _run(self, instance_id: str, lane: _Lane) -> None:
        """Send the lane's callbacks in order; ends when it is empty (a later emit starts a new task)."""
        try:
            # Bounded: each pass takes one callback off a queue capped at callback_max_pending.
            while lane.items:
                callback = lane.items.popleft()
                lane.in_flight += 1
                try:
                    await self._handle(lane, callback)
                except Exception:
                    # A bug must not silently stall the instance's later callbacks.
                    logger.exception("callback delivery failed unexpectedly; dropping it")
                    self._drop(callback, "internal error")
                finally:
                    lane.in_flight -= 1
        finally:
            lane.task = None
            if not lane.items and self._lanes.get(instance_id) is lane:
                del self._lanes[instance_id]

    async def _handle(self, lane: _Lane, callback: _Callback) -> None:
        fault = self.faults.take(callback.event)
        if fault is None:
            await self._deliver(callback)
            return
        if fault.delay_ms:
            await self._sleep(fault.delay_ms / 1000)
        if fault.mode == "drop":
            self._drop(callback, "injected fault: drop")
            return
        if fault.mode == "bad_signature":
            callback = replace(callback, corrupt=True, body={**callback.body})
            callback.body["Signature"] = _corrupt(callback.body["Signature"])
        if fault.mode == "reorder":
            later = await self._next_of(lane)
            if later is not None:
                lane.in_flight += 1
                try:
                    await self._deliver(later)
                finally:
                    lane.in_flight -= 1
        await self._deliver(callback)
        if fault.mode == "duplicate":
            self._stats.duplicated += 1
            await self._deliver(callback)

    async def _next_of(self, lane: _Lane) -> _Callback | None:
        """The lane's next callback, waiting (bounded) for one to be emitted."""
        if not lane.items:
            lane.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.arrived.wait(), REORDER_WAIT_SECONDS)
        return lane.items.popleft() if lane.items else None

    async def _deliver(self, callback: _Callback) -> bool:
        """One callback with ZEGO's retries; True once a receiver acknowledged it, False when dropped."""
        payload = _encode(callback.body)
        waited_ms = 0
        for attempt in range(1 + len(RETRY_DELAYS_SECONDS)):
            if attempt:
                delay = RETRY_DELAYS_SECONDS[attempt - 1]
                self._stats.retried += 1
                await self._sleep(delay * self._config.time_scale)
                waited_ms += delay * 1000
                if self._config.callback_retry_resign:
                    payload = _encode(self._resigned(callback, waited_ms))
            url = self.url
            if url is None:
                self._drop(callback, "no callback URL")
                return False
            if await self._post(url, payload):
                self._stats.sent += 1
                return True
        self._drop(callback, "no 2xx after 5 retries")
        return False

    def _resigned(self, callback: _Callback, waited_ms: int) -> Json:
        """The body with a fresh Nonce and the Timestamp at the retry's emulated time, signed again."""
        body = dict(callback.body)
        nonce, timestamp = _nonce(), int(body["Timestamp"]) + waited_ms
        signature = callback_signature(self._config.callback_secret, timestamp, nonce)
        body.update(
            Nonce=nonce, Timestamp=timestamp, Signature=_corrupt(signature) if callback.corrupt else signature
        )
        return body

    async def _post(self, url: str, payload: bytes) -> bool:
        if self._client is None:
            # trust_env=False: a proxy from the environment must not reroute loopback callbacks.
            self._client = httpx.AsyncClient(transport=self._transport, trust_env=False)
        self._stats.attempts += 1
        try:
            response = await self._client.post(
                url,
                content=payload,
                headers={"Content-Type": "application/json"},
                timeout=self._config.callback_timeout_seconds,
            )
        except httpx.HTTPError as exc:
            self._stats.failed_attempts += 1
            logger.debug("callback POST to %s failed: %s", url, exc)
            return False
        if 200 <= response.status_code < 300:
            return True
        self._stats.failed_attempts += 1
        logger.debug("callback POST to %s answered HTTP %d", url, response.status_code)
        return False

    def _drop(self, callback: _Callback, reason: str) -> None:
        self._stats.dropped += 1
        self._stats.recent_drops.append(
            {
                "AgentInstanceId": callback.instance_id,
                "Event": callback.event,
                "Sequence": callback.sequence,
                "reason": reason,
            }
        )
        logger.info("callback %s (Sequence %d) dropped: %s", callback.event, callback.sequence, reason)

    # --- admin and lifecycle ----------------------------------------------------------------------

    def snapshot(self) -> Json:
        """Delivery counters for ``GET /_emulator/callbacks``."""
        s = self._stats
        return {
            "url": self.url,
            "generated": s.generated,
            "sent": s.sent,
            "retried": s.retried,
            "dropped": s.dropped,
            "duplicated": s.duplicated,
            "pending": sum(len(lane.items) + lane.in_flight for lane in self._lanes.values()),
            "attempts": s.attempts,
            "failed_attempts": s.failed_attempts,
            "recent_drops": list(s.recent_drops),
            "faults": self.faults.active(),
        }

    def _cancel_lanes(self) -> list[asyncio.Task[None]]:
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        self._lanes = {}
        return tasks

    def open(self) -> None:
        """(Re)start accepting callbacks, e.g. when the app's lifespan starts again after :meth:`aclose`."""
        self._closed = False

    def reset(self) -> None:
        """Forget pending callbacks, counters and faults (admin reset); the URL stays."""
        self._cancel_lanes()
        self._stats = _Stats()
        self.faults.clear()

    async def aclose(self) -> None:
        """Stop delivering: pending callbacks are abandoned and the HTTP client is closed."""
        self._closed = True
        tasks = self._cancel_lanes()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
