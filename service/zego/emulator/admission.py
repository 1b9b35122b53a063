"""Whether a new instance may start: per-AppId concurrency pools and RTC identities in use (§5.6-§5.8)."""

from __future__ import annotations

from collections.abc import Iterable

from . import errors
from .config import EmulatorConfig
from .errors import ZegoError, invalid
from .instance import VOICE, Instance
from .schema import CreateBody

__all__ = ["check_admission"]


def check_admission(config: EmulatorConfig, running: Iterable[Instance], body: CreateBody) -> None:
    """Raise the ZegoError a create would get from ZEGO, or return if it may start."""
    instances = list(running)
    _check_capacity(config, instances, body.kind)
    _check_unique(instances, body)


def _check_capacity(config: EmulatorConfig, instances: list[Instance], kind: str) -> None:
    if kind == VOICE:
        if sum(1 for i in instances if i.kind == VOICE) >= config.voice_instance_limit:
            raise ZegoError(
                errors.APP_INSTANCE_LIMIT,
                f"concurrent agent instance limit ({config.voice_instance_limit}) reached",
            )
        return
    # Interactive and live digital humans share one pool (spec §5.8 [INFER]).
    if sum(1 for i in instances if i.kind != VOICE) >= config.digital_human_instance_limit:
        raise ZegoError(
            config.digital_human_concurrency_code,
            f"digital-human concurrency limit ({config.digital_human_instance_limit}) reached",
        )


def _check_unique(instances: list[Instance], body: CreateBody) -> None:
    rtc = body.rtc
    if rtc is None:
        return
    if body.user_id is not None and rtc.agent_user_id == body.user_id:
        raise invalid("RTC.AgentUserId must differ from UserId")
    for other in instances:
        if other.agent_stream_id == rtc.agent_stream_id:
            # ZEGO: the later instance fails to publish; for digital humans that is 410001030. For voice
            # no code is documented, so [INFER] reject up front with 410000003 naming the field.
            message = f"RTC.AgentStreamId {rtc.agent_stream_id} is already used by a running instance"
            raise ZegoError(
                errors.DH_STREAM_ID_DUPLICATE if body.kind != VOICE else errors.INVALID_PARAMETER, message
            )
        if other.agent_user_id == rtc.agent_user_id:
            # ZEGO would kick the earlier instance out of the room (1203); [INFER] the emulator refuses
            # the new one instead, so the mistake surfaces as an API error the caller can see.
            raise invalid(f"RTC.AgentUserId {rtc.agent_user_id} is already used by a running instance")
