"""The emulator's in-memory model of one ZEGO AppId: agents, running instances, rooms and Rounds.

All methods are synchronous and run on the emulator's event loop, so no locking is needed. Emulated time
passes lazily: :meth:`EmulatorState.advance` runs every due transition (conversation steps, the delayed
AgentInstanceCreated, graceful shutdown, MaxIdleTime, automatic user turns) and is called before each request
and periodically by :func:`run_ticker`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from . import errors
from .admission import NEW_INSTANCE, RtcConflict, check_admission
from .agents import Agent, AgentRegistry
from .config import EmulatorConfig
from .conversation import Conversation
from .digital_humans import Catalogue, check_create_id
from .errors import ZegoError, invalid
from .events import EventSink, RecordingEventSink
from .ids import RoundAllocator, SnowflakeIds
from .instance import DIGITAL_HUMAN, IDLE, LISTENING, LIVE_DIGITAL_HUMAN, VOICE, Emit, Instance
from .latency import LatencySampler
from .rooms import Rooms
from .schema import CreateBody, DeleteBody, ListenBody, SpeakBody, UpdateInstanceBody
from .timeline import SimClock, Timing
from .validation import Json

__all__ = ["EmulatorState", "run_ticker"]

logger = logging.getLogger(__name__)

# TTS fields that UpdateAgentInstance may not change (spec §5.9).
IMMUTABLE_TTS_FIELDS = ("Vendor", "FilterText", "TerminatorText", "CharacterFilter")

DELETED_BY_API, DELETED_USER_ABSENT = 0, 1202


class EmulatorState:
    """Agents and instances of the emulated AppId, with ZEGO's limits and codes."""

    def __init__(
        self,
        config: EmulatorConfig,
        sink: EventSink | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.agents = AgentRegistry()
        self.instances: dict[str, Instance] = {}
        self.recorder = RecordingEventSink(forward=sink)
        self.rooms = Rooms()
        self._clock = clock
        self._instance_ids = SnowflakeIds(worker=1)
        self._request_ids = SnowflakeIds(worker=2)
        self._rounds = RoundAllocator(rng)
        self.timing = Timing(config.time_scale)
        self.latencies = LatencySampler(config)
        self.conversation = Conversation(self)
        """Simulated user turns, automatic turns and reported exceptions."""
        self._doomed: dict[str, tuple[float, RtcConflict]] = {}
        """Instances an RTC clash will end (admission.RtcConflict), with when it happens."""
        self.catalogue = Catalogue(config.app_id, config.digital_humans, config.timbres, clock=time.time)
        """The Digital Human API's avatars and timbres (wall clock: AvatarUrl expiries are real times)."""

    # --- plumbing -------------------------------------------------------------------------------

    def new_request_id(self) -> str:
        """A 19-digit numeric RequestId."""
        return self._request_ids.next()

    def new_round(self) -> int:
        """The next Round of this AppId."""
        return self._rounds.next()

    def now(self) -> float:
        """The state's monotonic clock (real seconds)."""
        return self._clock()

    def _emitter(self, instance_id: str) -> Emit:
        return lambda event, data, ms: self.recorder.emit(instance_id, event, data, ms)

    def describe(self, instance_id: str) -> Json | None:
        """Envelope facts of a running instance (for a callback deliverer and the admin view)."""
        inst = self.instances.get(instance_id)
        return inst.describe() if inst is not None else None

    def instance(self, instance_id: str) -> Instance:
        """A running instance: unknown -> 410001002; gracefully shutting down -> 410001041."""
        inst = self.instances.get(instance_id)
        if inst is None:
            raise ZegoError(errors.INSTANCE_NOT_FOUND, f"agent instance {instance_id} does not exist")
        if inst.shutting_down:
            raise ZegoError(
                errors.GRACEFUL_SHUTDOWN_IN_PROGRESS, f"agent instance {instance_id} is shutting down"
            )
        return inst

    def _controllable(self, instance_id: str) -> Instance:
        """An instance that accepts conversation control (live digital humans do not: 410001049)."""
        inst = self.instance(instance_id)
        if inst.kind == LIVE_DIGITAL_HUMAN:
            raise ZegoError(
                errors.LIVE_DH_API_FORBIDDEN,
                f"agent instance {instance_id} is a live digital human; only SendAgentInstanceTTS, "
                "UpdateAgentInstance, QueryAgentInstanceStatus and DeleteAgentInstance are allowed",
            )
        return inst

    def _remove(self, inst: Instance, code: int) -> None:
        # Emitted before removal so a sink can still describe() the instance.
        inst.deleted(code, self._clock())
        del self.instances[inst.instance_id]

    # --- time -----------------------------------------------------------------------------------

    def advance(self) -> None:
        """Run every transition due by now: speech, graceful shutdowns and MaxIdleTime deletions."""
        now = self._clock()
        self._play_conflicts(now)
        for inst in list(self.instances.values()):
            inst.advance(now)
            if inst.shutdown_deadline is not None:
                if (inst.status == IDLE and inst.current is None) or now >= inst.shutdown_deadline:
                    self._remove(inst, DELETED_BY_API)
                continue
            if self._idle_expired(inst, now):
                self._remove(inst, DELETED_USER_ABSENT)
        self.conversation.auto_turns(now)

    def _idle_expired(self, inst: Instance, now: float) -> bool:
        limit = self.config.scaled(inst.max_idle_seconds)
        if inst.kind == LIVE_DIGITAL_HUMAN:
            # A live instance ends when SendAgentInstanceTTS has not been called for MaxIdleTime (§5.8).
            return inst.status == IDLE and now - max(inst.last_tts_at, inst.created_at) >= limit
        assert inst.room_id is not None and inst.user_id is not None
        since = self.rooms.absent_since(inst.room_id, inst.user_id)
        return since is not None and now - max(since, inst.created_at) >= limit

    # --- rooms (admin) --------------------------------------------------------------------------

    def set_room_user(
        self, room_id: str, user_id: str, *, present: bool | None, publishing: bool | None
    ) -> Json:
        """Mark a user present/absent and publishing or not in a room (admin API)."""
        return self.rooms.set(room_id, user_id, self._clock(), present=present, publishing=publishing)

    # --- instances ------------------------------------------------------------------------------

    def create_instance(self, body: CreateBody) -> Json:
        """The three Create*AgentInstance actions."""
        agent, llm, tts, asr = self._resolve_configs(body)
        conflicts = check_admission(self.config, self.instances.values(), body)
        now = self._clock()
        inst = self._new_instance(body, agent, (llm, tts, asr), now)
        rtc = body.rtc
        if rtc is not None and body.user_id is not None:
            self.rooms.joined(rtc.room_id, body.user_id, now)
        data: Json = {"AgentInstanceId": inst.instance_id}
        if body.digital_human is not None:
            data["DigitalHumanConfig"] = body.digital_human.client_config(rtc)
        self.instances[inst.instance_id] = inst
        # The clash shows once the new agent is in the room and publishing (its AgentInstanceCreated).
        due = now + self.timing.real(self.config.created_callback_delay_ms)
        for conflict in conflicts:
            victim = inst.instance_id if conflict.instance_id == NEW_INSTANCE else conflict.instance_id
            self._doomed[victim] = (due, conflict)
        return data

    def _resolve_configs(self, body: CreateBody) -> tuple[Agent, Json | None, Json | None, Json | None]:
        """The registered agent and the LLM/TTS/ASR the instance runs with (the request's, else the
        agent's), or the ZEGO error a create with what is missing gets."""
        if body.kind == DIGITAL_HUMAN and body.disable_tts:
            # [INFER] 410001028 (digital-human creation failed): a talking avatar needs speech (§6.9).
            raise ZegoError(
                errors.DH_CREATE_FAILED, "AdvancedConfig.DisableTTS cannot be true for a digital human"
            )
        agent = self.agents.get(body.agent_id)
        llm = body.llm or agent.llm
        tts = body.tts or agent.tts
        asr = body.asr or agent.asr
        if body.kind != LIVE_DIGITAL_HUMAN and llm is None:
            raise invalid("LLM is required: neither the agent nor the request sets it")
        if not body.disable_tts and tts is None:
            raise invalid("TTS is required: neither the agent nor the request sets it")
        if body.digital_human is not None and self.config.check_digital_human_ids:
            check_create_id(self.catalogue, body.digital_human.digital_human_id)
        return agent, llm, tts, asr

    def _new_instance(
        self,
        body: CreateBody,
        agent: Agent,
        configs: tuple[Json | None, Json | None, Json | None],
        now: float,
    ) -> Instance:
        llm, tts, asr = configs
        default_idle = (
            self.config.live_default_max_idle_seconds
            if body.kind == LIVE_DIGITAL_HUMAN
            else self.config.default_max_idle_seconds
        )
        rtc = body.rtc
        instance_id = self._instance_ids.next()
        return Instance(
            instance_id=instance_id,
            kind=body.kind,
            agent_id=agent.agent_id,
            agent_name=agent.name,
            user_id=body.user_id,
            room_id=rtc.room_id if rtc else None,
            agent_stream_id=rtc.agent_stream_id if rtc else None,
            agent_user_id=rtc.agent_user_id if rtc else None,
            user_stream_id=rtc.user_stream_id if rtc else None,
            cdn_url=body.cdn_url,
            llm=llm,
            tts=tts,
            asr=asr,
            callback_config=body.callback_config,
            max_idle_seconds=body.max_idle_seconds or default_idle,
            disable_tts=body.disable_tts,
            communication_mode=body.communication_mode,
            created_at=now,
            emit=self._emitter(instance_id),
            timing=self.timing,
            clock=SimClock(self.config.time_scale, now),
            # ZEGO sends AgentInstanceCreated once the agent is in the room and publishing.
            created_due=now + self.timing.real(self.config.created_callback_delay_ms),
            interrupt_mode=body.interrupt_mode,
            meta_keys=list(body.meta_keys),
            tokens_per_second=self.config.llm_tokens_per_second,
            messages=[dict(m) for m in body.history],
            next_auto_turn_at=now + self.config.scaled(self.config.auto_turn_interval_seconds or 0.0),
        )

    def _play_conflicts(self, now: float) -> None:
        for instance_id, (due, conflict) in list(self._doomed.items()):
            inst = self.instances.get(instance_id)
            if inst is None:
                del self._doomed[instance_id]
            elif now >= due:
                del self._doomed[instance_id]
                inst.advance(now)
                inst.report_exception(conflict.code, conflict.message, None, now)
                self._remove(inst, conflict.code)

    def update_instance(self, body: UpdateInstanceBody) -> None:
        """UpdateAgentInstance: LLM/TTS/ASR replaced whole; some TTS fields are immutable (410001011)."""
        inst = self.instance(body.instance_id)
        if body.tts is not None and inst.tts is not None:
            for name in IMMUTABLE_TTS_FIELDS:
                if body.tts.get(name) != inst.tts.get(name):
                    raise ZegoError(errors.INSTANCE_UPDATE_FAILED, f"TTS.{name} cannot be updated")
        if body.user_stream_id is not None and inst.kind == LIVE_DIGITAL_HUMAN:
            raise invalid("RTC.UserStreamId does not apply to a live digital-human instance")
        if body.llm is not None:
            inst.llm = body.llm
        if body.tts is not None:
            inst.tts = body.tts
        if body.asr is not None:
            inst.asr = body.asr
        if body.user_stream_id is not None:
            inst.user_stream_id = body.user_stream_id

    def delete_instance(self, body: DeleteBody) -> None:
        """DeleteAgentInstance. A graceful one returns at once and finishes when IDLE or at the timeout."""
        inst = self.instance(body.instance_id)
        if not body.graceful or (inst.status == IDLE and inst.current is None):
            self._remove(inst, DELETED_BY_API)
            return
        inst.shutdown_deadline = self._clock() + self.config.scaled(body.timeout_seconds)

    def speak(self, body: SpeakBody) -> Json:
        """SendAgentInstanceLLM / SendAgentInstanceTTS -> ``{Round}``."""
        inst = self._controllable(body.instance_id) if body.llm else self.instance(body.instance_id)
        if not body.llm and inst.disable_tts:
            raise ZegoError(errors.SEND_TTS_FAILED, "TTS is disabled (AdvancedConfig.DisableTTS)")
        if inst.status == LISTENING:
            raise ZegoError(errors.AGENT_LISTENING, "the agent is listening (walkie-talkie mode)")
        now = self._clock()
        round_ = inst.speak(
            text=body.text,
            llm=body.llm,
            priority=body.priority,
            enqueue=body.enqueue,
            add_answer=body.add_answer,
            new_round=self.new_round,
            now=now,
            latency=self.latencies.sample(),
        )
        if body.llm and body.add_question:
            inst.add_message("user", body.text)
        if not body.llm:
            inst.last_tts_at = now
            if body.add_answer:
                # [INFER] AddHistory records the text when the request is accepted, not when it is played.
                inst.add_message("assistant", body.text)
        return {"Round": round_}

    def query_status(self, instance_id: str) -> Json:
        """QueryAgentInstanceStatus -> ``{Status}``."""
        return {"Status": self.instance(instance_id).status}

    def interrupt(self, instance_id: str) -> Json:
        """InterruptAgentInstance -> ``{Round}`` of the interrupted round, or a new one if nothing ran."""
        inst = self._controllable(instance_id)
        return {"Round": inst.interrupt(self.new_round, self._clock())}

    def get_messages(self, instance_id: str) -> Json:
        """GetAgentInstanceMsgList -> ``{Total, MessageList}``."""
        inst = self._controllable(instance_id)
        return {"Total": len(inst.messages), "MessageList": [dict(m) for m in inst.messages]}

    def reset_messages(self, instance_id: str) -> None:
        """ResetAgentInstanceMsgList."""
        self._controllable(instance_id).messages.clear()

    def add_messages(self, instance_id: str, messages: list[Json]) -> None:
        """AddAgentInstanceMsg: appends to the context; no LLM call, no Round."""
        inst = self._controllable(instance_id)
        for m in messages:
            inst.add_message(m["Role"], m["Content"])

    def listen(self, body: ListenBody) -> Json:
        """StartListening / StopListening (walkie-talkie mode only) -> ``{Round}``."""
        inst = self._controllable(body.instance_id)
        if inst.communication_mode != 2:
            raise ZegoError(errors.NOT_WALKIE_TALKIE, "not in walkie-talkie mode (CommunicationMode=2)")
        user = body.user_id or inst.user_id or ""
        last_seq, last_was_start = inst.listen_state.get(user, (None, False))
        if body.sequence is not None and last_seq is not None and body.sequence <= last_seq:
            raise ZegoError(errors.STALE_SEQUENCE, f"Sequence {body.sequence} is not greater than {last_seq}")
        if body.start == last_was_start:
            expected = "StopListening" if last_was_start else "StartListening"
            raise ZegoError(errors.STALE_SEQUENCE, f"out of order: the next call must be {expected}")
        if body.start:
            if not self.rooms.publishing(inst.room_id or "", user):
                raise ZegoError(errors.USER_NOT_PUBLISHING, f"user {user} is not publishing a stream yet")
        inst.listen_state[user] = (body.sequence if body.sequence is not None else last_seq, body.start)
        now = self._clock()
        if body.start:
            round_ = self.new_round()
            inst.start_listening(round_, now)
        else:
            round_ = inst.stop_listening(user, self.new_round, now, self.latencies.sample())
        return {"Round": round_}

    # --- admin ----------------------------------------------------------------------------------

    def snapshot(self) -> Json:
        """The whole state for ``GET /_emulator/state`` (no secrets, no LLM keys)."""
        kinds = [i.kind for i in self.instances.values()]
        return {
            "app_id": self.config.app_id,
            "agents": self.agents.names(),
            "instances": [i.describe() for i in self.instances.values()],
            "counts": {
                "agents": len(self.agents),
                "instances": len(kinds),
                VOICE: kinds.count(VOICE),
                DIGITAL_HUMAN: kinds.count(DIGITAL_HUMAN),
                LIVE_DIGITAL_HUMAN: kinds.count(LIVE_DIGITAL_HUMAN),
            },
            "limits": {
                VOICE: self.config.voice_instance_limit,
                "digital_human_pool": self.config.digital_human_instance_limit,
            },
            "rooms": self.rooms.snapshot(),
        }

    def reset(self) -> None:
        """Forget agents, instances, rooms and events (silently: no deletion events). Rounds keep rising."""
        self.agents.clear()
        self.instances.clear()
        self._doomed.clear()
        self.rooms.clear()
        self.recorder.clear()


async def run_ticker(state: EmulatorState, interval: float = 0.05) -> None:
    """Advance emulated time forever (until cancelled), so idle deletions happen without requests."""
    while True:
        try:
            state.advance()
        except Exception:
            # A bug in one transition must not stop time for every other instance.
            logger.exception("emulator ticker failed; continuing")
        await asyncio.sleep(interval)
