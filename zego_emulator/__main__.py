"""``python -m zego_emulator``: run the ZEGO emulator as a local server.

Every option falls back to an ``AGENTGW_EMULATOR_*`` environment variable (``--app-id`` to
``AGENTGW_EMULATOR_APP_ID`` and so on). It logs JSON lines on stderr, like the gateway, and never
prints a secret: the secrets (given, restored from ``--state-file``, or generated) are written to
``--secrets-file`` (mode 0600) as the ``AGENTGW_ZEGO_*`` variables a gateway needs, and the log
says where. ``--state-file`` keeps agents and running instances across restarts (dev mode).
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
from pathlib import Path
from typing import Any

from . import persist
from .config import EmulatorConfig
from .digital_humans import catalogue_from_json
from .logs import configure_logging
from .server import serve_until_signalled

logger = logging.getLogger("zego_emulator")

_ENV = "AGENTGW_EMULATOR_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(_ENV + name, default)


def _parser() -> argparse.ArgumentParser:
    # argparse applies ``type`` to string defaults too, so a bad environment value gets a clean usage error.
    p = argparse.ArgumentParser(
        prog="python -m zego_emulator",
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
    _behaviour_options(p)
    return p


def _behaviour_options(p: argparse.ArgumentParser) -> None:
    """How the emulated ZEGO behaves: timing, limits, catalogue, conflicts, persistence."""
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
    p.add_argument(
        "--state-file",
        type=Path,
        default=_env("STATE_FILE"),
        help="keep agents, instances and secrets in this JSON file across restarts (mode 0600)",
    )
    p.add_argument("--fresh", action="store_true", help="delete the --state-file first and start empty")
    p.add_argument(
        "--secrets-file",
        type=Path,
        default=_env("SECRETS_FILE", "var/emulator-secrets.env"),
        help="where the secrets are written (mode 0600) as AGENTGW_ZEGO_* lines; default %(default)s",
    )


def _catalogue(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    with open(path, encoding="utf-8") as f:
        avatars, timbres = catalogue_from_json(json.load(f))
    return {"digital_humans": avatars, "timbres": timbres}


def write_secrets(path: Path, config: EmulatorConfig, url: str) -> None:
    """The variables a gateway needs to use this emulator, in a file only its owner can read."""
    text = "".join(
        f"{name}={value}\n"
        for name, value in (
            ("AGENTGW_ZEGO_APP_ID", config.app_id),
            ("AGENTGW_ZEGO_SERVER_SECRET", config.server_secret),
            ("AGENTGW_ZEGO_CALLBACK_SECRET", config.callback_secret),
            ("AGENTGW_ZEGO_API_BASE", url),
        )
    )
    # StateFile.save is the one atomic 0600 writer.
    persist.StateFile(path).save(text)


async def _serve(
    config: EmulatorConfig, host: str, port: int, state_file: Path | None, secrets_file: Path
) -> None:
    def listening(url: str) -> None:
        write_secrets(secrets_file, config, url)
        logger.info(
            "ZEGO emulator listening",
            extra={
                "url": url,
                "app_id": config.app_id,
                "secrets_file": str(secrets_file),
                "state_file": str(state_file) if state_file else None,
                "callback_url": config.callback_url,
            },
        )
        if host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning("the /_emulator/ admin endpoints are unauthenticated: do not expose %s", host)

    await serve_until_signalled(config, host, port, state_file=state_file, on_listening=listening)
    logger.info("ZEGO emulator stopping")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, resolve the secrets (given, saved or generated), and serve until interrupted."""
    args = _parser().parse_args(argv)
    configure_logging("INFO")
    state = persist.StateFile(args.state_file) if args.state_file else None
    if state is not None and args.fresh:
        state.delete()
    saved = persist.secrets_of(state.load(), args.app_id) if state is not None else None
    server_secret = args.server_secret or (saved[0] if saved else secrets.token_hex(16))
    callback_secret = args.callback_secret or (saved[1] if saved else secrets.token_hex(16))
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
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(config, args.host, args.port, args.state_file, args.secrets_file))
    except (OSError, RuntimeError) as exc:  # EmulatorStartupError (a busy port) is a RuntimeError
        logger.error("cannot start", extra={"error": str(exc), "address": f"{args.host}:{args.port}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
