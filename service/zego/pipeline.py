"""The call pipeline under ``ZegoClient``: pooled HTTP, budgets, pacing, signing, retries, errors.

``CallPipeline`` runs one ZEGO action end to end (see ``service.zego.client`` for the rules it
keeps); ``ZegoClient`` adds one typed method per action on top of it.
"""

# ASYNC109 wants callers to wrap us in asyncio.timeout instead of passing `timeout`. We need the budget
# itself: to size the HTTP timeout, to refuse sending a mutation that cannot finish, and to skip retries.

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx
from pydantic import ValidationError

from service import tracing
from service.zego import digital_human as dh
from service.zego import models as m
from service.zego.actions import (
    DIGITAL_HUMAN_ACTIONS,
    READ_ONLY_ACTIONS,
    Action,
    ClientObserver,
    NullObserver,
)
from service.zego.auth import ZegoSignatureAuth, install_httpx_log_filter
from service.zego.exceptions import (
    ZegoApiError,
    ZegoConnectError,
    ZegoCredentialsRejected,
    ZegoDeadlineExceeded,
    ZegoError,
    ZegoProtocolError,
    ZegoServiceError,
    ZegoTimeout,
    ZegoTransportError,
    from_code,
)
from service.zego.ratelimit import FairRateLimiter, RateLimiter
from service.zego.regions import resolve_base_url

__all__ = ["DEADLINE_MARGIN_SECONDS", "CallPipeline"]

logger = logging.getLogger("agentgw.zego")

#: Kept back from the caller's budget so our answer reaches them before their deadline does.
DEADLINE_MARGIN_SECONDS: Final = 0.05

_T = TypeVar("_T")
_DataT = TypeVar("_DataT", bound=m.WireModel)


class CallPipeline:
    """Runs ZEGO actions: two pooled ``httpx.AsyncClient`` (one per host), the limiter, the retries.

    Args:
        app_id: the ZEGO AppID (uint32).
        server_secret: the project ServerSecret; used only to sign, never logged.
        base_url: a region name from ``service.zego.regions`` or an ``http(s)://`` URL (e.g. the emulator).
        digital_human_base_url: the Digital Human API host (``service.zego.digital_human``); None derives
            it from ``base_url``. Its three actions share the signing, limiter and pipeline.
        timeout_seconds: upper bound of one attempt, whatever the caller's budget.
        rate_per_second: local pacing per action; ``rate_burst`` defaults to the same number.
        max_retries: extra attempts for transport failures of read-only actions.
        backoff_initial, backoff_max: exponential backoff bounds in seconds (jittered).
        rate_limit_codes: ZEGO codes to raise as ``ZegoRateLimited`` besides 410001029.
        transport: an httpx transport, e.g. ``httpx.MockTransport`` in tests.
        observer: metrics hooks; defaults to ``NullObserver``.
        clock: wall-clock seconds for request timestamps.
    """

    def __init__(
        self,
        *,
        app_id: int,
        server_secret: str,
        base_url: str,
        digital_human_base_url: str | None = None,
        timeout_seconds: float = 10.0,
        rate_per_second: float = 10.0,
        rate_burst: float | None = None,
        max_retries: int = 2,
        backoff_initial: float = 0.1,
        backoff_max: float = 2.0,
        rate_limit_codes: Collection[int] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        observer: ClientObserver | None = None,
        limiter: RateLimiter | FairRateLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < app_id < 2**32:
            raise ValueError("app_id must be a uint32 greater than 0")
        if not server_secret:
            raise ValueError("server_secret must not be empty")
        if not (timeout_seconds > 0 and math.isfinite(timeout_seconds)):
            raise ValueError("timeout_seconds must be a positive number")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("backoff must satisfy 0 < backoff_initial <= backoff_max")
        self.app_id = app_id
        self.base_url = resolve_base_url(base_url)
        self._host = httpx.URL(self.base_url).host  # for spans: never the URL, whose query is signed
        self._timeout_seconds = timeout_seconds
        self._max_retries = max_retries
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rate_limit_codes = frozenset(rate_limit_codes)
        self._observer: ClientObserver = observer if observer is not None else NullObserver()
        self._limiter = limiter if limiter is not None else RateLimiter(rate_per_second, rate_burst)
        self._jitter = random.Random()
        install_httpx_log_filter()
        self.digital_human_base_url = (
            dh.resolve_digital_human_base(digital_human_base_url)
            if digital_human_base_url is not None
            else dh.derive_digital_human_base(self.base_url)
        )
        self._http, self._dh_http = (
            httpx.AsyncClient(
                base_url=base,
                auth=ZegoSignatureAuth(app_id, server_secret, clock),
                headers={"Content-Type": "application/json"},
                timeout=timeout_seconds,
                transport=transport,
            )
            for base in (self.base_url, self.digital_human_base_url)
        )

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self._http.aclose()
        await self._dh_http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- the call pipeline -------------------------------------------------------------------------

    async def _call(
        self, action: Action, request: m.WireModel, decode: Callable[[Any], _T], timeout: float | None
    ) -> _T:
        """Run ``action``, retrying where allowed, and return ``decode(Data)``."""
        deadline = None if timeout is None else time.monotonic() + timeout - DEADLINE_MARGIN_SECONDS
        body = json.dumps(request.to_wire(), ensure_ascii=False, separators=(",", ":")).encode()
        attempt = 0
        while True:
            try:
                return await self._attempt(action, body, decode, deadline)
            except ZegoTransportError as exc:
                if action not in READ_ONLY_ACTIONS or not exc.retryable or attempt >= self._max_retries:
                    raise
                cap = min(self._backoff_max, self._backoff_initial * 2**attempt)
                delay = cap * (0.5 + 0.5 * self._jitter.random())  # "equal jitter": spread, never ~0
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise  # a retry could not finish inside the caller's budget: report the real failure
                attempt += 1
                logger.info(
                    "zego %s retry %d in %.0f ms after %s", action, attempt, delay * 1000, exc.outcome
                )
                self._observer.retried(action)
                await asyncio.sleep(delay)

    def _remaining(self, action: Action, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ZegoDeadlineExceeded(
                action, "caller deadline reached before the request was sent", sent=False
            )
        return remaining

    async def _attempt(
        self, action: Action, body: bytes, decode: Callable[[Any], _T], deadline: float | None
    ) -> _T:
        remaining = self._remaining(action, deadline)
        try:
            waited = await self._limiter.acquire(action, max_wait=remaining)
        except TimeoutError:
            raise ZegoDeadlineExceeded(
                action, "rate-limit wait would outlast the caller deadline", sent=False
            ) from None
        if waited > 0:
            self._observer.rate_limit_waited(action, waited)
        remaining = self._remaining(action, deadline)
        budget_bound = remaining is not None and remaining < self._timeout_seconds
        effective = self._timeout_seconds if remaining is None else min(self._timeout_seconds, remaining)

        span = tracing.start_zego(action, self._host)  # None while tracing is off
        started = time.monotonic()
        try:
            response = await self._exchange(action, body, effective, budget_bound)
            request_id, data = self._unwrap(action, response)
            result = self._decode(action, decode, data)
        except ZegoError as exc:
            elapsed = time.monotonic() - started
            self._observer.request_finished(action, exc.outcome, elapsed)
            if isinstance(exc, ZegoApiError):
                tracing.end_zego(span, exc.outcome, exc.request_id, exc.code)
            else:
                tracing.end_zego(span, exc.outcome)
            self._log_failure(action, exc, elapsed)
            raise
        except BaseException:  # cancelled mid-call: the span still ends
            tracing.end_zego(span, "cancelled")
            raise
        elapsed = time.monotonic() - started
        self._observer.request_finished(action, "0", elapsed)
        tracing.end_zego(span, "0", request_id, 0)
        logger.debug("zego %s code=0 request_id=%s duration_ms=%.1f", action, request_id, elapsed * 1000)
        return result

    async def _exchange(
        self, action: Action, body: bytes, effective: float, budget_bound: bool
    ) -> httpx.Response:
        try:
            # httpx applies the timeout per phase (connect, write, read); asyncio.timeout caps the total.
            http = self._dh_http if action in DIGITAL_HUMAN_ACTIONS else self._http
            async with asyncio.timeout(effective):
                return await http.post(
                    "/", params={"Action": action.value}, content=body, timeout=httpx.Timeout(effective)
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            if budget_bound:
                raise ZegoDeadlineExceeded(action, f"no answer within the caller's {effective:.3f}s") from exc
            raise ZegoTimeout(action, f"no answer within {effective:.3f}s") from exc
        except httpx.ConnectError as exc:
            raise ZegoConnectError(action, f"connect failed: {type(exc).__name__}") from exc
        except (httpx.NetworkError, httpx.ProtocolError) as exc:
            # The connection broke mid-exchange (read/write/close error, malformed HTTP).
            raise ZegoProtocolError(action, f"connection failed mid-request: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise ZegoConnectError(action, f"transport failed: {type(exc).__name__}") from exc
        except httpx.RequestError as exc:
            raise ZegoProtocolError(action, f"response unusable: {type(exc).__name__}") from exc

    def _unwrap(self, action: Action, response: httpx.Response) -> tuple[str, Any]:
        """Check the §2 envelope; return (RequestId, Data) or raise."""
        status = response.status_code
        if status != 200:
            raise ZegoProtocolError(
                action, f"HTTP {status}", status_code=status, retryable=status == 429 or status >= 500
            )
        try:
            # stdlib json keeps int64 (Round, Sequence) exact; never route them through float.
            envelope = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise ZegoProtocolError(
                action, "response body is not JSON", status_code=200, retryable=False
            ) from None
        code = envelope.get("Code") if isinstance(envelope, dict) else None
        if not isinstance(code, int) or isinstance(code, bool):
            raise ZegoProtocolError(action, "envelope has no integer Code", status_code=200, retryable=False)
        request_id = str(envelope.get("RequestId") or "")
        if code != 0:
            message = str(envelope.get("Message") or "")
            raise from_code(code, message, request_id, action, rate_limit_codes=self._rate_limit_codes)
        return request_id, envelope.get("Data")

    @staticmethod
    def _decode(action: Action, decode: Callable[[Any], _T], data: Any) -> _T:
        try:
            return decode(data)
        except ValidationError as exc:
            # Field paths and reasons only: the models hide inputs, which may hold an agent's ApiKey.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'Data'}: {err['msg']}" for err in exc.errors()[:5]
            )
            raise ZegoProtocolError(
                action, f"Data does not match the schema: {problems}", status_code=200, retryable=False
            ) from None

    def _log_failure(self, action: Action, exc: ZegoError, elapsed: float) -> None:
        if isinstance(exc, ZegoApiError):
            # Credentials and ZEGO-side failures need an operator; the rest are ordinary business answers.
            serious = isinstance(exc, ZegoCredentialsRejected | ZegoServiceError)
            logger.log(
                logging.WARNING if serious else logging.INFO,
                "zego %s code=%d request_id=%s duration_ms=%.1f message=%s",
                action,
                exc.code,
                exc.request_id,
                elapsed * 1000,
                exc.message,
            )
        else:
            logger.warning(
                "zego %s failed: %s duration_ms=%.1f (%s)", action, exc.outcome, elapsed * 1000, exc
            )

    async def _call_none(self, action: Action, request: m.WireModel, timeout: float | None) -> None:
        await self._call(action, request, _ignore_data, timeout)

    async def _call_data(
        self, action: Action, request: m.WireModel, model: type[_DataT], timeout: float | None
    ) -> _DataT:
        def decode(data: Any) -> _DataT:
            # `"Data": null` on a list-style answer means "nothing"; required fields still fail loudly.
            return model.model_validate(data if data is not None else {})

        return await self._call(action, request, decode, timeout)


def _ignore_data(data: Any) -> None:
    """Decoder for actions whose success carries no ``Data``."""
    return None
