"""The digital-human catalogue: ZEGO's avatars and voices, cached briefly, and id validation.

ZEGO's Digital Human API lists the avatars an app may use and the timbres (voices) for them
(docs/zego-digital-human-api.md). The list changes rarely, but each answer carries avatar image URLs
that ZEGO keeps valid for 24 hours only, so an entry is cached for ``ttl_seconds`` and never past
``url_validity_seconds - url_margin_seconds`` after ZEGO answered: a caller is never handed a URL
about to expire. An id ZEGO does not know is remembered for ``not_found_ttl_seconds`` (short, so a
newly customised avatar shows up quickly), which keeps a typo loop from spending ZEGO's 10 requests/s.

Concurrent lookups of the same key share one upstream call. The cache is bounded (``max_entries``,
least recently used out first), because ids come from callers and may be hostile.

``require`` is what CreateSession calls before any instance create. Its policy is configurable,
because whether the Digital Human API and the AI Agent API see the same avatars is inferred [INFER]:

* ``strict``: unknown ids are NOT_FOUND, and a Digital Human API failure fails the create;
* ``fail_open`` (default): unknown ids are NOT_FOUND, but if the Digital Human API cannot answer
  (down, not enabled for the app) the create goes ahead and ZEGO's own create validates the id;
* ``off``: no lookup at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Generic, TypeVar

from service.config import DigitalHumanSettings
from service.domain import zego_errors as zx
from service.domain.zego_port import (
    MAX_AVATAR_LIMIT,
    MAX_AVATAR_OFFSET,
    AvatarAction,
    AvatarDetails,
    AvatarQuery,
    AvatarSummary,
    ZegoPort,
)
from service.errors import NotFound

__all__ = [
    "VALIDATION_POLICIES",
    "AvatarAction",
    "DigitalHumanAsset",
    "DigitalHumanCatalog",
    "Page",
    "Scope",
    "Voice",
]

log = logging.getLogger("agentgw.digital_humans")

VALIDATION_POLICIES: Final = ("strict", "fail_open", "off")
RESOURCE_TYPE: Final = "digital_human"
NOT_FOUND_REASON: Final = "DIGITAL_HUMAN_NOT_FOUND"

T = TypeVar("T")


class Scope(StrEnum):
    """Which avatars a listing returns (ZEGO's ``FetchMode``)."""

    ALL = "all"
    PUBLIC = "public"
    PRIVATE = "private"


_PUBLIC: Final = {Scope.ALL: None, Scope.PUBLIC: True, Scope.PRIVATE: False}


@dataclass(frozen=True)
class DigitalHumanAsset:
    """One avatar. ``is_public`` is None when ZEGO did not say (list answers may omit it)."""

    digital_human_id: str
    name: str
    avatar_url: str
    avatar_url_expires_at: float | None
    is_public: bool | None
    actions: tuple[AvatarAction, ...] = ()
    inference_modes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Voice:
    """One timbre. ``digital_human_id`` is the avatar it is bound to, empty for public ones."""

    voice_id: str
    name: str
    is_public: bool | None
    digital_human_id: str


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``next_offset`` is None on the last page."""

    items: tuple[T, ...]
    total: int
    next_offset: int | None


@dataclass
class _Entry:
    value: Any
    expires_at: float
    last_used: float


class _TtlCache:
    """A bounded map whose entries expire; least recently used entries are evicted first."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._data: OrderedDict[Any, _Entry] = OrderedDict()

    def get(self, key: Any, now: float) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        entry.last_used = now
        return entry

    def put(self, key: Any, value: Any, expires_at: float, now: float) -> None:
        self._data[key] = _Entry(value, expires_at, now)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class DigitalHumanCatalog:
    """Lists and looks up avatars and voices through ZEGO, with the caching described above."""

    def __init__(
        self,
        zego: ZegoPort,
        *,
        settings: DigitalHumanSettings | None = None,
        url_validity_seconds: float = 86400.0,
        url_margin_seconds: float = 600.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = settings if settings is not None else DigitalHumanSettings()
        validation = settings.validation
        if validation not in VALIDATION_POLICIES:
            raise ValueError(f"validation must be one of {', '.join(VALIDATION_POLICIES)}")
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._zego = zego
        self._ttl = settings.cache_seconds
        self._not_found_ttl = settings.not_found_cache_seconds
        self._url_validity = url_validity_seconds
        self._url_margin = url_margin_seconds
        self._validation = validation
        self._clock = clock
        self._cache = _TtlCache(max_entries)
        self._inflight: dict[Any, asyncio.Future[Any]] = {}
        self.upstream_calls = 0
        """How many ZEGO calls the catalogue made (cache misses), for tests and diagnostics."""

    @property
    def validation(self) -> str:
        """The ``require`` policy: strict, fail_open or off."""
        return self._validation

    def clear(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()

    # --- public operations ------------------------------------------------------------------------

    async def list(
        self,
        scope: Scope,
        *,
        inference_mode: int | None,
        offset: int,
        limit: int,
        timeout: float | None = None,
    ) -> Page[DigitalHumanAsset]:
        """One page of avatars (ZEGO ``Offset``/``Limit``; ``limit`` 1..20)."""
        _check_window(offset, limit)
        key = ("list", scope.value, inference_mode, offset, limit)

        async def fetch() -> tuple[Page[DigitalHumanAsset], float]:
            query = AvatarQuery(
                public=_PUBLIC[scope], inference_mode=inference_mode, offset=offset, limit=limit
            )
            data = await self._zego.list_avatars(query, timeout=timeout)
            now = self._clock()
            items = tuple(self._summary(s, scope, now) for s in data.items[:limit])
            return _page(items, data.total, offset), self._url_expiry(now)

        result: Page[DigitalHumanAsset] = await self._cached(key, fetch)
        return result

    async def get(self, digital_human_id: str, *, timeout: float | None = None) -> DigitalHumanAsset:
        """One avatar's details. Raises NotFound (reason DIGITAL_HUMAN_NOT_FOUND) for unknown ids."""
        key = ("info", digital_human_id)

        async def fetch() -> tuple[DigitalHumanAsset | NotFound, float]:
            try:
                info = await self._zego.get_avatar(digital_human_id, timeout=timeout)
            except zx.ZegoDigitalHumanNotFound:
                now = self._clock()
                return NotFound(RESOURCE_TYPE, digital_human_id, NOT_FOUND_REASON), now + self._not_found_ttl
            now = self._clock()
            return self._asset(info, now), self._url_expiry(now)

        found: DigitalHumanAsset | NotFound = await self._cached(key, fetch)
        if isinstance(found, NotFound):
            raise NotFound(found.resource_type, found.resource_name, found.reason)
        return found

    async def voices(
        self, digital_human_id: str, *, offset: int, limit: int, timeout: float | None = None
    ) -> Page[Voice]:
        """Public voices (empty ``digital_human_id``) or those bound to one avatar."""
        _check_window(offset, limit)
        key = ("voices", digital_human_id, offset, limit)

        async def fetch() -> tuple[Page[Voice] | NotFound, float]:
            try:
                data = await self._zego.list_timbres(
                    digital_human_id or None, offset=offset, limit=limit, timeout=timeout
                )
            except zx.ZegoDigitalHumanNotFound:
                now = self._clock()
                return NotFound(RESOURCE_TYPE, digital_human_id, NOT_FOUND_REASON), now + self._not_found_ttl
            items = tuple(
                Voice(
                    voice_id=t.timbre_id,
                    name=t.name,
                    # [INFER] ZEGO's Timbre has no IsPublic: the request says which kind was listed.
                    is_public=t.is_public if t.is_public is not None else not digital_human_id,
                    digital_human_id=digital_human_id,
                )
                for t in data.items[:limit]
            )
            return _page(items, data.total, offset), self._clock() + self._ttl

        found: Page[Voice] | NotFound = await self._cached(key, fetch)
        if isinstance(found, NotFound):
            raise NotFound(found.resource_type, found.resource_name, found.reason)
        return found

    async def require(self, digital_human_id: str, *, timeout: float | None = None) -> None:
        """Refuse an id ZEGO does not know, before anything is created (see the module docstring)."""
        if self._validation == "off":
            return
        try:
            await self.get(digital_human_id, timeout=timeout)
        except NotFound:
            raise
        except zx.ZegoError as exc:
            if self._validation == "strict":
                raise
            log.warning(
                "digital human %r could not be checked (%s); ZEGO's create will validate it",
                digital_human_id[:64],
                exc.outcome,
            )

    # --- internals --------------------------------------------------------------------------------

    async def _cached(self, key: Any, fetch: Callable[[], Awaitable[tuple[Any, float]]]) -> Any:
        entry = self._cache.get(key, self._clock())
        if entry is not None:
            return entry.value
        task = self._inflight.get(key)
        if task is None:

            async def run() -> Any:
                self.upstream_calls += 1
                value, expires_at = await fetch()
                self._cache.put(key, value, expires_at, self._clock())
                return value

            task = asyncio.ensure_future(run())
            self._inflight[key] = task

            def finished(t: asyncio.Future[Any]) -> None:
                self._inflight.pop(key, None)
                if not t.cancelled():
                    t.exception()  # retrieved: a failure every waiter gave up on must not log as lost

            task.add_done_callback(finished)
        # Shielded: one caller giving up must not cancel the lookup the others are waiting for.
        return await asyncio.shield(task)

    def _url_expiry(self, now: float) -> float:
        return min(now + self._ttl, now + self._url_validity - self._url_margin)

    def _summary(self, s: AvatarSummary, scope: Scope, now: float) -> DigitalHumanAsset:
        # [INFER] a list answer may omit IsPublic: a public-only or private-only listing implies it.
        is_public = s.is_public
        if is_public is None and scope is not Scope.ALL:
            is_public = scope is Scope.PUBLIC
        return DigitalHumanAsset(
            digital_human_id=s.digital_human_id,
            name=s.name,
            avatar_url=s.avatar_url,
            avatar_url_expires_at=now + self._url_validity if s.avatar_url else None,
            is_public=is_public,
            inference_modes=tuple(s.inference_modes),
        )

    def _asset(self, info: AvatarDetails, now: float) -> DigitalHumanAsset:
        return DigitalHumanAsset(
            digital_human_id=info.digital_human_id,
            name=info.name,
            avatar_url=info.avatar_url,
            avatar_url_expires_at=now + self._url_validity if info.avatar_url else None,
            is_public=info.is_public,
            actions=info.actions,
            inference_modes=tuple(info.inference_modes),
        )


def _check_window(offset: int, limit: int) -> None:
    if not 0 <= offset <= MAX_AVATAR_OFFSET or not 1 <= limit <= MAX_AVATAR_LIMIT:
        raise ValueError(f"offset must be 0..{MAX_AVATAR_OFFSET} and limit 1..{MAX_AVATAR_LIMIT}")


def _page(items: tuple[T, ...], total: int, offset: int) -> Page[T]:
    end = offset + len(items)
    # An empty page ends the listing even if ZEGO's Total says more: never loop on a stuck cursor.
    more = bool(items) and end < total and end <= MAX_AVATAR_OFFSET
    return Page(items=items, total=max(total, 0), next_offset=end if more else None)
