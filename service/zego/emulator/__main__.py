"""``python -m service.zego.emulator``: run the ZEGO emulator as a local server.

Every option falls back to an ``AGENTGW_EMULATOR_*`` environment variable (``--app-id`` to
``AGENTGW_EMULATOR_APP_ID`` and so on). Without a server secret, a random 32-character one is generated
and printed once, since a client needs it to sign requests to this local emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from .config import EmulatorConfig
from .digital_humans import catalogue_from_json
from .server import run_emulator

logger = logging.getLogger("service.zego.emulator")

_ENV = "AGENTGW_EMULATOR_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(_ENV + name, default)


def _parser() -> argparse.ArgumentParser:
    # argparse applies ``type`` to string defaults too, so a bad environment value gets a clean usage error.
    p = argparse.ArgumentParser(
        prog="python -m service.zego.emulator",
        description="Run the bundled ZEGO AI Agent emulator (a local stand-in for ZEGO's API).",
        epilog="Every option falls back to AGENTGW_EMULATOR_<OPTION> (e.g. AGENTGW_EMULATOR_APP_ID). "
        "Prefer the environment for secrets: command lines are visible to other local users.",
    )
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="bind address (keep it on loopback)")
    p.add_argument("--port", type=int, default=_env("PORT", "8090"))
    p.add_argument("--app-id", type=int, default=_env("APP_ID", "1"))
    p.add_argument("--server-secret", default=_env("SERVER_SECRET"), help="32 characters; random if omitted")
    p.add_argument("--callback-secret", default=_env("CALLBACK_SECRET"), help="random if omitted")
    p.add_argument(
        "--callback-url",
        default=_env("CALLBACK_URL"),
        help="where server callbacks are POSTed (also settable at POST /_emulator/callbacks)",
    )
    p.add_argument(
        "--auto-turn-interval",
        type=float,
        default=_env("AUTO_TURN_INTERVAL"),
        help="emulated seconds between automatic user turns of each instance (demos; off if omitted)",
    )
    p.add_argument("--latency-seed", type=int, default=_env("LATENCY_SEED"), help="reproducible latencies")
    p.add_argument("--time-scale", type=float, default=_env("TIME_SCALE", "1.0"), help="multiplies delays")
    p.add_argument("--voice-limit", type=int, default=_env("VOICE_LIMIT", "10"))
    p.add_argument("--dh-limit", type=int, default=_env("DH_LIMIT", "10"))
    p.add_argument(
        "--rate-limit", type=float, default=_env("RATE_LIMIT", "10"), help="requests per second per action"
    )
    p.add_argument(
        "--catalogue",
        default=_env("CATALOGUE"),
        help='JSON file {"avatars": [...], "timbres": [...]} of digital humans and timbres',
    )
    p.add_argument(
        "--rtc-conflicts",
        choices=("async", "strict"),
        default=_env("RTC_CONFLICTS", "async"),
        help="reused RTC ids: fail after creation as ZEGO does (async), or refuse the create (strict)",
    )
    p.add_argument(
        "--dh-concurrency-code",
        type=int,
        default=_env("DH_CONCURRENCY_CODE", "410001031"),
        help="code beyond --dh-limit: 410001031 (ZEGO's docs) or 410001025 (what ZEGO's sample expects)",
    )
    return p


def _catalogue(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    with open(path, encoding="utf-8") as f:
        avatars, timbres = catalogue_from_json(json.load(f))
    return {"digital_humans": avatars, "timbres": timbres}


def _secret(given: str | None, name: str) -> str:
    if given:
        return given
    generated = secrets.token_hex(16)
    # Printed (never logged) once: it is a local emulator and its clients need the secret.
    print(f"generated {name}: {generated}", flush=True)
    return generated


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    async with run_emulator(config, host, port) as url:
        logger.info("ZEGO emulator listening on %s (AppId %d)", url, config.app_id)
        if host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning("the /_emulator/ admin endpoints are unauthenticated: do not expose %s", host)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, print any generated secret once, and serve until interrupted."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server_secret = _secret(args.server_secret, "server secret")
    callback_secret = _secret(args.callback_secret, "callback secret")
    try:
        config = EmulatorConfig(
            app_id=args.app_id,
            server_secret=server_secret,
            callback_secret=callback_secret,
            callback_url=args.callback_url,
            time_scale=args.time_scale,
            auto_turn_interval_seconds=args.auto_turn_interval,
            latency_seed=args.latency_seed,
            voice_instance_limit=args.voice_limit,
            digital_human_instance_limit=args.dh_limit,
            rate_limit_per_second=args.rate_limit,
            rtc_conflicts=args.rtc_conflicts,
            digital_human_concurrency_code=args.dh_concurrency_code,
            **_catalogue(args.catalogue),
        )
    except (OSError, ValueError) as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
