"""The bundled ZEGO AI Agent emulator: ZEGO's wire protocol, codes and limits, served over HTTP, with the
Digital Human API's asset actions under ``/digitalhuman`` (docs/zego-digital-human-api.md).

It is a product feature, not a mock: the gateway reaches it only over HTTP, exactly as it would reach
ZEGO, and it calls back over HTTP: signed server callbacks (spec §8) with ZEGO's retry policy, produced
by a conversation engine that follows spec §9's orders. Run it standalone with
``python -m zego_emulator`` or embed it with :func:`run_emulator`.

Public API:

* :class:`EmulatorConfig`: the emulated project (AppId, secrets, limits, time scale, callback URL, latency
  distributions, automatic turns).
* :func:`create_app`: the Starlette app (for custom serving).
* :func:`run_emulator`: serve it in the current event loop; yields the base URL.
* :class:`EventSink`: the seam through which internal events leave (:class:`CallbackDeliverer` is one).
* :class:`EmulatorClient`: signed ZEGO calls and the typed ``/_emulator/`` admin API of a running
  emulator; :func:`zego_emulator.testing.emulator_for` starts one on a free loopback port and yields
  its client (as ``grpclib.testing.ChannelFor`` does for a channel).

It imports nothing of the gateway but the shared signing (``service.zego.signing``, pinned by the
known-answer tests), Token04 verification and the embedded-uvicorn helper; the gateway imports it
only when it starts its embedded emulator (tests/emulator/test_package.py holds both rules).

Emulated time: every delay is multiplied by ``time_scale``, but callback ``Timestamp`` values carry the
unscaled emulated times (see :mod:`.timeline`): at ``time_scale=0.01`` a 2100 ms SPEAK_END -> SPEAKING gap
takes 21 ms of real time and still shows as 2100 ms between the two Timestamps.

Behaviour ZEGO does not document, chosen here ([INFER] in docs/zego-ai-agent-api.md terms):

* Every answer is HTTP 200 with the envelope; ``Data`` is ``null`` on success without data and absent on
  errors (``error_envelope_data`` adds ``"Data": null`` to errors). Signatures must be lowercase hex
  (``signature_case_sensitive``). Empty query values count as missing; a doubled ``?`` is tolerated; GET
  is accepted like POST.
* The per-action rate limit answers ``rate_limit_code`` (default 410001029) and is checked after the body
  schema, as spec §16 orders it. Injected faults apply after the signature checks.
* Unknown body fields are ignored; ``null`` is absent everywhere; ``RtcInfo`` is an alias of ``RTC``; TTS and
  ASR vendor names match case-insensitively (ZEGO's own examples spell them "Minimax", "Bytedance") and are
  stored and read back exactly as sent, unknown nested keys included.
* An instance needs an LLM (except live) and a TTS (unless DisableTTS), from the request or the agent.
* A duplicate ``AgentStreamId`` is 410001030 for digital humans. For voice, and for a duplicate
  ``AgentUserId`` or one equal to ``UserId``, the create succeeds and the clash plays out as ZEGO documents:
  an Exception callback, then the instance's end (1206 for the later stream, 1203 for the kicked instance);
  ``rtc_conflicts="strict"`` refuses such creates with 410000003 instead.
* Create*DigitalHumanAgentInstance checks the id against the catalogue: unknown 410001027, another app's
  410001048 (``check_digital_human_ids``). Beyond the digital-human pool: ``digital_human_concurrency_code``.
* DisableTTS on CreateDigitalHumanAgentInstance is 410001028; changing TTS.Vendor/FilterText/
  TerminatorText/CharacterFilter in UpdateAgentInstance is 410001011 (omitting one counts as a change).
* Digital-human and live digital-human instances share one concurrency pool. Live instances refuse LLM,
  Interrupt, Start/StopListening and the message-list actions (410001049); TTS, Update, Query and Delete work.
  A CDN live instance returns ``DigitalHumanConfig`` with an empty ``Streams`` list.
* A graceful DeleteAgentInstance answers at once; the instance goes when IDLE (queue drained) or at the
  timeout, and meanwhile every action on it, Delete included, is 410001041.
* Priorities: a higher one interrupts; the same one with ClearAndInterrupt clears the queue and interrupts;
  Enqueue or a lower one waits (at most 5 pending, else 410001007). AddHistory records TTS text when accepted.
* Walkie-talkie: the first call must be StartListening; Start/Stop alternate per user; a Sequence, when sent,
  must grow (410001043). 410001046 applies to StartListening only. StartListening cuts the agent (Reason 1)
  and StopListening's Round is the one StartListening opened. InterruptAgentInstance also ends listening.
* The creating user counts as present at creation unless an admin call said otherwise; a live instance idles
  out after MaxIdleTime without SendAgentInstanceTTS. Both delete with Code 1202.
* UnregisterAgent leaves running instances alone; QueryAgents skips unknown ids; SyncMode 0 (ZIM) history
  starts empty; emulated speech (agent or simulated user) lasts 0.5 s + 0.06 s per character.
* Callbacks: a retry resends the identical body unless ``callback_retry_resign``; ``HostTag`` is ignored (one
  URL); a missing AgentUserId/RoomId/Name (CDN live instance) is sent as ``""``. AgentInstanceCreated is
  always an instance's first callback (it is sent early if another event comes before its delay ends).
* Conversation: the status does not change while the user speaks or ASR runs; every Interrupted is followed
  by IDLE for the cut round if it had reached THINKING/SPEAKING; SendAgentInstanceTTS speaks at once (no
  first-frame delay); all LLMResult sentences are stamped at the first token; UserAudioData is one second of
  PCM silence at SPEAK_END (turns of 1 s or more). User speech does not cut High priority content or an
  instance with InterruptMode 1 (the admin turn is refused with 409) and otherwise clears the queue too.
  An Exception report changes nothing else. LatencyData averages LLM-answered rounds (user turns,
  SendAgentInstanceLLM, walkie-talkie replies) and is all zeros, never absent, when there were none.
"""

from __future__ import annotations

from .app import create_app
from .callbacks import CallbackDeliverer
from .client import EmulatorAdminError, EmulatorClient, TokenVerdict, ZegoCallError
from .config import EmulatorConfig
from .events import EventSink, RecordingEventSink
from .server import EmulatorStartupError, run_emulator

__all__ = [
    "CallbackDeliverer",
    "EmulatorAdminError",
    "EmulatorClient",
    "EmulatorConfig",
    "EmulatorStartupError",
    "EventSink",
    "RecordingEventSink",
    "TokenVerdict",
    "ZegoCallError",
    "create_app",
    "run_emulator",
]
