"""``python -m bench.emulator --port P``: the bundled ZEGO emulator, configured for load.

``python -m zego_emulator`` has no option for the per-action rate limit (ZEGO's 10/s),
which would throttle every scenario, so this launcher builds the ``EmulatorConfig`` itself:
the bench's AppId and secrets, no rate limit to speak of, instance limits far above the load,
no created-callback delay, and no callback URL (the bench posts the callbacks it measures).

It serves the emulator's ASGI app with a plain uvicorn on host/port rather than through
``run_emulator``: that goes through ``service.http.asgi.serve_asgi``, whose pre-bound listening
socket (``proto=0``) makes asyncio skip TCP_NODELAY on accepted connections, so every response
stalls ~40 ms on Nagle + delayed ACK. The emulator must add zero latency; agentgw's own HTTP
side keeps that behaviour, and the bench measures it (see the report).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

import uvicorn

from bench.config import APP_ID, CALLBACK_SECRET, SERVER_SECRET
from zego_emulator.app import create_app
from zego_emulator.config import EmulatorConfig


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = EmulatorConfig(
        app_id=APP_ID,
        server_secret=SERVER_SECRET,
        callback_secret=CALLBACK_SECRET,
        callback_url=None,
        rate_limit_per_second=1_000_000.0,
        voice_instance_limit=1_000_000,
        digital_human_instance_limit=1_000_000,
        created_callback_delay_ms=0,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            log_config=None,
            lifespan="on",
            access_log=False,
        )
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve())


if __name__ == "__main__":
    main()
