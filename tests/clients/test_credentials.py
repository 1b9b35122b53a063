"""Credentials hooks: TLS from PEM files (server verified against our CA), a bearer token on every
call (rotating), and no token ever sent in plaintext off loopback."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agentgw_client import AgentGw, Credentials, RetryPolicy, errors
from agentgw_client.gen.agentgw.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc


def _pem_pair(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentgw test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentgw")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class EchoAuth(agent_service_pb2_grpc.AgentServiceServicer):
    """GetAgent answers with the caller's authorization and x-request-id headers as the agent."""

    async def GetAgent(  # type: ignore[override]
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_service_pb2.GetAgentResponse:
        headers = dict(context.invocation_metadata() or ())
        return agent_service_pb2.GetAgentResponse(
            agent=agent_pb2.Agent(agent_id=str(headers.get("x-request-id", "")),
                                  display_name=str(headers.get("authorization", "")))
        )  # fmt: skip


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    ca, cert, key = _pem_pair(tmp_path)
    server = grpc.aio.server()
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(EchoAuth(), server)
    port = server.add_secure_port(
        "127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    )
    await server.start()
    yield port, ca
    await server.stop(None)


async def test_tls_from_files_with_a_rotating_bearer_token(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    tokens = iter(["first", "second"])
    credentials = Credentials.tls(ca=ca, bearer_token=lambda: next(tokens))
    async with AgentGw(f"127.0.0.1:{port}", credentials=credentials) as gw:
        one = await gw.agents.get("x")
        two = await gw.agents.get("x")
    assert (one.display_name, two.display_name) == ("Bearer first", "Bearer second")
    assert one.agent_id and two.agent_id and one.agent_id != two.agent_id, "a request id per call"


async def test_a_server_not_signed_by_the_ca_is_refused(tls_server: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = tls_server
    (tmp_path / "other").mkdir()
    other_ca, _, _ = _pem_pair(tmp_path / "other")  # a CA that did not sign the server
    async with AgentGw(
        f"127.0.0.1:{port}", credentials=Credentials.tls(ca=other_ca), retry=RetryPolicy.never(), timeout=3
    ) as gw:
        with pytest.raises(errors.Unavailable):
            await gw.agents.get("x")


def test_a_bearer_token_is_never_sent_in_plaintext_off_loopback() -> None:
    with pytest.raises(ValueError, match="plaintext"):
        Credentials(bearer_token="t").channel("agentgw.internal:50051", [])
    with pytest.raises(ValueError, match="plaintext"):
        Credentials(bearer_token="t").channel("10.0.0.7:50051", [])
    with pytest.raises(ValueError, match="use_tls"):
        Credentials(ca_file=Path("ca.pem"))
    with pytest.raises(ValueError, match="go together"):
        Credentials.tls(cert="c.pem")
