"""``agentgw``: the operator's command line for a running gateway, and ``agentgw serve`` to run one.

Every command except ``serve`` talks to a gateway over the public gRPC API (``--target``), so it
works against one process or a fleet. Exit codes: 0 success, 1 a failed RPC, 2 a usage error or a
bad input file, 3 not found, 4 no gateway reachable in time (UNAVAILABLE, DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from service import __version__
from service.cli.client import DEFAULT_TARGET, Connection, RpcFailure
from service.cli.output import FORMATS, Printer

__all__ = ["Context", "cli", "main", "pass_context"]


@dataclass
class Context:
    """What every command gets: where the gateway is, and how to print."""

    connection: Connection
    printer: Printer


pass_context = click.make_pass_decorator(Context)


class _Root(click.Group):
    """Turns a failed RPC anywhere below into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RpcFailure as failure:
            click.echo(f"agentgw: {failure}", err=True)
            raise click.exceptions.Exit(failure.exit_code) from None


@click.group(
    cls=_Root,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  agentgw sessions list --state active
  agentgw sessions show 01J9Z...     # transitions, events and turn latencies
  agentgw events tail -o json | jq .
  agentgw top                        # live view of capacity, sessions and latency
  AGENTGW_TARGET=gw.internal:50051 agentgw capacity""",
)
@click.option(
    "--target",
    envvar="AGENTGW_TARGET",
    default=DEFAULT_TARGET,
    show_default=True,
    show_envvar=True,
    help="The gateway's gRPC address (HOST:PORT).",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for people; json (one object, or one per line for streams) or yaml for programs.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Deadline of each call, in seconds.",
)
@click.version_option(__version__, prog_name="agentgw")
@click.pass_context
def cli(ctx: click.Context, target: str, output: str, timeout: float) -> None:
    """Operate agentgw: sessions, capacity, events, agents, room tokens, and a live view."""
    ctx.obj = Context(Connection(target=target, timeout=timeout), Printer(output))


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("gateway_args", nargs=-1, type=click.UNPROCESSED)
def serve(gateway_args: tuple[str, ...]) -> None:
    """Run the gateway (what `make run` runs); `agentgw serve --help` lists its flags."""
    from service.__main__ import main as serve_main

    raise click.exceptions.Exit(serve_main(list(gateway_args)))


def _register() -> None:
    # Imported here so each module can import ``pass_context`` from this one.
    from service.cli import agents, events, misc, sessions, top

    cli.add_command(sessions.sessions)
    cli.add_command(events.events)
    cli.add_command(agents.agents)
    cli.add_command(misc.capacity)
    cli.add_command(misc.token)
    cli.add_command(top.top)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """The console script ``agentgw``."""
    try:
        cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="agentgw")
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
