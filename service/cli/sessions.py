"""``agentgw sessions list | show | end``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
from rich.progress import Progress

from agentgw_client.gen.agentgw.v1 import event_service_pb2, session_pb2, session_service_pb2
from service.cli.app import Context, pass_context
from service.cli.client import RpcFailure
from service.cli.output import age, enum_name, fmt_time, safe, to_dict
from service.cli.timeline import build_timeline

__all__ = ["iter_sessions", "sessions"]

STATES = ("pending", "starting", "active", "ending", "ended", "failed")
LIVE_STATES = ("pending", "starting", "active", "ending")
KINDS = ("voice", "digital_human", "live_digital_human")
DEFAULT_BUDGET_SECONDS = 1.5
_EVENT_PAGE = 500


def state_name(value: int) -> str:
    """``SESSION_STATE_ACTIVE`` -> ``ACTIVE``."""
    return enum_name(session_pb2.SessionState, value, "SESSION_STATE_")


def kind_name(value: int) -> str:
    """``SESSION_KIND_VOICE`` -> ``VOICE``."""
    return enum_name(session_pb2.SessionKind, value, "SESSION_KIND_")


def list_request(
    states: tuple[str, ...], kinds: tuple[str, ...], agent: str, room: str, selector: str, page_size: int
) -> session_service_pb2.ListSessionsRequest:
    """The ListSessions request for these filters."""
    return session_service_pb2.ListSessionsRequest(
        states=[session_pb2.SessionState.Value(f"SESSION_STATE_{s.upper()}") for s in states],
        kinds=[session_pb2.SessionKind.Value(f"SESSION_KIND_{k.upper()}") for k in kinds],
        agent_id=agent,
        room_id=room,
        label_selector=selector,
        page_size=page_size,
    )


def iter_sessions(ctx: Context, request: session_service_pb2.ListSessionsRequest) -> Iterator[Any]:
    """Every session matching ``request``, following page tokens."""
    with ctx.connection.channel() as channel:
        stubs = ctx.connection.stubs(channel)
        while True:
            page = ctx.connection.call(stubs.sessions.ListSessions, request)
            yield from page.sessions
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token


def _filters(fn: Any) -> Any:
    fn = click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Repeatable.")(fn)
    fn = click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS), help="Repeatable.")(fn)
    fn = click.option("--agent", default="", help="Only this agent_id.")(fn)
    fn = click.option("--room", default="", help="Only this room_id.")(fn)
    fn = click.option("-l", "--selector", default="", help="Label selector, e.g. 'team=support,env!=dev'.")(
        fn
    )
    return fn


@click.group()
def sessions() -> None:
    """List, inspect and end sessions.

    \b
    Examples:
      agentgw sessions list --state active
      agentgw sessions show SESSION_ID
    """


@sessions.command("list")
@_filters
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--page-token", default="", help="Continue from a previous page's next_page_token.")
@pass_context
def list_sessions(
    ctx: Context,
    states: tuple[str, ...],
    kinds: tuple[str, ...],
    agent: str,
    room: str,
    selector: str,
    page_size: int,
    page_token: str,
) -> None:
    """List sessions, newest first, one page at a time.

    \b
    Examples:
      agentgw sessions list --state active --state starting
      agentgw sessions list -l team=support -o json | jq -r '.sessions[].session_id'
    """
    request = list_request(states, kinds, agent, room, selector, page_size)
    request.page_token = page_token
    with ctx.connection.channel() as channel:
        page = ctx.connection.call(ctx.connection.stubs(channel).sessions.ListSessions, request)
    printer = ctx.printer
    if printer.structured:
        printer.data(to_dict(page) | {"sessions": [to_dict(s) for s in page.sessions]})
        return
    printer.table(
        # No turn figures: ListSessions leaves turn_stats to GetSession (`sessions show`).
        ("SESSION", "KIND", "STATE", "AGENT", "USER", "ROOM", "AGE"),
        (
            (
                s.session_id,
                kind_name(s.kind),
                state_name(s.state) + (" (leak?)" if s.possible_leak else ""),
                s.agent_id,
                s.user_id or "-",
                s.room_id or "-",
                age(s.create_time),
            )
            for s in page.sessions
        ),
        no_wrap=1,
    )
    if page.next_page_token:
        printer.text(safe(f"more: --page-token {page.next_page_token}"))


def session_events(ctx: Context, stubs: Any, session_id: str) -> list[Any]:
    """Every retained event of one session, oldest first (ListEvents, paged by cursor)."""
    found: list[Any] = []
    cursor = 0
    while True:
        page = ctx.connection.call(
            stubs.events.ListEvents,
            event_service_pb2.ListEventsRequest(
                filter=event_service_pb2.EventFilter(session_ids=[session_id]),
                after_cursor=cursor,
                page_size=_EVENT_PAGE,
            ),
        )
        found.extend(page.events)
        if not page.events or page.next_cursor <= cursor:
            return found
        cursor = page.next_cursor


@sessions.command("show")
@click.argument("session_id")
@pass_context
def show(ctx: Context, session_id: str) -> None:
    """A session, its transitions and every event as a timeline, with each turn's latency.

    Turns slower than the budget (1.5 s by default) are marked with `!`.

    \b
    Example:
      agentgw sessions show 01J9Z8F3Q6 -o json | jq '.turns[] | select(.budget_exceeded)'
    """
    with ctx.connection.channel() as channel:
        stubs = ctx.connection.stubs(channel)
        got = ctx.connection.call(
            stubs.sessions.GetSession, session_service_pb2.GetSessionRequest(session_id=session_id)
        )
        events = session_events(ctx, stubs, session_id)
    session = got.session
    budget = session.turn_stats.budget_seconds or DEFAULT_BUDGET_SECONDS
    rows, by_round = build_timeline(got.transitions, events, budget)
    printer = ctx.printer
    if printer.structured:
        printer.data(
            {
                "session": to_dict(session),
                "transitions": [to_dict(t) for t in got.transitions],
                "events": [to_dict(e) for e in events],
                "turns": [t.to_json() for t in by_round.values()],
            }
        )
        return
    stats = session.turn_stats
    printer.text(
        safe(
            f"{session.session_id}  {kind_name(session.kind)}  {state_name(session.state)}"
            f"  created {fmt_time(session.create_time)}"
            f"  agent={session.agent_id}  room={session.room_id or '-'}"
            f"  instance={session.agent_instance_id or '-'}"
        )
    )
    if session.end_reason:
        reason = enum_name(session_pb2.EndReason, session.end_reason, "END_REASON_")
        printer.text(safe(f"ended: {reason} {session.end_detail}".rstrip()))
    printer.text(
        f"turns {stats.turns}  p50 {stats.p50_latency_seconds:.2f}s  p95 {stats.p95_latency_seconds:.2f}s"
        f"  max {stats.max_latency_seconds:.2f}s  breaches {stats.budget_breaches} (budget {budget:g}s)"
    )
    printer.table(
        ("TIME (UTC)", "EVENT", "TURN", "DETAIL"),
        (
            (
                fmt_time(row.time, date=False),
                row.what,
                ""
                if row.turn is None
                else f"{row.turn.latency_seconds:.3f}s" + (" ! over budget" if row.turn.breached else ""),
                row.detail,
            )
            for row in rows
        ),
        no_wrap=3,
    )


@sessions.command("end")
@click.argument("session_id", required=False)
@click.option("--all", "end_all", is_flag=True, help="End every live session matching the filters.")
@_filters
@click.option("--graceful", is_flag=True, help="Let the agent finish what it is saying first.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (with --all).")
@pass_context
def end(
    ctx: Context,
    session_id: str | None,
    end_all: bool,
    states: tuple[str, ...],
    kinds: tuple[str, ...],
    agent: str,
    room: str,
    selector: str,
    graceful: bool,
    yes: bool,
) -> None:
    """End one session, or with --all every live session matching the filters.

    \b
    Examples:
      agentgw sessions end 01J9Z8F3Q6
      agentgw sessions end --all --agent support-bot --yes
    """
    if (session_id is None) == (not end_all):
        raise click.UsageError("give a SESSION_ID or --all (with filters), not both")
    if session_id is not None:
        with ctx.connection.channel() as channel:
            response = ctx.connection.call(
                ctx.connection.stubs(channel).sessions.EndSession,
                session_service_pb2.EndSessionRequest(session_id=session_id, graceful=graceful),
            )
        if ctx.printer.structured:
            ctx.printer.data(to_dict(response))
        else:
            ctx.printer.text(safe(f"{session_id}: {state_name(response.session.state)}"))
        return
    targets = [
        s.session_id
        for s in iter_sessions(ctx, list_request(states or LIVE_STATES, kinds, agent, room, selector, 500))
    ]
    if not targets:
        _report(ctx, [], [])
        return
    if not yes:
        click.confirm(f"End {len(targets)} session(s)?", abort=True, err=True)
    ended, failed = _end_many(ctx, targets, graceful)
    _report(ctx, ended, failed)
    if failed:
        raise click.exceptions.Exit(1)


def _end_many(ctx: Context, targets: list[str], graceful: bool) -> tuple[list[str], list[tuple[str, str]]]:
    ended: list[str] = []
    failed: list[tuple[str, str]] = []
    with (
        ctx.connection.channel() as channel,
        Progress(console=ctx.printer.err_console, transient=True) as bar,
    ):
        stubs = ctx.connection.stubs(channel)
        task = bar.add_task("ending sessions", total=len(targets))
        for target in targets:
            try:
                ctx.connection.call(
                    stubs.sessions.EndSession,
                    session_service_pb2.EndSessionRequest(session_id=target, graceful=graceful),
                )
                ended.append(target)
            except RpcFailure as failure:
                failed.append((target, str(failure)))
            bar.advance(task)
    return ended, failed


def _report(ctx: Context, ended: list[str], failed: list[tuple[str, str]]) -> None:
    if ctx.printer.structured:
        ctx.printer.data({"ended": ended, "failed": [{"session_id": s, "error": e} for s, e in failed]})
        return
    ctx.printer.text(f"ended {len(ended)} session(s)" + (f", {len(failed)} failed" if failed else ""))
    for session_id, error in failed:
        click.echo(f"agentgw: {session_id}: {error}", err=True)
