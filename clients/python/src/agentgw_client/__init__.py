"""agentgw-client: a typed async client for agentgw, and the generated ``agentgw.v1`` stubs.

``AgentGw`` holds one channel and an object per service (``.agents``, ``.sessions``, ``.events``,
``.tokens``); errors are the tree in :mod:`agentgw_client.errors`; the messages are re-exported here
for convenience (all of them live in ``agentgw_client.gen.agentgw.v1``).
"""

from agentgw_client import errors
from agentgw_client._invoke import new_request_id
from agentgw_client._pb import (
    agent_pb2,
    event_service_pb2,
    session_event_pb2,
    session_pb2,
    session_service_pb2,
)
from agentgw_client.client import AgentGw
from agentgw_client.credentials import Credentials
from agentgw_client.errors import AgentGwError
from agentgw_client.retry import RetryPolicy

Agent = agent_pb2.Agent
LlmConfig = agent_pb2.LlmConfig
TtsConfig = agent_pb2.TtsConfig
AsrConfig = agent_pb2.AsrConfig
Session = session_pb2.Session
SessionEvent = session_event_pb2.SessionEvent
EventFilter = event_service_pb2.EventFilter
CreateSessionRequest = session_service_pb2.CreateSessionRequest
UpdateSessionRequest = session_service_pb2.UpdateSessionRequest
ListSessionsRequest = session_service_pb2.ListSessionsRequest
VoiceSpec = session_service_pb2.VoiceSpec
DigitalHumanSpec = session_service_pb2.DigitalHumanSpec
LiveDigitalHumanSpec = session_service_pb2.LiveDigitalHumanSpec
RtcSpec = session_service_pb2.RtcSpec

__version__ = "0.1.0"
__all__ = [
    "Agent",
    "AgentGw",
    "AgentGwError",
    "AsrConfig",
    "CreateSessionRequest",
    "Credentials",
    "DigitalHumanSpec",
    "EventFilter",
    "ListSessionsRequest",
    "LiveDigitalHumanSpec",
    "LlmConfig",
    "RetryPolicy",
    "RtcSpec",
    "Session",
    "SessionEvent",
    "TtsConfig",
    "UpdateSessionRequest",
    "VoiceSpec",
    "errors",
    "new_request_id",
]
