"""``agentgw top``: a full-screen live view fed by WatchEvents and GetCapacity.

One ListSessions at start seeds the live sessions; from then on the view follows the event stream
(a thread resuming by cursor, like ``events tail``) and asks GetCapacity once per refresh. Nothing
polls the ledger. Turn figures are measured from the stream as the gateway measures them: SPEAK_END
to SPEAKING of the same Round, on ZEGO's timestamps; breaches are the gateway's own
``latency_budget_exceeded`` events.
"""

from __future__ import annotations

import datetime as dt
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from agentgw_client.gen.agentgw.v1 import session_event_pb2 as ev
from agentgw_client.gen.agentgw.v1 import session_pb2, session_service_pb2
from service.cli.app import Context, pass_context
from service.cli.client import EXIT_UNAVAILABLE, RpcFailure
from service.cli.events import follow, watch_request
from service.cli.misc import pool_row
from service.cli.output import duration, enum_name, safe
from service.cli.sessions import LIVE_STATES, iter_sessions, kind_name, list_request, state_name

__all__ = ["LiveSession", "TopModel", "render", "top"]

WINDOW_SECONDS = 300.0
"""p50/p95 are over the turns of the last five minutes."""
_MAX_ROWS = 30


def _seconds(ts: Any) -> float:
    return float(ts.seconds + ts.nanos / 1e9)


@dataclass
class LiveSession:
    """One session as the view knows it."""

    session_id: str
    kind: str
    state: str
    agent_id: str
    room_id: str
    created: float
    agent_state: str = "-"
    last_turn_seconds: float | None = None
    possible_leak: bool = False


@dataclass
class TopModel:
    """Everything ``top`` shows; updated from events and capacity answers (thread-safe)."""

    budget_seconds: float = 1.5
    sessions: dict[str, LiveSession] = field(default_factory=dict)
    pools: list[dict[str, Any]] = field(default_factory=list)
    turns: deque[tuple[float, float]] = field(default_factory=deque)
    """(when the turn completed, by ZEGO's timestamp; latency seconds), oldest first."""
    breaches: int = 0
    reaped_orphans: int = 0
    events_seen: int = 0
    notice: str = ""
    _speech_end: dict[tuple[str, int], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seed(self, session: Any) -> None:
        """A session from the start-up ListSessions."""
        with self._lock:
            self.sessions[session.session_id] = LiveSession(
                session_id=session.session_id,
                kind=kind_name(session.kind),
                state=state_name(session.state),
                agent_id=session.agent_id,
                room_id=session.room_id,
                created=_seconds(session.create_time),
                possible_leak=session.possible_leak,
            )

    def set_capacity(self, response: session_service_pb2.GetCapacityResponse) -> None:
        """The latest GetCapacity answer."""
        with self._lock:
            self.pools = [pool_row(p) for p in response.pools]

    def apply(self, event: ev.SessionEvent, now: float | None = None) -> None:
        """Fold one event into the view."""
        now = time.time() if now is None else now
        kind = event.WhichOneof("payload")
        with self._lock:
            self.events_seen += 1
            session = self.sessions.get(event.session_id)
            if session is None and kind != "ended":
                session = self.sessions[event.session_id] = LiveSession(
                    session_id=event.session_id,
                    kind="?",
                    state="ACTIVE",
                    agent_id=event.agent_id,
                    room_id=event.room_id,
                    created=_seconds(event.event_time) or now,
                )
            if kind == "created" and session is not None:
                session.state = "ACTIVE"
            elif kind == "ended":
                self.sessions.pop(event.session_id, None)
                if event.ended.reason == session_pb2.END_REASON_REAPED_ORPHAN:
                    self.reaped_orphans += 1
            elif kind == "user_speech" and event.user_speech.action == ev.USER_SPEECH_ACTION_END:
                self._speech_end[(event.session_id, event.round)] = _seconds(event.event_time)
            elif kind == "agent_status" and session is not None:
                session.agent_state = enum_name(ev.AgentState, event.agent_status.status, "AGENT_STATE_")
                if event.agent_status.status == ev.AGENT_STATE_SPEAKING:
                    started = self._speech_end.pop((event.session_id, event.round), None)
                    if started is not None:
                        at = _seconds(event.event_time)
                        session.last_turn_seconds = max(0.0, at - started)
                        # Timed by the event, so a replay (--oldest) does not count old turns as recent.
                        self.turns.append((at or now, session.last_turn_seconds))
            elif kind == "latency_budget_exceeded":
                self.breaches += 1
            while self.turns and self.turns[0][0] < now - WINDOW_SECONDS:
                self.turns.popleft()

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """The figures of the view (also ``top --once -o json``)."""
        now = time.time() if now is None else now
        with self._lock:
            latencies = [lat for _, lat in self.turns]
            per_minute = sum(1 for when, _ in self.turns if when >= now - 60)
            p50 = round(statistics.median(latencies), 3) if latencies else None
            p95 = _p95(latencies)
            return {
                "pools": [dict(p) for p in self.pools],
                "sessions": [
                    {
                        "session_id": s.session_id,
                        "kind": s.kind,
                        "state": s.state,
                        "agent_state": s.agent_state,
                        "agent_id": s.agent_id,
                        "age_seconds": max(0, int(now - s.created)),
                        "last_turn_seconds": (
                            None if s.last_turn_seconds is None else round(s.last_turn_seconds, 3)
                        ),
                        "possible_leak": s.possible_leak,
                    }
                    for s in sorted(self.sessions.values(), key=lambda s: s.created)
                ],
                "turns_per_minute": per_minute,
                "p50_seconds": p50,
                "p95_seconds": p95,
                "budget_seconds": self.budget_seconds,
                "breaches": self.breaches,
                "possible_leaks": sum(1 for s in self.sessions.values() if s.possible_leak),
                "reaped_orphans": self.reaped_orphans,
                "events_seen": self.events_seen,
            }


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3)


def _latency(value: float | None, budget: float) -> Text:
    if value is None:
        return Text("-")
    return Text(f"{value:.2f}s", style="bold red" if value > budget else "green")


def render(model: TopModel, target: str, now: float | None = None) -> RenderableType:
    """One frame of the view."""
    data = model.summary(now)
    budget = data["budget_seconds"]
    bars = Table.grid(padding=(0, 2))
    for _ in range(4):
        bars.add_column()
    for pool in data["pools"]:
        used, limit = pool["in_use"], max(1, pool["limit"])
        suspect = f"  suspect {pool['suspect']}"
        bars.add_row(
            Text(pool["pool"], style="bold"),
            ProgressBar(total=limit, completed=min(used, limit), width=30),
            Text(f"{pool['in_use']}/{pool['limit']} in use  pending {pool['pending']}{suspect}"),
            Text(f"free {pool['free']}", style="red" if pool["free"] == 0 else ""),
        )
    p50, p95 = data["p50_seconds"], data["p95_seconds"]
    latency = Text.assemble(
        f"turns/min {data['turns_per_minute']}   p50 ",
        _latency(p50, budget),
        "   p95 ",
        _latency(p95, budget),
        f"   budget {budget:g}s   breaches {data['breaches']}"
        f"   leaks {data['possible_leaks']} possible, {data['reaped_orphans']} reaped",
    )
    table = Table(header_style="bold", expand=True, box=None)
    for column in ("SESSION", "KIND", "STATE", "AGENT STATE", "AGENT", "AGE", "LAST TURN"):
        table.add_column(column, no_wrap=True)
    for s in data["sessions"][:_MAX_ROWS]:
        table.add_row(
            safe(s["session_id"]),
            s["kind"],
            s["state"] + (" (leak?)" if s["possible_leak"] else ""),
            s["agent_state"],
            safe(s["agent_id"]),
            duration(s["age_seconds"]),
            _latency(s["last_turn_seconds"], budget),
        )
    hidden = len(data["sessions"]) - _MAX_ROWS
    stamp = dt.datetime.fromtimestamp(now or time.time(), dt.UTC).strftime("%H:%M:%S")
    footer = f"{target}  {stamp} UTC  {len(data['sessions'])} live session(s)" + (
        f", {hidden} not shown" if hidden > 0 else ""
    )
    if model.notice:
        footer += f"  ({model.notice})"
    return Group(
        Panel(bars, title="capacity"),
        Panel(latency, title="latency (last 5 min)"),
        Panel(table, title="live sessions"),
        safe(footer, style="dim"),
    )


@click.command()
@click.option("--refresh", type=click.FloatRange(min=0.1), default=1.0, show_default=True, help="Seconds.")
@click.option("--oldest", is_flag=True, help="Replay the retained events first (figures from history).")
@click.option("--once", is_flag=True, help="Collect for one refresh period, print one frame, exit.")
@click.option(
    "-n", "--iterations", type=click.IntRange(min=1), default=None, help="Stop after this many refreshes."
)
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=1.5, show_default=True)
@pass_context
def top(
    ctx: Context, refresh: float, oldest: bool, once: bool, iterations: int | None, budget: float
) -> None:
    """Live view: capacity bars, live sessions, turns per minute, p50/p95 against the budget.

    Quit with Ctrl-C, or give -n. With --once (for scripts, or with -o json) it prints one frame
    and exits. Off a terminal (piped), the last frame is printed when it stops.

    \b
    Examples:
      agentgw top
      agentgw top --once --oldest -o json | jq .p95_seconds
    """
    model = TopModel(budget_seconds=budget)
    for session in iter_sessions(ctx, list_request(LIVE_STATES, (), "", "", "", 500)):
        model.seed(session)
    stop = threading.Event()
    streams: list[Any] = []
    failure: list[BaseException] = []

    def on_event(event: ev.SessionEvent) -> bool:
        model.apply(event)
        return not stop.is_set()

    def watch() -> None:
        try:
            follow(
                ctx.connection,
                watch_request(oldest=oldest),
                on_event,
                # Inside the full-screen view, a resume is shown in the footer.
                notify=lambda message: setattr(model, "notice", message.removeprefix("agentgw: ")),
                stop=stop,
                on_stream=streams.append,
            )
        except BaseException as exc:  # surfaced in the main thread
            failure.append(exc)

    watcher = threading.Thread(target=watch, name="agentgw-top-watch", daemon=True)
    watcher.start()
    try:
        with ctx.connection.channel() as channel:
            stubs = ctx.connection.stubs(channel)
            if once:
                _refresh(ctx, stubs, model)
                stop.wait(refresh)
                _refresh(ctx, stubs, model)
                _check(failure)
                if ctx.printer.structured:
                    ctx.printer.data(model.summary())
                else:
                    ctx.printer.console.print(render(model, ctx.connection.target))
                return
            _live(ctx, stubs, model, refresh, failure, iterations)
    finally:
        stop.set()
        for stream in streams:
            stream.cancel()
        watcher.join(timeout=5)


def _refresh(ctx: Context, stubs: Any, model: TopModel) -> None:
    try:
        model.set_capacity(
            ctx.connection.call(stubs.sessions.GetCapacity, session_service_pb2.GetCapacityRequest())
        )
    except RpcFailure as failure:
        if failure.exit_code != EXIT_UNAVAILABLE:  # unreachable for a moment: keep the figures, say so
            raise
        model.notice = f"capacity: {failure}"


def _check(failure: list[BaseException]) -> None:
    if failure:
        raise failure[0]


def _live(
    ctx: Context,
    stubs: Any,
    model: TopModel,
    refresh: float,
    failure: list[BaseException],
    iterations: int | None,
) -> None:
    from rich.live import Live

    console = ctx.printer.console
    with Live(
        render(model, ctx.connection.target), console=console, screen=console.is_terminal, auto_refresh=False
    ) as live:
        done = 0
        try:
            while iterations is None or done < iterations:
                if done:
                    time.sleep(refresh)
                _check(failure)
                _refresh(ctx, stubs, model)
                live.update(render(model, ctx.connection.target), refresh=True)
                done += 1
        except KeyboardInterrupt:
            return
