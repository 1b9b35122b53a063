"""The ``watch`` worker: many subscriber streams over a few channels, in one process.

It opens ``streams`` streams spread round-robin over ``channels`` channels, says ``ready`` once
every stream has received its first message (a warm-up event or a heartbeat: only then is the
subscription known to exist server-side), then records, per stream:

* each measured event's latency, ``time.time()`` at receipt minus the send time in its text
  (events numbered below 0 are warm-ups and are ignored);
* the ids received (with ``track_ids``), to verify that nothing was lost (an id received again
  after a resume is counted once);
* heartbeat arrival times between ``go`` and ``stop``, for the largest gap.

With ``resume``, an agentgw stream cut off for falling behind (RESOURCE_EXHAUSTED) resumes after
the last cursor it saw, as a real subscriber would. Streams open all at once, or ramped at
``open_rate`` streams/s. Commands: ``go`` (open the heartbeat window), ``expect`` (``n``
measured events per stream: the worker finishes once every stream has them), ``stop`` (finish
now).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench.clients import channel_options, parse_text, watch
from bench.control import Control, emit

__all__ = ["watch_worker"]


@dataclass
class _Stream:
    seen_first: bool = False
    count: int = 0
    latencies: list[float] = field(default_factory=list)
    ids: set[tuple[str, int]] = field(default_factory=set)
    heartbeats: list[float] = field(default_factory=list)
    error: str | None = None
    resumes: int = 0


class _Watch:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.kind: str = spec["kind"]
        self.track_ids = bool(spec.get("track_ids", False))
        self.keep_latencies = bool(spec.get("latencies", True))
        self.streams = [_Stream() for _ in range(int(spec["streams"]))]
        self.first_count = 0
        self.all_first = asyncio.Event()
        self.window_start: float | None = None
        self.expect: int | None = spec.get("expect")
        self.max_batch_size = int(spec.get("max_batch_size", 0))
        self.resume = bool(spec.get("resume", False))

    def done(self) -> bool:
        if self.expect is None:
            return False
        return all(s.count >= self.expect or s.error is not None for s in self.streams)

    async def run(self, index: int, channel: grpc.aio.Channel) -> None:
        stream = self.streams[index]
        cursor: int | None = None
        while True:
            try:
                async for item, text, at in watch(
                    channel, self.kind, max_batch_size=self.max_batch_size, after_cursor=cursor
                ):
                    cursor = at or cursor
                    self._seen(stream, item, text)
                return
            except grpc.aio.AioRpcError as exc:
                # A subscriber cut off for falling behind resumes after the last cursor it
                # processed, as the API asks (at-least-once: repeats are counted once by id).
                if self.resume and exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and cursor:
                    stream.resumes += 1
                    continue
                stream.error = exc.code().name
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stream.error = type(exc).__name__
                return

    def _seen(self, stream: _Stream, item: str, text: str) -> None:
        if not stream.seen_first:
            stream.seen_first = True
            self.first_count += 1
            if self.first_count == len(self.streams):
                self.all_first.set()
        if item == "heartbeat":
            if self.window_start is not None:
                stream.heartbeats.append(time.monotonic())
            return
        received_at = time.time()
        if text.count("|") != 2:
            return  # not one of ours (e.g. a session's created or ended event)
        tag, number, sent_at = parse_text(text)
        if number < 0:
            return
        if self.track_ids:
            if (tag, number) in stream.ids:
                return  # redelivered after a resume
            stream.ids.add((tag, number))
        stream.count += 1
        if self.keep_latencies:
            stream.latencies.append(received_at - sent_at)

    def result(self, window_end: float) -> dict[str, Any]:
        gaps: list[float] = []
        for stream in self.streams:
            if self.window_start is None:
                break
            marks = [self.window_start, *stream.heartbeats, window_end]
            gaps.append(max(b - a for a, b in itertools.pairwise(marks)))
        errors = Counter(s.error for s in self.streams if s.error is not None)
        return {
            "event": "result",
            "latencies_ms": [round(x * 1000, 3) for s in self.streams for x in s.latencies],
            "counts": [s.count for s in self.streams],
            "unique": [len(s.ids) for s in self.streams] if self.track_ids else [],
            "errors": dict(errors),
            "hb_max_gap": [round(g, 4) for g in gaps],
            "hb_counts": [len(s.heartbeats) for s in self.streams],
            "resumes": [s.resumes for s in self.streams],
            "window": (window_end - self.window_start) if self.window_start is not None else 0.0,
        }


async def watch_worker(spec: dict[str, Any], ctl: Control) -> None:
    state = _Watch(spec)
    channels = [
        grpc.aio.insecure_channel(spec["target"], options=channel_options())
        for _ in range(int(spec["channels"]))
    ]
    await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 15) for c in channels))
    # Opening thousands of streams in one burst overruns grpc core's pending-call limit
    # (grpc.server.max_pending_requests_hard_limit, 3000 by default): the excess is CANCELLED.
    # ``open_rate`` (streams/s) ramps the opening instead.
    rate = float(spec.get("open_rate", 0))
    tasks = []
    for i in range(len(state.streams)):
        tasks.append(asyncio.create_task(state.run(i, channels[i % len(channels)])))
        if rate and i % 10 == 9:
            await asyncio.sleep(10 / rate)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.all_first.wait(), float(spec.get("ready_timeout", 60)))
    emit({"event": "ready", "ready": state.first_count, "streams": len(state.streams)})
    while not state.done():
        command = await ctl.get(0.05)
        if command is None:
            continue
        if command["cmd"] == "go":
            state.window_start = time.monotonic()
        elif command["cmd"] == "expect":
            state.expect = int(command["n"])
        elif command["cmd"] == "stop":
            break
    window_end = time.monotonic()
    result = state.result(window_end)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.close(None) for c in channels), return_exceptions=True)
    emit(result)
