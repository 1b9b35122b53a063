"""The embedded ZEGO emulator, started by the gateway when no ZEGO credentials are configured.

Dev mode: the secrets persist with the emulator's state, so clients that signed with them (and
the page tokens MACed with a key derived from them) keep working after a restart.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace

from service.config import Secret, Settings
from service.listeners import split_address
from service.zego.digital_human import EMULATOR_DIGITAL_HUMAN_PATH

__all__ = ["EMULATOR_APP_ID", "start_embedded_emulator"]

log = logging.getLogger("agentgw")

EMULATOR_APP_ID = 1000000001
"""The AppId the embedded emulator uses when no ZEGO credentials are configured."""

PointCallbacks = Callable[[str], Awaitable[None]]
"""Tells the emulator where the gateway's callback route is, once its port is bound."""


async def start_embedded_emulator(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[Settings, PointCallbacks]:
    """Start the emulator on loopback (stopped with ``stack``); the settings that point at it."""
    # Imported here: the emulator is loaded only when it is started.
    from zego_emulator import EmulatorClient, EmulatorConfig, persist, run_emulator

    state_path = settings.emulator_state_path
    saved = persist.secrets_of(persist.StateFile(state_path).load(), EMULATOR_APP_ID) if state_path else None
    server_secret, callback_secret = saved or (secrets.token_hex(16), secrets.token_hex(16))
    http_host, http_port = split_address(settings.listen.callback_address)
    config = EmulatorConfig(
        app_id=EMULATOR_APP_ID,
        server_secret=server_secret,
        callback_secret=callback_secret,
        callback_url=f"http://{http_host}:{http_port}/v1/zego/callbacks",
    )
    url = await stack.enter_async_context(
        run_emulator(config, host="127.0.0.1", port=0, state_file=state_path)
    )
    log.warning(
        "ZEGO emulator listening",
        extra={"url": url, "app_id": EMULATOR_APP_ID, "state_file": str(state_path) if state_path else None},
    )

    async def point_callbacks_at(callback_url: str) -> None:
        # The HTTP port is known only once bound (it may be 0), so tell the emulator now.
        async with EmulatorClient(url) as admin:
            await admin.set_callback_url(callback_url)

    zego = replace(
        settings.zego,
        app_id=EMULATOR_APP_ID,
        server_secret=Secret(server_secret),
        callback_secret=Secret(callback_secret),
        api_base=url,
        digital_human_api_base=url + EMULATOR_DIGITAL_HUMAN_PATH,
    )
    return replace(settings, zego=zego), point_callbacks_at
