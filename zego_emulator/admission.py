"""Whether a new instance may start: per-AppId concurrency pools and RTC identities in use (§5.6-§5.8).

RTC identity clashes are asynchronous at ZEGO (spec §6.1): the create succeeds, and then the later
instance fails to publish (a reused AgentStreamId, 1206), or the earlier one is kicked out of the room
(a reused AgentUserId, 1203), or the agent and the user kick each other (AgentUserId == UserId, 1203).
With ``rtc_conflicts="async"`` (the default) :func:`check_admission` returns those outcomes as
:class:`RtcConflict` for the state to play out after the create; ``"strict"`` refuses the create at once
instead, as the emulator did first. A digital human's reused stream id is ZEGO's documented API error
``410001030`` in both modes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import errors
from .config import EmulatorConfig
from .errors import ZegoError, invalid
from .instance import VOICE, Instance
from .schema import CreateBody

__all__ = ["KICKED", "NEW_INSTANCE", "PUBLISH_FAILED", "RtcConflict", "check_admission"]

NEW_INSTANCE = ""
"""``RtcConflict.instance_id`` of the instance being created (its id is not allocated yet)."""
KICKED, PUBLISH_FAILED = 1203, 1206


@dataclass(frozen=True)
class RtcConflict:
    """An instance that will fail after the create: an Exception callback, then its deletion with ``code``."""

    instance_id: str
    code: int
    message: str


def check_admission(
    config: EmulatorConfig, running: Iterable[Instance], body: CreateBody
) -> list[RtcConflict]:
    """Raise the ZegoError a create would get from ZEGO; else return the RTC clashes to play out later."""
    instances = list(running)
    _check_capacity(config, instances, body.kind)
    if config.rtc_conflicts == "strict":
        _check_unique(instances, body)
        return []
    return _conflicts(instances, body)


def _conflicts(instances: list[Instance], body: CreateBody) -> list[RtcConflict]:
    rtc = body.rtc
    if rtc is None:
        return []
    found: list[RtcConflict] = []
    if body.user_id is not None and rtc.agent_user_id == body.user_id:
        found.append(
            RtcConflict(NEW_INSTANCE, KICKED, f"AgentUserId {rtc.agent_user_id} is the user's own UserId")
        )
    for other in instances:
        if other.agent_stream_id == rtc.agent_stream_id:
            if body.kind != VOICE:
                raise ZegoError(
                    errors.DH_STREAM_ID_DUPLICATE,
                    f"RTC.AgentStreamId {rtc.agent_stream_id} is already used by a running instance",
                )
            found.append(
                RtcConflict(
                    NEW_INSTANCE, PUBLISH_FAILED, f"stream {rtc.agent_stream_id} is already published"
                )
            )
        if other.agent_user_id == rtc.agent_user_id:
            found.append(
                RtcConflict(other.instance_id, KICKED, f"AgentUserId {rtc.agent_user_id} logged in elsewhere")
            )
    return found


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
