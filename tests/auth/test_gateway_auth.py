"""Authentication on a real gateway over loopback: JWT bearer tokens, TLS, mTLS, open health and
reflection, the principal in the call's log lines, and the split HTTP listeners."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.auth.principal import Role
from service.logs import CallContextFilter
from service.server import Gateway
from tests.auth.keys import Pki, SigningKey, make_pki, rsa_key, write_jwks
from tests.conftest import Emulator, gateway_settings, rich_error


class Captured(logging.Handler):
    """The records of agentgw's RPC log, with the call context the JSON formatter would print."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(CallContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> AsyncIterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("agentgw.rpc")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler  # type: ignore[misc]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


@pytest.fixture
def key() -> SigningKey:
    return rsa_key()


@pytest.fixture
async def jwt_gateway(emulator: Emulator, tmp_path: Path, key: SigningKey) -> AsyncIterator[Gateway]:
    jwks = write_jwks(tmp_path / "jwks.json", key)
    settings = gateway_settings(
        emulator,
        tmp_path / "ledger.db",
        auth_mode=frozenset({"jwt"}),
        auth_jwks_file=jwks,
        auth_issuer="https://idp.test",
        auth_audience="agentgw",
    )
    async with Gateway(settings) as gw:
        yield gw


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def capacity(channel: grpc.aio.Channel, metadata: Any = None) -> api.GetCapacityResponse:
    stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    return await stub.GetCapacity(api.GetCapacityRequest(), metadata=metadata, timeout=5)


async def test_jwt_mode_refuses_missing_expired_and_bad_tokens_with_their_reasons(
    jwt_gateway: Gateway, key: SigningKey
) -> None:
    good = {"iss": "https://idp.test", "aud": "agentgw"}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{jwt_gateway.grpc_port}") as channel:
        cases = {
            "CREDENTIALS_MISSING": None,
            "TOKEN_EXPIRED": bearer(key.token(good, exp=1_000_000)),
            "TOKEN_INVALID": bearer(key.token({"iss": "https://other", "aud": "agentgw"})),
        }
        for reason, metadata in cases.items():
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await capacity(channel, metadata)
            error = rich_error(info.value)
            assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)
            assert "https://idp.test" not in error.message and key.kid not in error.message
        assert len((await capacity(channel, bearer(key.token(good)))).pools) == 2


async def test_health_and_reflection_stay_open_without_credentials(jwt_gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{jwt_gateway.grpc_port}") as channel:
        check = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in stub.ServerReflectionInfo(iter([request]), timeout=5):
            names = {s.name for s in response.list_services_response.service}
            assert "agentgw.v1.SessionService" in names
            break


async def test_the_principal_is_in_every_log_line_of_the_call(
    jwt_gateway: Gateway, key: SigningKey, captured: Captured
) -> None:
    token = key.token({"iss": "https://idp.test", "aud": "agentgw", "sub": "billing-svc"})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{jwt_gateway.grpc_port}") as channel:
        await capacity(channel, bearer(token))
    lines = [r for r in captured.records if r.getMessage() == "rpc ok"]
    assert lines and all(getattr(r, "principal", None) == "billing-svc" for r in lines)


async def test_reflection_can_be_turned_off(emulator: Emulator, tmp_path: Path) -> None:
    async with Gateway(gateway_settings(emulator, tmp_path / "l.db", reflection=False)) as gw:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            request = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
            # As one unary call (the server answers UNIMPLEMENTED for the path whatever the call's
            # type): a stream's write racing that immediate answer was seen failing as INTERNAL in the
            # client's core on a loaded machine ("Failed execute_batch").
            call = channel.unary_unary("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(request, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_auth_off_logs_one_line_saying_so(
    emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentgw.auth"):
        async with Gateway(gateway_settings(emulator, tmp_path / "l.db")):
            pass
    assert [r.getMessage() for r in caplog.records if r.name == "agentgw.auth"] == [
        "authentication is off (AGENTGW_AUTH_MODE=none): every caller is an anonymous admin"
    ]


# --- TLS and mTLS ---------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def tls_channel(port: int, pki: Pki, client: tuple[Path, Path] | None = None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_file.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None,
    )
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials)


async def test_mtls_names_the_caller_by_spiffe_id_or_cn_and_maps_roles(
    emulator: Emulator, tmp_path: Path, pki: Pki, captured: Captured
) -> None:
    server_cert, server_key = pki.issue("server", cn="agentgw", server=True)
    settings = gateway_settings(
        emulator,
        tmp_path / "l.db",
        auth_mode=frozenset({"mtls"}),
        tls_cert_file=server_cert,
        tls_key_file=server_key,
        tls_client_ca_file=pki.ca_file,
        auth_roles=(("sre-bot", Role.VIEWER),),
    )
    spiffe = pki.issue("svc", cn="ignored-cn", spiffe="spiffe://corp.test/ns/care/sa/booking")
    sre = pki.issue("sre", cn="sre-bot")
    async with Gateway(settings) as gw:
        for client, expected in ((spiffe, "spiffe://corp.test/ns/care/sa/booking"), (sre, "sre-bot")):
            captured.records.clear()
            async with tls_channel(gw.grpc_port, pki, client) as channel:
                assert len((await capacity(channel)).pools) == 2
            assert {
                getattr(r, "principal", None) for r in captured.records if r.getMessage() == "rpc ok"
            } == {expected}
        # No client certificate: the TLS handshake itself is refused.
        async with tls_channel(gw.grpc_port, pki) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await capacity(channel)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # Nor does a plaintext client get in.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await capacity(channel)


async def test_server_tls_with_jwt_callers(emulator: Emulator, tmp_path: Path, pki: Pki) -> None:
    key = rsa_key()
    server_cert, server_key = pki.issue("server", cn="agentgw", server=True)
    settings = gateway_settings(
        emulator,
        tmp_path / "l.db",
        auth_mode=frozenset({"jwt", "mtls"}),
        auth_jwks_file=write_jwks(tmp_path / "jwks.json", key),
        tls_cert_file=server_cert,
        tls_key_file=server_key,
        tls_client_ca_file=pki.ca_file,
    )
    async with Gateway(settings) as gw:
        client = pki.issue("svc", cn="svc")
        async with tls_channel(gw.grpc_port, pki, client) as channel:
            # Either credential is enough in jwt,mtls mode.
            assert len((await capacity(channel)).pools) == 2
            assert len((await capacity(channel, bearer(key.token()))).pools) == 2
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await capacity(channel, bearer("not-a-token"))
            assert rich_error(info.value).reason == "TOKEN_INVALID"


async def test_server_tls_only(emulator: Emulator, tmp_path: Path, pki: Pki) -> None:
    server_cert, server_key = pki.issue("server", cn="agentgw", server=True)
    settings = gateway_settings(
        emulator, tmp_path / "l.db", tls_cert_file=server_cert, tls_key_file=server_key
    )
    async with Gateway(settings) as gw:
        async with tls_channel(gw.grpc_port, pki) as channel:
            assert len((await capacity(channel)).pools) == 2


# --- listeners --------------------------------------------------------------------------------------


async def test_callback_and_admin_listeners_are_split(emulator: Emulator, tmp_path: Path) -> None:
    settings = gateway_settings(
        emulator, tmp_path / "l.db", callback_listen="127.0.0.1:0", admin_listen="127.0.0.1:0"
    )
    async with Gateway(settings) as gw:
        assert gw.http_port != gw.admin_port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}", timeout=5) as public:
            for path in ("/metrics", "/healthz", "/readyz"):
                assert (await public.get(path)).status_code == 404
            # The callback route is there (an unsigned body is refused by the verifier, not 404).
            assert (await public.post("/v1/zego/callbacks", content=b"{}")).status_code in (400, 401)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.admin_port}", timeout=5) as admin:
            assert (await admin.get("/healthz")).status_code == 200
            assert (await admin.get("/readyz")).json() == {"ready": True}
            assert "agentgw_build_info" in (await admin.get("/metrics")).text
            assert (await admin.post("/v1/zego/callbacks", content=b"{}")).status_code == 404


async def test_http_listen_alone_serves_everything_on_one_address(gateway: Gateway) -> None:
    assert gateway.http_port == gateway.admin_port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.post("/v1/zego/callbacks", content=b"{}")).status_code in (400, 401)
