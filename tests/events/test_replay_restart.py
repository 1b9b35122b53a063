"""Replay protection survives a restart: the (Nonce, Signature) pairs live in the ledger, expire
after twice the skew window and are purged (issue 16 §2)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import httpx

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from service.server import Gateway
from tests.backends import LedgerFactory, table_rows
from tests.conftest import Emulator, gateway_settings
from tests.events.helpers import callback, post

INSTANCE = "1912124734317838336"


async def nonce_rows(db: Path, database_url: str | None) -> list[tuple[str, str]]:
    return await table_rows(db, database_url, "SELECT nonce, signature FROM callback_nonces")


async def test_a_captured_pair_replayed_with_another_body_after_a_restart_is_refused(
    emulator: Emulator, tmp_path: Path, database_url: str | None
) -> None:
    settings = gateway_settings(emulator, tmp_path / "ledger.db", database_url)
    genuine = callback("LLMResult", INSTANCE, {"Round": 1, "Text": "genuine"})
    async with Gateway(settings) as gw:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}") as http:
            response = await post(http, genuine)
            assert (response.status_code, response.json()["result"]) == (200, "accepted")

    async with Gateway(settings) as gw:  # a new process on the same ledger: no memory of its own
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}") as http:
            # The attacker's copy: same Nonce, Timestamp and Signature (still inside the window).
            forged = dict(genuine, Data={"Round": 1, "Text": "injected"}, Sequence=genuine["Sequence"] + 1)
            response = await post(http, forged)
            assert (response.status_code, response.json()["result"]) == (409, "replayed")
            # ZEGO retrying the genuine body after the restart is still acknowledged, stored once.
            response = await post(http, genuine)
            assert (response.status_code, response.json()["result"]) == (200, "duplicate")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = erpc.EventServiceStub(ch)  # type: ignore[no-untyped-call]
            listed = await stub.ListEvents(eapi.ListEventsRequest(), timeout=5)
    assert [e.llm_result.text for e in listed.events] == ["genuine"]


async def test_a_pair_expires_after_twice_the_skew_and_is_purged_at_start_up(
    emulator: Emulator, tmp_path: Path, database_url: str | None
) -> None:
    db = tmp_path / "ledger.db"
    settings = gateway_settings(emulator, db, database_url, callback_skew_seconds=0.5)  # pairs kept 1 s
    async with Gateway(settings) as gw:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}") as http:
            assert (await post(http, callback("LLMResult", INSTANCE, {"Round": 1}))).status_code == 200
    assert len(await nonce_rows(db, database_url)) == 1
    await asyncio.sleep(1.1)
    async with Gateway(settings):
        # The retention loop's first pass runs as the gateway starts.
        async with asyncio.timeout(5):
            while await nonce_rows(db, database_url):
                await asyncio.sleep(0.05)


async def test_the_first_body_wins_until_its_pair_expires(tmp_path: Path, make_ledger: LedgerFactory) -> None:
    now = [1_000.0]
    ledger = make_ledger(tmp_path / "ledger.db", clock=lambda: now[0])
    await ledger.open()

    async def remember(nonce: str, signature: str, digest: str, expires_at: float) -> str:
        [on_record] = await ledger.remember_callbacks([(nonce, signature, digest, expires_at)])
        return on_record

    try:
        assert await remember("n1", "sig", "body-a", 1_600.0) == "body-a"
        assert await remember("n1", "sig", "body-b", 1_600.0) == "body-a"  # a replay
        assert await remember("n1", "other", "body-b", 1_600.0) == "body-b"  # another pair
        await remember("n2", "sig", "body-c", 1_200.0)
        now[0] = 1_300.0
        assert await ledger.purge_callback_nonces(now[0]) == 1  # only n2 had expired
        assert await remember("n1", "sig", "body-b", 1_900.0) == "body-a"
        now[0] = 1_600.0
        # Expired (a Timestamp that old is refused as stale anyway): the pair starts afresh.
        assert await remember("n1", "sig", "body-b", 2_200.0) == "body-b"
        # Within one group (one transaction) the first of a pair wins too.
        group = [("n3", "sig", "body-x", 2_200.0), ("n3", "sig", "body-y", 2_200.0)]
        assert await ledger.remember_callbacks(group) == ["body-x", "body-x"]
        assert await ledger.purge_callback_nonces(now[0]) == 1  # (n1, other)
        assert await ledger.purge_callback_nonces(2_200.0) == 2
        assert await ledger.purge_callback_nonces(1e12) == 0  # nothing is left
    finally:
        await ledger.close()


async def test_concurrent_callbacks_with_one_pair_store_one_body(
    emulator: Emulator, tmp_path: Path, database_url: str | None
) -> None:
    settings = gateway_settings(emulator, tmp_path / "ledger.db", database_url)
    genuine = callback("LLMResult", INSTANCE, {"Round": 1, "Text": "genuine"})
    forged = [
        dict(genuine, Data={"Round": 1, "Text": f"forged {i}"}, Sequence=genuine["Sequence"] + i)
        for i in range(1, 20)
    ]
    async with Gateway(settings) as gw:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}") as http:
            # All at once, so they share the nonce book's groups: exactly one body is first.
            answers = await asyncio.gather(*(post(http, body) for body in [genuine, *forged]))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = erpc.EventServiceStub(ch)  # type: ignore[no-untyped-call]
            listed = await stub.ListEvents(eapi.ListEventsRequest(), timeout=5)
    assert sorted(a.status_code for a in answers) == [200] + [409] * 19
    [stored] = listed.events
    winner = next(body for body, a in zip([genuine, *forged], answers, strict=True) if a.status_code == 200)
    assert stored.llm_result.text == winner["Data"]["Text"]
