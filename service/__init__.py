"""agentgw: a gRPC gateway that puts ZEGO AI agents and digital humans into real-time calls."""

__version__ = "0.1.0"
