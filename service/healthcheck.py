"""``python -m service.healthcheck``: exit 0 if the gateway's gRPC health service says SERVING.

The container image's HEALTHCHECK (the prebuilt grpc_health_probe binary cannot be fetched here).
It asks ``grpc.health.v1.Health/Check`` on the gRPC port the gateway listens on (from
``AGENTGW_GRPC_LISTEN``, a wildcard host becoming loopback) and exits 0 for SERVING, 1 for anything
else: NOT_SERVING (starting, or draining after SIGTERM), no answer within the timeout, no listener.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.config import Settings, env_name

_WILDCARDS = {"0.0.0.0", "::", "[::]", ""}


def default_target(environ: Mapping[str, str] = os.environ) -> str:
    """Where to probe: the host:port of ``AGENTGW_GRPC_LISTEN`` (or its default), on loopback."""
    listen = environ.get(env_name("grpc_listen"), Settings().listen.grpc)
    host, _, port = listen.rpartition(":")
    return f"127.0.0.1:{port}" if host in _WILDCARDS else listen


def check(target: str, service: str = "", timeout: float = 2.0) -> bool:
    """True when ``service`` ("" = the whole server) reports SERVING at ``target``."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            print(f"unhealthy: {target}: {exc.code().name}", file=sys.stderr)
            return False
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{target}: {status}")
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, probe once, return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__)
    parser.add_argument("--target", default=None, help="HOST:PORT (default: from AGENTGW_GRPC_LISTEN)")
    parser.add_argument("--service", default="", help="a service name; empty: the whole server")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    return 0 if check(args.target or default_target(), args.service, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
