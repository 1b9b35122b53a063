"""The 19 ZEGO AI Agent actions (spec §4): body parsing bound to the state operation that runs it.

Parsing and running are separate steps because ZEGO's order puts the per-action rate limit between them:
a request with a bad body is rejected with ``410000003`` whatever the bucket holds.
"""

from __future__ import annotations

from collections.abc import Callable

from . import objects, schema
from .instance import DIGITAL_HUMAN, LIVE_DIGITAL_HUMAN, VOICE
from .state import EmulatorState
from .validation import Fields, Json

__all__ = ["ACTIONS", "Operation"]

Operation = Callable[[EmulatorState], Json | None]
"""A validated request, ready to run against the state; returns ``Data`` (or None when there is none)."""

Parser = Callable[[Fields], Operation]


def _register(f: Fields) -> Operation:
    body = schema.parse_agent(f, name_max_bytes=256)
    return lambda s: s.agents.register(body)


def _update_agent(f: Fields) -> Operation:
    body = schema.parse_agent(f, name_max_bytes=64)
    return lambda s: s.agents.update(body)


def _unregister(f: Fields) -> Operation:
    agent_id = schema.agent_id(f)
    return lambda s: s.agents.unregister(agent_id)


def _list_agents(f: Fields) -> Operation:
    limit, cursor = schema.parse_list_agents(f)
    return lambda s: s.agents.page(limit, cursor)


def _query_agents(f: Fields) -> Operation:
    ids = schema.parse_query_agents(f)
    return lambda s: s.agents.query(ids)


def _create(kind: str) -> Parser:
    def parse(f: Fields) -> Operation:
        body = schema.parse_create(f, kind)
        return lambda s: s.create_instance(body)

    return parse


def _update_instance(f: Fields) -> Operation:
    body = schema.parse_update_instance(f)
    return lambda s: s.update_instance(body)


def _delete(f: Fields) -> Operation:
    body = schema.parse_delete(f)
    return lambda s: s.delete_instance(body)


def _speak(llm: bool) -> Parser:
    def parse(f: Fields) -> Operation:
        body = schema.parse_speak(f, llm_call=llm)
        return lambda s: s.speak(body)

    return parse


def _by_id(run: Callable[[EmulatorState, str], Json | None]) -> Parser:
    def parse(f: Fields) -> Operation:
        instance_id = schema.instance_id(f)
        return lambda s: run(s, instance_id)

    return parse


def _add_msg(f: Fields) -> Operation:
    instance_id = schema.instance_id(f)
    # Messages is not marked required in the yaml; without it the call changes nothing.
    msgs = objects.messages(f, "Messages")
    return lambda s: s.add_messages(instance_id, msgs)


def _listen(start: bool) -> Parser:
    def parse(f: Fields) -> Operation:
        body = schema.parse_listen(f, start=start)
        return lambda s: s.listen(body)

    return parse


ACTIONS: dict[str, Parser] = {
    "RegisterAgent": _register,
    "UnregisterAgent": _unregister,
    "UpdateAgent": _update_agent,
    "ListAgents": _list_agents,
    "QueryAgents": _query_agents,
    "CreateAgentInstance": _create(VOICE),
    "CreateDigitalHumanAgentInstance": _create(DIGITAL_HUMAN),
    "CreateLiveDigitalHumanAgentInstance": _create(LIVE_DIGITAL_HUMAN),
    "UpdateAgentInstance": _update_instance,
    "DeleteAgentInstance": _delete,
    "SendAgentInstanceLLM": _speak(True),
    "SendAgentInstanceTTS": _speak(False),
    "QueryAgentInstanceStatus": _by_id(EmulatorState.query_status),
    "InterruptAgentInstance": _by_id(EmulatorState.interrupt),
    "GetAgentInstanceMsgList": _by_id(EmulatorState.get_messages),
    "ResetAgentInstanceMsgList": _by_id(EmulatorState.reset_messages),
    "AddAgentInstanceMsg": _add_msg,
    "StartListening": _listen(True),
    "StopListening": _listen(False),
}
"""Action name -> body parser. Every action is ``POST /?Action=<name>`` with a JSON body."""
