"""``agentgw agents list | get | create -f FILE | update -f FILE | delete``.

Agent files are YAML or JSON in the proto's JSON form (``agentgw.v1.Agent``), e.g.::

    agent_id: support-bot
    display_name: Support
    llm: {url: "https://llm.example/v1/chat/completions", api_key: "...", model: "gpt-4o-mini"}
    tts: {vendor: ByteDance, app: {appid: "...", token: "..."}}
"""

from __future__ import annotations

import json
from typing import IO, Any

import click
import yaml
from google.protobuf import field_mask_pb2, json_format

from agentgw_client.gen.agentgw.v1 import agent_pb2, agent_service_pb2
from service.cli.app import Context, pass_context
from service.cli.output import safe, to_dict

__all__ = ["agents", "load_agent"]


def load_agent(stream: IO[str], agent_id: str | None = None) -> tuple[agent_pb2.Agent, list[str]]:
    """Parse an agent file (YAML is a superset of JSON); returns the agent and its top-level fields.

    Raises:
        click.BadParameter: the file is not YAML/JSON, not a mapping, or not an Agent.
    """
    name = getattr(stream, "name", "FILE")
    try:
        data = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{name} is not YAML or JSON: {exc}", param_hint="-f") from None
    if isinstance(data, dict) and set(data) == {"agent"}:
        data = data["agent"]  # a CreateAgentRequest body works too
    if not isinstance(data, dict):
        raise click.BadParameter(f"{name} must hold one Agent object", param_hint="-f")
    if agent_id:
        data["agent_id"] = agent_id
    agent = agent_pb2.Agent()
    try:
        json_format.ParseDict(data, agent)
    except json_format.ParseError as exc:
        raise click.BadParameter(f"{name}: {exc}", param_hint="-f") from None
    by_json_name = {str(f.json_name): str(f.name) for f in agent.DESCRIPTOR.fields}
    fields = [by_json_name.get(str(key), str(key)) for key in data]
    return agent, [f for f in fields if f != "agent_id"]


def _print_agent(ctx: Context, agent: Any) -> None:
    if ctx.printer.structured:
        ctx.printer.data(to_dict(agent))
        return
    rows = to_dict(agent).items()
    ctx.printer.table(
        ("FIELD", "VALUE"),
        ((key, json.dumps(value) if isinstance(value, dict | list) else value) for key, value in rows),
    )


@click.group()
def agents() -> None:
    """Register, inspect, change and remove agents.

    \b
    Examples:
      agentgw agents list
      agentgw agents create -f support-bot.yaml
    """


@agents.command("list")
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--page-token", default="", help="Continue from a previous page's next_page_token.")
@pass_context
def list_agents(ctx: Context, page_size: int, page_token: str) -> None:
    """List agents, one page at a time.

    \b
    Example:
      agentgw agents list -o json | jq -r '.agents[].agent_id'
    """
    with ctx.connection.channel() as channel:
        page = ctx.connection.call(
            ctx.connection.stubs(channel).agents.ListAgents,
            agent_service_pb2.ListAgentsRequest(page_size=page_size, page_token=page_token),
        )
    if ctx.printer.structured:
        ctx.printer.data(to_dict(page) | {"agents": [to_dict(a) for a in page.agents]})
        return
    ctx.printer.table(
        ("AGENT", "NAME", "LLM", "TTS", "ASR"),
        (
            (
                a.agent_id,
                a.display_name or "-",
                f"{a.llm.model} @ {a.llm.url}" if a.HasField("llm") else "-",
                a.tts.vendor if a.HasField("tts") else "-",
                a.asr.vendor or "default" if a.HasField("asr") else "-",
            )
            for a in page.agents
        ),
        no_wrap=1,
    )
    if page.next_page_token:
        ctx.printer.text(safe(f"more: --page-token {page.next_page_token}"))


@agents.command("get")
@click.argument("agent_id")
@pass_context
def get(ctx: Context, agent_id: str) -> None:
    """Show one agent (secrets are never returned, only whether they are set).

    \b
    Example:
      agentgw agents get support-bot -o json | jq -r .llm.model
    """
    with ctx.connection.channel() as channel:
        response = ctx.connection.call(
            ctx.connection.stubs(channel).agents.GetAgent,
            agent_service_pb2.GetAgentRequest(agent_id=agent_id),
        )
    _print_agent(ctx, response.agent)


@agents.command("create")
@click.option("-f", "--file", "file", type=click.File("r"), required=True, help="YAML or JSON; - is stdin.")
@click.option("--id", "agent_id", default=None, help="Overrides the file's agent_id.")
@click.option("--request-id", default="", help="Idempotency key: a retry returns the first result.")
@pass_context
def create(ctx: Context, file: IO[str], agent_id: str | None, request_id: str) -> None:
    """Register an agent from a file.

    \b
    Example:
      agentgw agents create -f support-bot.yaml
    """
    agent, _ = load_agent(file, agent_id)
    with ctx.connection.channel() as channel:
        response = ctx.connection.call(
            ctx.connection.stubs(channel).agents.CreateAgent,
            agent_service_pb2.CreateAgentRequest(agent=agent, request_id=request_id),
        )
    _print_agent(ctx, response.agent)


@agents.command("update")
@click.option("-f", "--file", "file", type=click.File("r"), required=True, help="YAML or JSON; - is stdin.")
@click.option("--id", "agent_id", default=None, help="Overrides the file's agent_id.")
@pass_context
def update(ctx: Context, file: IO[str], agent_id: str | None) -> None:
    """Change an agent: the fields present in the file replace the stored ones (the update mask).

    \b
    Example:
      echo 'display_name: Support (EU)' | agentgw agents update --id support-bot -f -
    """
    agent, fields = load_agent(file, agent_id)
    if not fields:
        raise click.BadParameter("the file names no field to update", param_hint="-f")
    with ctx.connection.channel() as channel:
        response = ctx.connection.call(
            ctx.connection.stubs(channel).agents.UpdateAgent,
            agent_service_pb2.UpdateAgentRequest(
                agent=agent, update_mask=field_mask_pb2.FieldMask(paths=fields)
            ),
        )
    _print_agent(ctx, response.agent)


@agents.command("delete")
@click.argument("agent_id")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def delete(ctx: Context, agent_id: str, yes: bool) -> None:
    """Unregister an agent (running sessions keep running).

    \b
    Example:
      agentgw agents delete support-bot --yes
    """
    if not yes:
        click.confirm(f"Delete agent {agent_id}?", abort=True, err=True)
    with ctx.connection.channel() as channel:
        ctx.connection.call(
            ctx.connection.stubs(channel).agents.DeleteAgent,
            agent_service_pb2.DeleteAgentRequest(agent_id=agent_id),
        )
    if ctx.printer.structured:
        ctx.printer.data({"deleted": agent_id})
    else:
        ctx.printer.text(safe(f"deleted {agent_id}"))
