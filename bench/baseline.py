"""``python -m bench.baseline``: the bare reference every agentgw number is divided by.

One process, one event loop (as agentgw), with nothing but transport:

* ``/bench.Bare/Unary``: a no-op unary method on raw bytes (generic handler, identity serializers).
* ``/bench.Bare/Watch``: a server stream of raw bytes. Request ``b"sub"`` subscribes to the
  fan-out hub (a heartbeat ``b"hb"`` after ``--heartbeat-seconds`` idle); request
  ``b"replay:COUNT:PAYLOAD"`` streams PAYLOAD (raw bytes) COUNT times from memory (the resume
  baseline).
* ``POST /push`` (Starlette on uvicorn, as agentgw's callbacks): pushes the raw body to every
  subscriber. ``GET /healthz`` for readiness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SERVICE = "bench.Bare"
UNARY = f"/{SERVICE}/Unary"
WATCH = f"/{SERVICE}/Watch"
HEARTBEAT = b"hb"


class _Server(uvicorn.Server):
    # Leave SIGTERM to this process's own handler, as agentgw's embedded uvicorn does.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Hub:
    """The bare fan-out: one unbounded queue per subscriber."""

    def __init__(self, heartbeat_seconds: float) -> None:
        self.subscribers: set[asyncio.Queue[bytes]] = set()
        self.heartbeat = heartbeat_seconds

    async def unary(self, request: bytes, context: Any) -> bytes:
        return b""

    async def watch(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        if request.startswith(b"replay:"):
            _, count, payload = request.split(b":", 2)
            for _ in range(int(count)):
                yield payload
            return
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), self.heartbeat)
                except TimeoutError:
                    message = HEARTBEAT
                yield message
        finally:
            self.subscribers.discard(queue)

    async def push(self, request: Request) -> Response:
        body = await request.body()
        for queue in list(self.subscribers):
            queue.put_nowait(body)
        return Response(b'{"code":0,"subscribers":%d}' % len(self.subscribers), media_type="application/json")


async def _healthz(_: Request) -> Response:
    return Response(b"ok")


async def serve(grpc_port: int, http_port: int, heartbeat_seconds: float) -> None:
    hub = Hub(heartbeat_seconds)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(hub.unary),
                    "Watch": grpc.unary_stream_rpc_method_handler(hub.watch),
                },
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    app = Starlette(
        routes=[Route("/push", hub.push, methods=["POST"]), Route("/healthz", _healthz, methods=["GET"])]
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=http_port, log_level="warning", lifespan="off", access_log=False
    )
    http = _Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    http_task = asyncio.create_task(http.serve())
    await stop.wait()
    http.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(http_task, 2)
    await server.stop(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--heartbeat-seconds", type=float, default=15.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.grpc_port, args.http_port, args.heartbeat_seconds))


if __name__ == "__main__":
    main()
