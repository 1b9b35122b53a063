"""AgentService: a thin adapter from gRPC to ``service.domain.agents``.

Each handler validates the request (every violation, before any ZEGO call), converts it to the
domain's types, calls the domain, and converts back with secrets withheld. Errors are raised, not
returned: the interceptor maps them through the one table in ``service.api.status``.
"""

from __future__ import annotations

from google.protobuf import field_mask_pb2

from agentgw_client.gen.agentgw.v1 import agent_pb2 as pb
from agentgw_client.gen.agentgw.v1 import agent_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import agent_service_pb2_grpc as rpc
from service.api.common import Context, fingerprint, time_budget, validate_request_id
from service.api.convert import agent_from_proto, agent_to_proto, validate_agent_configs
from service.api.paging import PageTokens, page_size
from service.domain.agents import AgentService
from service.domain.validation import (
    AGENT_NAME_CREATE_MAX_BYTES,
    AGENT_NAME_UPDATE_MAX_BYTES,
    Violations,
)
from service.domain.zego_config import Agent

__all__ = ["AgentServicer"]

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 50
_UPDATABLE = {"display_name", "llm", "tts", "asr"}


class AgentServicer(rpc.AgentServiceServicer):
    """gRPC face of agent management."""

    def __init__(self, agents: AgentService, page_tokens: PageTokens) -> None:
        self._agents = agents
        self._tokens = page_tokens

    async def CreateAgent(self, request: api.CreateAgentRequest, context: Context) -> api.CreateAgentResponse:
        v = Violations()
        if v.check(request.HasField("agent"), "agent", "is required"):
            v.agent_id("agent.agent_id", request.agent.agent_id)
            v.max_bytes("agent.display_name", request.agent.display_name, AGENT_NAME_CREATE_MAX_BYTES)
            validate_agent_configs(v, "agent", request.agent)
        validate_request_id(v, request.request_id)
        v.raise_if_any()
        created = await self._agents.create(
            agent_from_proto(request.agent),
            request_id=request.request_id,
            request_hash=fingerprint(request),
            timeout=time_budget(context),
        )
        return api.CreateAgentResponse(agent=agent_to_proto(created))

    async def GetAgent(self, request: api.GetAgentRequest, context: Context) -> api.GetAgentResponse:
        v = Violations()
        v.agent_id("agent_id", request.agent_id)
        v.raise_if_any()
        agent = await self._agents.get(request.agent_id, timeout=time_budget(context))
        return api.GetAgentResponse(agent=agent_to_proto(agent))

    async def ListAgents(self, request: api.ListAgentsRequest, context: Context) -> api.ListAgentsResponse:
        size = page_size(request.page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        cursor = str(self._tokens.decode(request.page_token)) if request.page_token else ""
        page = await self._agents.list(page_size=size, cursor=cursor, timeout=time_budget(context))
        return api.ListAgentsResponse(
            agents=[agent_to_proto(a) for a in page.agents],
            next_page_token=self._tokens.encode(page.cursor) if page.cursor else "",
            total_size=page.total,
        )

    async def UpdateAgent(self, request: api.UpdateAgentRequest, context: Context) -> api.UpdateAgentResponse:
        v = Violations()
        paths: list[str] = []
        if v.check(request.HasField("agent"), "agent", "is required"):
            v.agent_id("agent.agent_id", request.agent.agent_id)
            paths = list(request.update_mask.paths) or [
                field.name for field, _ in request.agent.ListFields() if field.name != "agent_id"
            ]
            v.check(bool(paths), "update_mask", "names no field to update")
            for i, path in enumerate(paths):
                top = path.split(".", 1)[0]
                if top not in _UPDATABLE or not field_mask_pb2.FieldMask(paths=[path]).IsValidForDescriptor(
                    pb.Agent.DESCRIPTOR
                ):
                    v.add(f"update_mask.paths[{i}]", f"{path!r} is not an updatable field of Agent")
            if "display_name" in paths:
                v.max_bytes("agent.display_name", request.agent.display_name, AGENT_NAME_UPDATE_MAX_BYTES)
        v.raise_if_any()
        mask = field_mask_pb2.FieldMask(paths=paths)
        violations = Violations()

        def merge(current: Agent) -> Agent:
            merged = agent_to_proto(current, with_secrets=True)
            previous = pb.Agent()
            previous.CopyFrom(merged)
            mask.MergeMessage(request.agent, merged, replace_message_field=True, replace_repeated_field=True)
            # Secrets are write-only, so callers cannot read them back to resend them: a replaced
            # config that leaves its secret empty keeps the stored one.
            if merged.HasField("llm") and not merged.llm.api_key and previous.llm.api_key:
                merged.llm.api_key = previous.llm.api_key
            if merged.HasField("tts") and not merged.tts.HasField("app") and previous.tts.HasField("app"):
                merged.tts.app.CopyFrom(previous.tts.app)
            validate_agent_configs(violations, "agent", merged)
            violations.raise_if_any()
            return agent_from_proto(merged)

        updated = await self._agents.update(
            request.agent.agent_id, merge, name_changed="display_name" in paths, timeout=time_budget(context)
        )
        return api.UpdateAgentResponse(agent=agent_to_proto(updated))

    async def DeleteAgent(self, request: api.DeleteAgentRequest, context: Context) -> api.DeleteAgentResponse:
        v = Violations()
        v.agent_id("agent_id", request.agent_id)
        v.raise_if_any()
        await self._agents.delete(request.agent_id, timeout=time_budget(context))
        return api.DeleteAgentResponse()
