"""``agentgw capacity`` and ``agentgw token create``."""

from __future__ import annotations

import re
from typing import Any

import click
from google.protobuf import duration_pb2

from agentgw_client.gen.agentgw.v1 import room_token_service_pb2, session_pb2, session_service_pb2
from service.cli.app import Context, pass_context
from service.cli.output import enum_name, fmt_time, to_dict

__all__ = ["capacity", "pool_row", "token"]


def pool_row(pool: Any) -> dict[str, Any]:
    """One pool as plain numbers: in_use, pending, suspect, free and limit."""
    return {
        "pool": pool.pool,
        "kinds": [enum_name(session_pb2.SessionKind, k, "SESSION_KIND_") for k in pool.kinds],
        "limit": pool.limit,
        "in_use": pool.in_use,
        "pending": pool.pending,
        "suspect": pool.suspect,
        "free": max(0, pool.limit - pool.in_use),
    }


@click.command()
@pass_context
def capacity(ctx: Context) -> None:
    """Voice and digital-human pools: in use, pending, suspect, free, limit.

    \b
    Example:
      agentgw capacity -o json | jq '.pools[] | select(.free == 0)'
    """
    with ctx.connection.channel() as channel:
        response = ctx.connection.call(
            ctx.connection.stubs(channel).sessions.GetCapacity, session_service_pb2.GetCapacityRequest()
        )
    rows = [pool_row(p) for p in response.pools]
    if ctx.printer.structured:
        ctx.printer.data(
            {
                "pools": [
                    to_dict(p, defaults=True) | {"free": r["free"]}
                    for p, r in zip(response.pools, rows, strict=True)
                ]
            }
        )
        return
    ctx.printer.table(
        ("POOL", "IN USE", "PENDING", "SUSPECT", "FREE", "LIMIT"),
        (
            (
                r["pool"],
                r["in_use"],
                r["pending"],
                r["suspect"],
                r["free"],
                r["limit"],
            )
            for r in rows
        ),
    )


_DURATION = re.compile(r"(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<unit>s|m|h|d)?")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> duration_pb2.Duration:
    """``90``, ``90s``, ``15m``, ``2h`` or ``1d`` as a Duration."""
    match = _DURATION.fullmatch(raw.strip())
    if match is None:
        raise click.BadParameter(f"{raw!r} is not a duration such as 90s, 15m or 2h", param_hint="--ttl")
    seconds = float(match["n"]) * _UNITS[match["unit"]]
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


@click.group()
def token() -> None:
    """Mint RTC room tokens (ZEGO Token04) for a client.

    \b
    Example:
      agentgw token create --user-id alice --room-id r1 --publish
    """


@token.command("create")
@click.option("--user-id", required=True, help="The RTC user the token is for.")
@click.option("--room-id", default="", help="Restrict the token to this room.")
@click.option("--ttl", default=None, help="Lifetime, e.g. 90s, 15m, 2h (the gateway's default if omitted).")
@click.option("--publish", is_flag=True, help="With --room-id: allow publishing streams.")
@click.option("--stream-id", "stream_ids", multiple=True, help="With --publish: only these stream ids.")
@click.option("--layout", type=click.Choice(("gcm", "cbc")), default=None, help="Token04 layout.")
@pass_context
def create_token(
    ctx: Context,
    user_id: str,
    room_id: str,
    ttl: str | None,
    publish: bool,
    stream_ids: tuple[str, ...],
    layout: str | None,
) -> None:
    """Mint a room token.

    \b
    Examples:
      agentgw token create --user-id alice
      agentgw token create --user-id alice --room-id r1 --publish --ttl 15m -o json | jq -r .token
    """
    if (publish or stream_ids) and not room_id:
        raise click.UsageError("--publish and --stream-id need --room-id")
    request = room_token_service_pb2.CreateRoomTokenRequest(user_id=user_id)
    if ttl is not None:
        request.ttl.CopyFrom(parse_duration(ttl))
    if room_id:
        request.privilege.CopyFrom(
            room_token_service_pb2.RoomPrivilege(
                room_id=room_id, can_login=True, can_publish=publish, stream_ids=list(stream_ids)
            )
        )
    if layout is not None:
        request.layout = room_token_service_pb2.TokenLayout.Value(f"TOKEN_LAYOUT_{layout.upper()}")
    with ctx.connection.channel() as channel:
        response = ctx.connection.call(ctx.connection.stubs(channel).tokens.CreateRoomToken, request)
    if ctx.printer.structured:
        ctx.printer.data(to_dict(response))
        return
    ctx.printer.table(
        ("FIELD", "VALUE"),
        (
            ("token", response.token),
            ("expires (UTC)", fmt_time(response.expire_time)),
            ("app_id", response.app_id),
            ("layout", enum_name(room_token_service_pb2.TokenLayout, response.layout, "TOKEN_LAYOUT_")),
        ),
    )
