"""The generated messages and stubs the client uses, from one place."""

from agentgw_client.gen.agentgw.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    room_token_service_pb2,
    room_token_service_pb2_grpc,
    session_event_pb2,
    session_pb2,
    session_service_pb2,
    session_service_pb2_grpc,
)

__all__ = [
    "agent_pb2",
    "agent_service_pb2",
    "agent_service_pb2_grpc",
    "event_service_pb2",
    "event_service_pb2_grpc",
    "room_token_service_pb2",
    "room_token_service_pb2_grpc",
    "session_event_pb2",
    "session_pb2",
    "session_service_pb2",
    "session_service_pb2_grpc",
]
