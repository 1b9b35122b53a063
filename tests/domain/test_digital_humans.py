"""The digital-human catalogue: caching rules, URL expiry, negative cache, shared lookups, policies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.config import DigitalHumanSettings
from service.domain.digital_humans import DigitalHumanCatalog, Scope
from service.errors import NotFound
from service.zego import digital_human as dh
from service.zego import exceptions as zx
from service.zego.adapter import ZegoAdapter
from tests.conftest import eventually


class FakeZego:
    """Answers the three Digital Human API calls from a dict; counts calls; can fail or stall."""

    def __init__(self) -> None:
        self.avatars = {
            "a": dh.DigitalHumanInfo(digital_human_id="a", name="A", avatar_url="https://x/a.png")
        }
        self.calls: list[tuple[str, Any]] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def _enter(self, name: str, request: Any) -> None:
        self.calls.append((name, request))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail

    async def get_digital_human_info(
        self, request: dh.GetDigitalHumanInfoRequest, *, timeout: float | None = None
    ) -> dh.DigitalHumanInfo:
        await self._enter("info", request)
        if request.digital_human_id not in self.avatars:
            raise zx.ZegoDigitalHumanNotFound(400000003, "not found", "1", "GetDigitalHumanInfo")
        return self.avatars[request.digital_human_id]

    async def get_digital_human_list(
        self, request: dh.GetDigitalHumanListRequest, *, timeout: float | None = None
    ) -> dh.GetDigitalHumanListData:
        await self._enter("list", request)
        items = [dh.DigitalHumanSummary(digital_human_id=f"d{i}", avatar_url="u") for i in range(5)]
        offset, limit = request.offset or 0, request.limit or 20
        return dh.GetDigitalHumanListData(total=len(items), digital_humans=items[offset : offset + limit])

    async def get_timbre_list(
        self, request: dh.GetTimbreListRequest, *, timeout: float | None = None
    ) -> dh.GetTimbreListData:
        await self._enter("timbres", request)
        return dh.GetTimbreListData(total=1, timbres=[dh.Timbre(timbre_id="t", name="T")])


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def catalog(zego: FakeZego, clock: Clock, **kwargs: Any) -> DigitalHumanCatalog:
    # The fake answers at the wire level, so the adapter's mapping is exercised too.
    return DigitalHumanCatalog(ZegoAdapter(zego), clock=clock, **kwargs)  # type: ignore[arg-type]


async def test_get_is_cached_for_the_ttl() -> None:
    zego, clock = FakeZego(), Clock()
    cat = catalog(zego, clock, settings=DigitalHumanSettings(cache_seconds=60))
    first = await cat.get("a")
    clock.now += 59
    assert await cat.get("a") == first
    assert len(zego.calls) == 1
    clock.now += 2
    await cat.get("a")
    assert len(zego.calls) == 2


async def test_never_cached_past_the_avatar_url_expiry() -> None:
    zego, clock = FakeZego(), Clock()
    # A TTL longer than the URL's validity: the URL's expiry (minus the margin) wins.
    cat = catalog(
        zego,
        clock,
        settings=DigitalHumanSettings(cache_seconds=10 * 86400),
        url_validity_seconds=100,
        url_margin_seconds=10,
    )
    asset = await cat.get("a")
    assert asset.avatar_url_expires_at == clock.now + 100
    clock.now += 89
    await cat.get("a")
    assert len(zego.calls) == 1
    clock.now += 2  # 91 s: past validity - margin
    refreshed = await cat.get("a")
    assert len(zego.calls) == 2
    assert refreshed.avatar_url_expires_at == clock.now + 100


async def test_unknown_id_is_not_found_and_remembered_briefly() -> None:
    zego, clock = FakeZego(), Clock()
    cat = catalog(zego, clock, settings=DigitalHumanSettings(not_found_cache_seconds=5))
    for _ in range(3):
        with pytest.raises(NotFound) as caught:
            await cat.get("typo")
    assert caught.value.reason == "DIGITAL_HUMAN_NOT_FOUND"
    assert caught.value.resource_type == "digital_human" and caught.value.resource_name == "typo"
    assert len(zego.calls) == 1
    # Once the avatar exists (customised meanwhile) it is found after the short negative TTL.
    zego.avatars["typo"] = dh.DigitalHumanInfo(digital_human_id="typo")
    clock.now += 6
    assert (await cat.get("typo")).digital_human_id == "typo"


async def test_concurrent_lookups_share_one_call() -> None:
    zego, clock = FakeZego(), Clock()
    zego.gate = asyncio.Event()
    cat = catalog(zego, clock)
    waiting = [asyncio.ensure_future(cat.get("a")) for _ in range(20)]
    await eventually(lambda: len(zego.calls) == 1)  # all 20 are waiting on the one call
    zego.gate.set()
    results = await asyncio.gather(*waiting)
    assert len({id(r) for r in results}) == 1
    assert len(zego.calls) == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_lookup() -> None:
    zego, clock = FakeZego(), Clock()
    zego.gate = asyncio.Event()
    cat = catalog(zego, clock)
    impatient = asyncio.ensure_future(cat.get("a"))
    patient = asyncio.ensure_future(cat.get("a"))
    await eventually(lambda: len(zego.calls) == 1)  # both are waiting on the one call
    impatient.cancel()
    zego.gate.set()
    assert (await patient).digital_human_id == "a"
    assert len(zego.calls) == 1


async def test_failures_are_not_cached() -> None:
    zego, clock = FakeZego(), Clock()
    cat = catalog(zego, clock)
    zego.fail = zx.ZegoConnectError("GetDigitalHumanInfo", "refused")
    with pytest.raises(zx.ZegoConnectError):
        await cat.get("a")
    zego.fail = None
    assert (await cat.get("a")).name == "A"
    assert len(zego.calls) == 2


async def test_cache_is_bounded_against_hostile_ids() -> None:
    zego, clock = FakeZego(), Clock()
    cat = catalog(zego, clock, max_entries=8)
    for i in range(100):
        with pytest.raises(NotFound):
            await cat.get(f"junk-{i}")
    assert len(cat._cache) == 8


async def test_list_pages_and_scope() -> None:
    zego, clock = FakeZego(), Clock()
    cat = catalog(zego, clock)
    page = await cat.list(Scope.PUBLIC, inference_mode=None, offset=0, limit=2)
    assert [a.digital_human_id for a in page.items] == ["d0", "d1"]
    assert page.next_offset == 2 and page.total == 5
    # A public-only listing tells us they are public even though the list item did not say.
    assert all(a.is_public for a in page.items)
    last = await cat.list(Scope.ALL, inference_mode=2, offset=4, limit=2)
    assert last.next_offset is None and [a.is_public for a in last.items] == [None]
    sent = zego.calls[-1][1]
    assert (sent.fetch_mode, sent.inference_mode, sent.offset, sent.limit) == (dh.FETCH_ALL, 2, 4, 2)
    with pytest.raises(ValueError):
        await cat.list(Scope.ALL, inference_mode=None, offset=0, limit=21)


async def test_an_empty_page_ends_the_listing_whatever_total_says() -> None:
    zego, clock = FakeZego(), Clock()
    cat = catalog(zego, clock)
    page = await cat.list(Scope.ALL, inference_mode=None, offset=100, limit=5)
    assert page.items == () and page.next_offset is None


async def test_voices_public_flag_is_inferred_from_the_request() -> None:
    zego, clock = FakeZego(), Clock()
    cat = catalog(zego, clock)
    public = await cat.voices("", offset=0, limit=20)
    bound = await cat.voices("a", offset=0, limit=20)
    assert public.items[0].is_public is True and public.items[0].digital_human_id == ""
    assert bound.items[0].is_public is False and bound.items[0].digital_human_id == "a"
    assert zego.calls[0][1].digital_human_id is None


@pytest.mark.parametrize(
    ("policy", "raises"),
    [("fail_open", None), ("strict", zx.ZegoConnectError), ("off", None)],
)
async def test_require_policies_when_the_api_is_down(policy: str, raises: type[Exception] | None) -> None:
    zego, clock = FakeZego(), Clock()
    zego.fail = zx.ZegoConnectError("GetDigitalHumanInfo", "refused")
    cat = catalog(zego, clock, settings=DigitalHumanSettings(validation=policy))
    if raises is None:
        await cat.require("a")
    else:
        with pytest.raises(raises):
            await cat.require("a")
    assert len(zego.calls) == (0 if policy == "off" else 1)


@pytest.mark.parametrize("policy", ["fail_open", "strict"])
async def test_require_refuses_unknown_ids(policy: str) -> None:
    cat = catalog(FakeZego(), Clock(), settings=DigitalHumanSettings(validation=policy))
    with pytest.raises(NotFound):
        await cat.require("typo")
    await cat.require("a")


def test_unknown_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="validation"):
        catalog(FakeZego(), Clock(), settings=DigitalHumanSettings(validation="maybe"))


async def test_a_failure_nobody_waits_for_is_not_reported_as_lost(caplog: pytest.LogCaptureFixture) -> None:
    zego, clock = FakeZego(), Clock()
    zego.gate = asyncio.Event()
    zego.fail = zx.ZegoConnectError("GetDigitalHumanInfo", "refused")
    cat = catalog(zego, clock)
    waiter = asyncio.ensure_future(cat.get("a"))
    await eventually(lambda: len(zego.calls) == 1)
    waiter.cancel()
    zego.gate.set()
    await eventually(lambda: not cat._inflight)  # the lookup failed, with nobody waiting for it
    assert "never retrieved" not in caplog.text
