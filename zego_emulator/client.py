"""An async client for a running emulator: signed ZEGO calls, and the ``/_emulator/`` admin API typed.

It ships with the emulator (as grpclib ships ``grpclib.testing.ChannelFor``), so the tests, the demo,
the bench, the chaos harness and the gateway drive an emulator through one client instead of each
writing URLs by hand. :func:`~.testing.emulator_for` starts an emulator and hands you one::

    async with emulator_for(config) as emulator:
        await emulator.set_callback_url("http://127.0.0.1:8080/v1/zego/callbacks")
        data = await emulator.ok("RegisterAgent", {...})
        turn = await emulator.user_turn(instance_id, "Hello?", asr_ms=300)

For an emulator in another process, build it from the AppId and ServerSecret it runs with:
``EmulatorClient(url, app_id=..., server_secret=...)``, or from the URL alone for admin calls.
:attr:`EmulatorClient.http` is the underlying ``httpx.AsyncClient`` (its base URL is the emulator's),
for requests no method covers.

Errors: an admin call the emulator refuses raises :class:`EmulatorAdminError` with its HTTP status
(400 bad input, 404 unknown instance or room, 409 a turn the instance cannot take now); a ZEGO call
answered with a non-zero Code raises :class:`ZegoCallError` from :meth:`EmulatorClient.ok` only
(:meth:`EmulatorClient.call` returns every envelope as sent). Transport failures are httpx's own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack
from urllib.parse import quote

import httpx

from service.zego.signing import api_signature, new_nonce

if TYPE_CHECKING:
    from .config import EmulatorConfig

__all__ = ["EmulatorAdminError", "EmulatorClient", "TokenVerdict", "TurnOptions", "ZegoCallError"]

Json = dict[str, Any]


class TurnOptions(TypedDict, total=False):
    """Optional parts of a simulated user turn; latencies are emulated milliseconds."""

    user_id: str
    """Who speaks (default: the instance's user); for a room turn, only that user's instances hear it."""
    speech_ms: int
    asr_ms: int
    llm_ttft_ms: int
    tts_first_frame_ms: int


class EmulatorAdminError(Exception):
    """The emulator refused an admin call: ``status`` is its HTTP status, ``message`` its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class ZegoCallError(Exception):
    """A signed ZEGO call answered with a non-zero ``Code``; ``envelope`` is the whole answer."""

    def __init__(self, action: str, envelope: Json) -> None:
        super().__init__(f"{action}: Code {envelope.get('Code')}: {envelope.get('Message')}")
        self.action = action
        self.code = int(envelope.get("Code", -1))
        self.envelope = envelope


@dataclass(frozen=True)
class TokenVerdict:
    """What the emulator makes of a Token04 (``POST /_emulator/tokens/verify``).

    ``error`` says why an invalid token is invalid; it never contains the secret.
    """

    valid: bool
    layout: str | None = None
    app_id: int | None = None
    user_id: str | None = None
    expire: int | None = None
    payload: str | None = None
    error: str | None = None


def _segment(value: str) -> str:
    """A path segment, quoted: ids come from callers and must not change the path."""
    return quote(value, safe="")


def _given(**values: Any) -> Json:
    """The keyword arguments that were given (``None`` means "let the emulator choose")."""
    return {k: v for k, v in values.items() if v is not None}


class EmulatorClient:
    """Signed ZEGO calls and typed admin calls to the emulator at ``url``.

    The admin calls need nothing but the URL; signed calls need the emulator's ``app_id`` and
    ``server_secret``.

    Use it as an async context manager, or call :meth:`aclose`, unless you passed your own ``http``
    client (which then stays yours to close).
    """

    def __init__(
        self,
        url: str,
        *,
        app_id: int | None = None,
        server_secret: str | None = None,
        callback_secret: str | None = None,
        timeout: float = 5.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.app_id = app_id
        self.callback_secret = callback_secret
        """The CallbackSecret the emulator signs callbacks with, when the creator said (``for_config``)."""
        self._server_secret = server_secret
        self._owns_http = http is None
        # Requests name absolute URLs, so a caller's own client (``http``) needs no base URL.
        # trust_env=False: a proxy from the environment must never stand between us and loopback.
        self.http = http or httpx.AsyncClient(base_url=self.url, timeout=timeout, trust_env=False)

    @classmethod
    def for_config(cls, url: str, config: EmulatorConfig, **kwargs: Any) -> EmulatorClient:
        """A client for an emulator serving ``config`` at ``url``."""
        return cls(
            url,
            app_id=config.app_id,
            server_secret=config.server_secret,
            callback_secret=config.callback_secret,
            **kwargs,
        )

    def __repr__(self) -> str:  # never the secrets
        return f"EmulatorClient({self.url!r}, app_id={self.app_id})"

    async def aclose(self) -> None:
        """Close the HTTP client, if this object made it."""
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- the ZEGO API, signed -------------------------------------------------------------------

    def signed_query(self, action: str | None, *, timestamp: int | None = None) -> dict[str, str]:
        """A correctly signed query string for ``action`` (``None``: leave Action out).

        Raises:
            RuntimeError: the client was made without the AppId and ServerSecret (admin calls only).
        """
        if self.app_id is None or self._server_secret is None:
            raise RuntimeError("this EmulatorClient has no AppId and ServerSecret: it makes admin calls only")
        ts = int(time.time()) if timestamp is None else timestamp
        nonce = new_nonce()
        params = {
            "AppId": str(self.app_id),
            "SignatureNonce": nonce,
            "Timestamp": str(ts),
            "Signature": api_signature(self.app_id, nonce, self._server_secret, ts),
            "SignatureVersion": "2.0",
        }
        return params if action is None else {"Action": action, **params}

    async def call(self, action: str, body: Json | None = None, *, path: str = "/") -> Json:
        """A signed call of ``action``; returns the whole envelope as the emulator sent it.

        ``path`` is ``"/digitalhuman"`` for the Digital Human API's actions.
        """
        response = await self.http.post(self.url + path, params=self.signed_query(action), json=body or {})
        response.raise_for_status()
        envelope: Json = response.json()
        return envelope

    async def ok(self, action: str, body: Json | None = None, *, path: str = "/") -> Any:
        """A signed call that must succeed; returns its ``Data``.

        Raises:
            ZegoCallError: the emulator answered with a non-zero Code.
        """
        envelope = await self.call(action, body, path=path)
        if envelope.get("Code") != 0:
            raise ZegoCallError(action, envelope)
        return envelope.get("Data")

    async def stored_agent(self, agent_id: str) -> Json:
        """The agent exactly as the emulator stored it (QueryAgents, raw JSON).

        Raises:
            LookupError: no such agent.
        """
        data = await self.ok("QueryAgents", {"AgentIds": [agent_id]})
        agents = data["Agents"] if isinstance(data, dict) else []
        if len(agents) != 1:
            raise LookupError(f"the emulator has no agent {agent_id!r}")
        return dict(agents[0])

    # --- admin: state, rooms, faults, tokens, events ------------------------------------------

    async def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A raw admin request to ``/_emulator{path}`` (for testing the admin API itself)."""
        return await self.http.request(method, f"{self.url}/_emulator{path}", json=body)

    async def _admin_json(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.admin(method, path, body)
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message", response.text))
            except ValueError:
                message = response.text
            raise EmulatorAdminError(response.status_code, message)
        return response.json()

    async def state(self) -> Json:
        """Agents, instances (kind, status, room, user), counts, limits, rooms and active faults."""
        state: Json = await self._admin_json("GET", "/state")
        return state

    async def reset(self) -> None:
        """Forget agents, instances, rooms, faults, events and pending callbacks (the callback URL stays)."""
        await self._admin_json("POST", "/reset")

    async def set_room_user(
        self, room_id: str, user_id: str, *, present: bool | None = None, publishing: bool | None = None
    ) -> Json:
        """Say whether a user is in the room and publishing (drives MaxIdleTime and walkie-talkie)."""
        body = _given(present=present, publishing=publishing)
        answer: Json = await self._admin_json(
            "POST", f"/rooms/{_segment(room_id)}/users/{_segment(user_id)}", body
        )
        return answer

    async def fault(
        self,
        action: str,
        *,
        count: int | None = None,
        code: int | None = None,
        mode: str | None = None,
        latency_ms: int | None = None,
    ) -> Json:
        """Inject a fault into the next ``count`` (default 1) calls of ``action`` (``"*"``: any action).

        ``code`` answers that ZEGO code; ``mode`` is ``"drop"`` (the connection is cut) or ``"timeout"``
        (the request is held); ``latency_ms`` delays the answer (alone or with either). Returns the fault.
        """
        body = _given(action=action, count=count, code=code, mode=mode, latency_ms=latency_ms)
        answer: Json = await self._admin_json("POST", "/faults", body)
        return dict(answer["fault"])

    async def faults(self) -> list[Json]:
        """The API faults still active."""
        return list((await self._admin_json("GET", "/faults"))["faults"])

    async def clear_faults(self) -> int:
        """Remove every API fault; returns how many there were."""
        return int((await self._admin_json("DELETE", "/faults"))["cleared"])

    async def verify_token(self, token: str, user_id: str) -> TokenVerdict:
        """Whether ``token`` is a Token04 this emulator's app would accept for ``user_id``."""
        answer = await self._admin_json("POST", "/tokens/verify", {"token": token, "user_id": user_id})
        return TokenVerdict(**{k: answer.get(k) for k in TokenVerdict.__dataclass_fields__})

    async def events(self, instance_id: str | None = None, event: str | None = None) -> list[Json]:
        """The journal of internal events (the last 1,000, emulated ``timestamp_ms``), oldest first."""
        params = _given(instance_id=instance_id, event=event)
        response = await self.http.get(f"{self.url}/_emulator/events", params=params)
        if response.status_code >= 400:
            raise EmulatorAdminError(response.status_code, response.text)
        return list(response.json()["events"])

    # --- admin: callbacks -------------------------------------------------------------------------

    async def set_callback_url(self, url: str | None) -> Json:
        """Where server callbacks go from now on (``None``: stop delivering); returns delivery stats."""
        stats: Json = await self._admin_json("POST", "/callbacks", {"url": url})
        return stats

    async def callback_stats(self) -> Json:
        """The callback URL and delivery counts (generated, sent, retried, dropped, pending, ...)."""
        stats: Json = await self._admin_json("GET", "/callbacks")
        return stats

    async def callback_fault(
        self,
        mode: str,
        *,
        count: int | None = None,
        delay_ms: int | None = None,
        event: str | None = None,
    ) -> Json:
        """Disturb the next ``count`` callbacks (of ``event``, if given): ``"drop"``, ``"duplicate"``,
        ``"reorder"``, ``"delay"`` (by ``delay_ms``) or ``"bad_signature"``. Returns the fault."""
        body = _given(mode=mode, count=count, delay_ms=delay_ms, event=event)
        answer: Json = await self._admin_json("POST", "/callback-faults", body)
        return dict(answer["fault"])

    async def callback_faults(self) -> list[Json]:
        """The callback faults still active."""
        return list((await self._admin_json("GET", "/callback-faults"))["faults"])

    async def clear_callback_faults(self) -> int:
        """Remove every callback fault; returns how many there were."""
        return int((await self._admin_json("DELETE", "/callback-faults"))["cleared"])

    # --- admin: simulated conversation ------------------------------------------------------------

    async def user_turn(self, instance_id: str, text: str, **options: Unpack[TurnOptions]) -> Json:
        """The user says ``text`` to the instance now; returns ``{"AgentInstanceId", "Round", "UserId",
        "latency"}``. Latencies left out are drawn from the emulator's distributions (emulated ms).

        Raises:
            EmulatorAdminError: 404 no such instance; 409 the instance cannot take a turn now.
        """
        body = {"text": text, **options}
        turn: Json = await self._admin_json("POST", f"/instances/{_segment(instance_id)}/turns", body)
        return turn

    async def room_turn(self, room_id: str, text: str, **options: Unpack[TurnOptions]) -> list[Json]:
        """A user speaks in a room: every instance there (of ``user_id``, if given) hears it."""
        body = {"text": text, **options}
        return list((await self._admin_json("POST", f"/rooms/{_segment(room_id)}/turns", body))["turns"])

    async def report_exception(
        self, instance_id: str, code: int, *, message: str | None = None, round_: int | None = None
    ) -> Json:
        """The instance reports an ``Exception`` callback with ``code`` (e.g. 2203); nothing else changes."""
        body = _given(code=code, message=message, round=round_)
        answer: Json = await self._admin_json("POST", f"/instances/{_segment(instance_id)}/exception", body)
        return answer
