"""SessionService: a thin adapter from gRPC to ``service.domain.sessions``.

Validation happens here, against request field paths, before anything reaches the domain or
ZEGO; errors are raised and mapped by the interceptor through ``service.api.status``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.api.common import Context, fingerprint, time_budget, validate_request_id
from service.api.convert import (
    asr_from_proto,
    llm_from_proto,
    tts_from_proto,
    validate_asr,
    validate_llm,
    validate_tts,
)
from service.api.event_convert import agent_state
from service.api.paging import PageTokens, page_size
from service.api.session_convert import (
    KIND_FROM_PROTO,
    KIND_TO_PROTO,
    STATE_FROM_PROTO,
    Fields,
    session_fields,
    session_to_proto,
    transition_fields,
    turn_stats_fields,
)
from service.api.session_requests import chat_messages, create_spec, whole_seconds
from service.domain.digital_humans import DigitalHumanCatalog
from service.domain.model import SessionFilter, SessionKind
from service.domain.sessions import SessionService
from service.domain.validation import Violations, parse_label_selector
from service.domain.zego_port import InstanceUpdate, Listening, Priority, SamePriorityOption, Speech, TextTurn

__all__ = ["SessionServicer"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
SPEAK_MAX_CHARS = 300
_UPDATABLE = ("llm", "tts", "asr", "user_stream_id")
_PRIORITY: dict[int, Priority] = {
    api.SPEECH_PRIORITY_LOW: "Low",
    api.SPEECH_PRIORITY_MEDIUM: "Medium",
    api.SPEECH_PRIORITY_HIGH: "High",
}
_SAME_PRIORITY: dict[int, SamePriorityOption] = {
    api.SAME_PRIORITY_OPTION_CLEAR_AND_INTERRUPT: "ClearAndInterrupt",
    api.SAME_PRIORITY_OPTION_ENQUEUE: "Enqueue",
}
_ROLE_TO_PROTO = {"user": spb.CHAT_ROLE_USER, "assistant": spb.CHAT_ROLE_ASSISTANT}


def _session_id(v: Violations, session_id: str) -> None:
    if v.required("session_id", session_id):
        v.max_chars("session_id", session_id, 64)


def _speech_options(
    v: Violations, priority: int, same: int
) -> tuple[Priority | None, SamePriorityOption | None]:
    v.check(priority == 0 or priority in _PRIORITY, "priority", "is not a known priority")
    v.check(same == 0 or same in _SAME_PRIORITY, "same_priority_option", "is not a known option")
    return _PRIORITY.get(priority), _SAME_PRIORITY.get(same)


class SessionServicer(rpc.SessionServiceServicer):
    """gRPC face of the session lifecycle and in-call control."""

    def __init__(
        self,
        sessions: SessionService,
        page_tokens: PageTokens,
        *,
        max_duration_cap_seconds: int,
        on_api_turn: Callable[[str, str, int, float], None] | None = None,
        budget_seconds: float = 1.5,
        digital_humans: DigitalHumanCatalog | None = None,
    ) -> None:
        self._digital_humans = digital_humans
        self._sessions = sessions
        self._tokens = page_tokens
        self._cap = max_duration_cap_seconds
        self._on_api_turn = on_api_turn
        self._budget = budget_seconds

    def _api_turn(self, session_id: str, trigger: str, round_: int, started_at: float) -> None:
        """Tell the latency tracker when an API-triggered turn started and which Round it got."""
        if self._on_api_turn is not None and round_:
            self._on_api_turn(session_id, trigger, round_, started_at)

    # --- lifecycle --------------------------------------------------------------------------------

    async def CreateSession(
        self, request: api.CreateSessionRequest, context: Context
    ) -> api.CreateSessionResponse:
        spec = create_spec(request, max_duration_cap_seconds=self._cap, request_hash=fingerprint(request))
        if spec.digital_human is not None and self._digital_humans is not None:
            # Before any reservation or create: an unknown avatar is NOT_FOUND and spends nothing.
            await self._digital_humans.require(
                spec.digital_human.digital_human_id, timeout=time_budget(context)
            )
        record = await self._sessions.create(spec, timeout=time_budget(context))
        return api.CreateSessionResponse(session=session_to_proto(record))

    async def GetSession(self, request: api.GetSessionRequest, context: Context) -> api.GetSessionResponse:
        v = Violations()
        _session_id(v, request.session_id)
        v.raise_if_any()
        record, transitions, stats = await self._sessions.view(request.session_id)
        session = session_fields(record)
        session["turn_stats"] = turn_stats_fields(stats, self._budget)
        # One constructor call builds the whole response from the nested fields.
        response: Fields = {"session": session, "transitions": [transition_fields(t) for t in transitions]}
        return api.GetSessionResponse(**response)

    async def ListSessions(
        self, request: api.ListSessionsRequest, context: Context
    ) -> api.ListSessionsResponse:
        v = Violations()
        for i, state in enumerate(request.states):
            v.check(state in STATE_FROM_PROTO, f"states[{i}]", "is not a known state")
        for i, kind in enumerate(request.kinds):
            v.check(kind in KIND_FROM_PROTO, f"kinds[{i}]", "is not a known kind")
        v.raise_if_any()
        flt = SessionFilter(
            states=frozenset(STATE_FROM_PROTO[s] for s in request.states),
            kinds=frozenset(KIND_FROM_PROTO[k] for k in request.kinds),
            agent_id=request.agent_id,
            room_id=request.room_id,
            label_selector=parse_label_selector(request.label_selector),
            possible_leak_only=request.possible_leak,
        )
        size = page_size(request.page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        # Canonical (sorted) so a token stays valid across processes, whatever set order they use.
        canonical = [
            sorted(s.value for s in flt.states),
            sorted(k.value for k in flt.kinds),
            flt.agent_id,
            flt.room_id,
            [[r.key, r.op.value, r.value] for r in flt.label_selector],
        ]
        if flt.possible_leak_only:  # appended only when set, so tokens issued before it stay valid
            canonical.append("possible_leak")
        filter_hash = hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:16]
        after = None
        if request.page_token:
            created_at, session_id = self._tokens.decode(request.page_token, filter_hash)
            after = (float(created_at), str(session_id))
        # One extra row says whether another page exists, so the last page has no token.
        rows = await self._sessions.list_sessions(flt, size + 1, after)
        page, more = rows[:size], len(rows) > size
        token = self._tokens.encode([page[-1].created_at, page[-1].session_id], filter_hash) if more else ""
        return api.ListSessionsResponse(sessions=[session_to_proto(r) for r in page], next_page_token=token)

    async def EndSession(self, request: api.EndSessionRequest, context: Context) -> api.EndSessionResponse:
        v = Violations()
        _session_id(v, request.session_id)
        validate_request_id(v, request.request_id)
        graceful_timeout = None
        if request.HasField("graceful_timeout"):
            v.check(request.graceful, "graceful_timeout", "is only used with graceful=true")
            graceful_timeout = whole_seconds(v, "graceful_timeout", request.graceful_timeout, 1, 120)
        v.raise_if_any()
        record = await self._sessions.end(
            request.session_id,
            graceful=request.graceful,
            graceful_timeout_seconds=graceful_timeout,
            timeout=time_budget(context),
        )
        return api.EndSessionResponse(session=session_to_proto(record))

    async def UpdateSession(
        self, request: api.UpdateSessionRequest, context: Context
    ) -> api.UpdateSessionResponse:
        v = Violations()
        _session_id(v, request.session_id)
        paths = list(request.update_mask.paths)
        v.check(bool(paths), "update_mask", "must name at least one of llm, tts, asr, user_stream_id")
        for i, path in enumerate(paths):
            v.check(path in _UPDATABLE, f"update_mask.paths[{i}]", f"{path!r} cannot be updated on a session")
        if "llm" in paths:
            validate_llm(v, "llm", request.llm)
        if "asr" in paths:
            validate_asr(v, "asr", request.asr)
        if "tts" in paths:
            validate_tts(v, "tts", request.tts)
            # ZEGO spec §5.9: these are fixed for the life of the instance.
            v.check(not request.tts.filter_texts, "tts.filter_texts", "cannot change on a running session")
            v.check(
                not request.tts.terminator_text, "tts.terminator_text", "cannot change on a running session"
            )
            v.check(
                not request.tts.character_filters,
                "tts.character_filters",
                "cannot change on a running session",
            )
        if "user_stream_id" in paths:
            v.rtc_id("user_stream_id", request.user_stream_id)
        v.raise_if_any()
        update = InstanceUpdate(
            llm=llm_from_proto(request.llm) if "llm" in paths else None,
            tts=tts_from_proto(request.tts) if "tts" in paths else None,
            asr=asr_from_proto(request.asr) if "asr" in paths else None,
            user_stream_id=request.user_stream_id if "user_stream_id" in paths else None,
        )
        record = await self._sessions.update_instance(
            request.session_id, update, timeout=time_budget(context)
        )
        return api.UpdateSessionResponse(session=session_to_proto(record))

    # --- in-call control --------------------------------------------------------------------------

    async def SendText(self, request: api.SendTextRequest, context: Context) -> api.SendTextResponse:
        started = time.time()
        v = Violations()
        _session_id(v, request.session_id)
        v.required("text", request.text)
        priority, same = _speech_options(v, request.priority, request.same_priority_option)
        v.raise_if_any()
        turn = TextTurn(
            text=request.text,
            system_prompt=request.system_prompt or None,
            add_question_to_history=request.add_question_to_history
            if request.HasField("add_question_to_history")
            else None,
            add_answer_to_history=request.add_answer_to_history
            if request.HasField("add_answer_to_history")
            else None,
            priority=priority,
            same_priority_option=same,
        )
        round_ = await self._sessions.send_text(request.session_id, turn, timeout=time_budget(context))
        self._api_turn(request.session_id, "send_text", round_, started)
        return api.SendTextResponse(round=round_)

    async def Speak(self, request: api.SpeakRequest, context: Context) -> api.SpeakResponse:
        started = time.time()
        v = Violations()
        _session_id(v, request.session_id)
        if v.required("text", request.text):
            v.max_chars("text", request.text, SPEAK_MAX_CHARS)
        priority, same = _speech_options(v, request.priority, request.same_priority_option)
        v.raise_if_any()
        speech = Speech(
            text=request.text,
            add_history=request.add_history if request.HasField("add_history") else None,
            priority=priority,
            same_priority_option=same,
        )
        round_ = await self._sessions.speak(request.session_id, speech, timeout=time_budget(context))
        self._api_turn(request.session_id, "speak", round_, started)
        return api.SpeakResponse(round=round_)

    async def Interrupt(self, request: api.InterruptRequest, context: Context) -> api.InterruptResponse:
        self._require_session(request.session_id)
        round_ = await self._sessions.interrupt(request.session_id, timeout=time_budget(context))
        return api.InterruptResponse(round=round_)

    async def GetAgentStatus(
        self, request: api.GetAgentStatusRequest, context: Context
    ) -> api.GetAgentStatusResponse:
        self._require_session(request.session_id)
        status = await self._sessions.agent_status(request.session_id, timeout=time_budget(context))
        return api.GetAgentStatusResponse(status=agent_state(status))

    async def GetContext(self, request: api.GetContextRequest, context: Context) -> api.GetContextResponse:
        self._require_session(request.session_id)
        data = await self._sessions.context(request.session_id, timeout=time_budget(context))
        return api.GetContextResponse(
            messages=[
                spb.ChatMessage(
                    role=_ROLE_TO_PROTO.get(msg.role, spb.CHAT_ROLE_UNSPECIFIED), content=msg.content
                )
                for msg in data.messages
            ],
            total_size=data.total,
        )

    async def ResetContext(
        self, request: api.ResetContextRequest, context: Context
    ) -> api.ResetContextResponse:
        self._require_session(request.session_id)
        await self._sessions.reset_context(request.session_id, timeout=time_budget(context))
        return api.ResetContextResponse()

    async def AppendContext(
        self, request: api.AppendContextRequest, context: Context
    ) -> api.AppendContextResponse:
        v = Violations()
        _session_id(v, request.session_id)
        v.check(len(request.messages) > 0, "messages", "at least one message is required")
        messages = chat_messages(v, "messages", list(request.messages))
        v.raise_if_any()
        await self._sessions.append_context(request.session_id, messages, timeout=time_budget(context))
        return api.AppendContextResponse()

    async def StartListening(
        self, request: api.StartListeningRequest, context: Context
    ) -> api.StartListeningResponse:
        listening = self._listening(request.session_id, request.sequence, request.user_id)
        round_ = await self._sessions.start_listening(
            request.session_id, listening, timeout=time_budget(context)
        )
        return api.StartListeningResponse(round=round_)

    async def StopListening(
        self, request: api.StopListeningRequest, context: Context
    ) -> api.StopListeningResponse:
        listening = self._listening(request.session_id, request.sequence, request.user_id)
        round_ = await self._sessions.stop_listening(
            request.session_id, listening, timeout=time_budget(context)
        )
        return api.StopListeningResponse(round=round_)

    async def GetCapacity(self, request: api.GetCapacityRequest, context: Context) -> api.GetCapacityResponse:
        pools = []
        for cap in await self._sessions.capacity():
            kinds = [KIND_TO_PROTO[k] for k in SessionKind if k.pool == cap.pool]
            pools.append(
                api.PoolCapacity(
                    pool=cap.pool,
                    kinds=kinds,
                    limit=cap.limit,
                    in_use=cap.in_use,
                    pending=cap.pending,
                    suspect=cap.suspect,
                )
            )
        callers = []
        for name, usage in sorted((await self._sessions.usage_by_owner()).items()):
            voice_quota, dh_quota = self._sessions.quota_for(name)
            callers.append(
                api.CallerUsage(
                    caller=name,
                    voice_in_use=usage.get("voice", 0),
                    voice_quota=voice_quota,
                    digital_human_in_use=usage.get("digital_human", 0),
                    digital_human_quota=dh_quota,
                )
            )
        return api.GetCapacityResponse(pools=pools, callers=callers)

    # --- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _require_session(session_id: str) -> None:
        v = Violations()
        _session_id(v, session_id)
        v.raise_if_any()

    @staticmethod
    def _listening(session_id: str, sequence: int, user_id: str) -> Listening:
        v = Violations()
        _session_id(v, session_id)
        v.check(sequence > 0, "sequence", "must be a positive, increasing number")
        v.user_id("user_id", user_id, required=False)
        v.raise_if_any()
        return Listening(sequence=sequence, user_id=user_id or None)
