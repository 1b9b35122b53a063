"""``python -m bench.emulator --port P``: the bundled ZEGO emulator, configured for load.

``python -m zego_emulator`` has no option for the per-action rate limit (ZEGO's 10/s),
which would throttle every scenario, so this launcher builds the ``EmulatorConfig`` itself:
the bench's AppId and secrets, no rate limit to speak of, instance limits far above the load,
no created-callback delay, and no callback URL (the bench posts the callbacks it measures).

It serves through ``zego_emulator.server.serve_until_signalled``, as ``chaos.emulator`` and
``python -m zego_emulator`` do: the one embedded uvicorn (``service.http.asgi.serve_asgi``), whose
listening socket is made with IPPROTO_TCP, so accepted connections get TCP_NODELAY and the emulator
adds no Nagle + delayed-ACK stall to any answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from bench.config import APP_ID, CALLBACK_SECRET, SERVER_SECRET
from zego_emulator.config import EmulatorConfig
from zego_emulator.server import serve_until_signalled


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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_signalled(config, "127.0.0.1", args.port))


if __name__ == "__main__":
    main()
