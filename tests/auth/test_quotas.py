"""Per-caller quotas: checked in the admission transaction under concurrency, shown in
GetCapacity, refused with QuotaFailure; the quotas file's validation; the fair ZEGO limiter."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from service.domain.quotas import load_quotas
from service.zego.ratelimit import FairRateLimiter, RateLimiter
from tests.api.sessions_helpers import register_agent, voice_request
from tests.auth.identity import identity_gateway
from tests.conftest import Emulator, rich_error

QUOTAS = """
[default]
voice = 1
digital_human = 0

[callers.alice]
voice = 3
"""


async def running_at_zego(emulator: Emulator) -> int:
    return len((await emulator.state())["instances"])


async def test_quotas_hold_under_concurrency_and_show_in_get_capacity(
    emulator: Emulator, tmp_path: Path, database_url: str | None
) -> None:
    await register_agent(emulator)
    quotas = tmp_path / "quotas.toml"
    quotas.write_text(QUOTAS)
    async with identity_gateway(emulator, tmp_path, database_url, quotas_file=quotas) as ids:
        alice, bob = ids["alice"], ids["bob"]

        async def attempt(client: object, i: int) -> grpc.StatusCode:
            try:
                await client.sessions.CreateSession(voice_request(user=f"u{i}", room=f"r{i}"))  # type: ignore[attr-defined]
            except grpc.aio.AioRpcError as exc:
                assert rich_error(exc).reason == "QUOTA_EXHAUSTED"
                return exc.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(attempt(alice, i) for i in range(12)))
        assert codes.count(grpc.StatusCode.OK) == 3
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 9
        # bob falls under the default quota: one voice session, no digital human.
        bob_codes = await asyncio.gather(*(attempt(bob, 100 + i) for i in range(4)))
        assert bob_codes.count(grpc.StatusCode.OK) == 1
        # What ZEGO saw: exactly the admitted creates.
        assert await running_at_zego(emulator) == 4

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await alice.sessions.CreateSession(voice_request(user="u99", room="r99"))
        error = rich_error(info.value)
        failure = error.get(error_details_pb2.QuotaFailure)
        assert failure.violations[0].subject == "caller:alice/pool:voice"
        assert error.get(error_details_pb2.RetryInfo).retry_delay.seconds > 0

        own = await alice.sessions.GetCapacity(api.GetCapacityRequest())
        assert [
            (c.caller, c.voice_in_use, c.voice_quota, c.HasField("digital_human_quota")) for c in own.callers
        ] == [("alice", 3, 3, False)]
        everyone = await ids["sre"].sessions.GetCapacity(api.GetCapacityRequest())
        by_caller = {
            c.caller: (c.voice_in_use, c.voice_quota, c.digital_human_quota) for c in everyone.callers
        }
        assert by_caller == {"alice": (3, 3, 0), "bob": (1, 1, 0)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[default]\nvoice = -1", "default.voice must be a whole number"),
        ("[default]\nvoice = 1.5", "default.voice must be a whole number"),
        ("[callers.x]\nrate_share = 0", "callers.x.rate_share must be above 0"),
        ("[callers.x]\nrate_share = 1.5", "callers.x.rate_share must be above 0"),
        ("[callers.x]\nsessions = 3", "unknown key 'sessions'"),
        ("[limits]\nvoice = 1", "unknown table 'limits'"),
        ("not toml [", "Expected"),
    ],
)
def test_a_bad_quotas_file_says_what_and_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "q.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_quotas(path)


def test_the_quotas_file_names_defaults_and_callers(tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text(QUOTAS + "\n[callers.bursty]\nrate_share = 0.25\n")
    policy = load_quotas(path)
    assert policy.for_caller("alice").sessions("voice") == 3
    assert policy.for_caller("alice").sessions("digital_human") is None
    assert policy.for_caller("nobody").sessions("digital_human") == 0
    assert policy.for_caller("bursty").rate_share == 0.25 and policy.limits_rate


async def test_one_caller_bursting_does_not_starve_another() -> None:
    """With a plain per-action bucket, a burst of 100 reserves a second of tokens ahead of
    everyone; with a share of 0.2 the burster is held to 10/s and the other caller goes first."""
    caller: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="other")

    async def other_waits(limiter: RateLimiter | FairRateLimiter) -> float:
        async def burster() -> None:
            caller.set("bursty")
            await asyncio.gather(*(limiter.acquire("CreateAgentInstance") for _ in range(100)))

        task = asyncio.create_task(burster())
        await asyncio.sleep(0.01)  # the burst has reserved what it could
        try:
            waits = await asyncio.gather(*(limiter.acquire("CreateAgentInstance") for _ in range(5)))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return max(waits)

    plain = await other_waits(RateLimiter(50))
    fair = await other_waits(
        FairRateLimiter(50, caller=caller.get, share=lambda name: 0.2 if name == "bursty" else None)
    )
    assert plain >= 0.9  # queued behind the burst's 50 queued reservations
    assert fair < 0.05
