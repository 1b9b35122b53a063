"""Keys, JWKS documents, tokens and certificates made at test time (nothing is checked in)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class SigningKey:
    """A private key and the public JWK that verifies it."""

    kid: str
    alg: str
    private: PrivateKey

    def jwk(self, *, with_alg: bool = False) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm: Any = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}[self.kty]
        data: dict[str, Any] = json.loads(algorithm.to_jwk(public))
        data["kid"] = self.kid
        if with_alg:
            data["alg"] = self.alg
        return data

    @property
    def kty(self) -> str:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return "RSA"
        return "EC" if isinstance(self.private, ec.EllipticCurvePrivateKey) else "OKP"

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(
        self, claims: dict[str, Any] | None = None, *, headers: dict[str, Any] | None = None, **extra: Any
    ) -> str:
        body: dict[str, Any] = {"sub": "svc-a", "exp": int(time.time()) + 300}
        body.update(claims or {})
        body.update(extra)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body, self.private, algorithm=self.alg, headers={"kid": self.kid, **(headers or {})}
        )


def rsa_key(kid: str = "rsa-1", alg: str = "RS256") -> SigningKey:
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def ed_key(kid: str = "ed-1") -> SigningKey:
    return SigningKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def write_jwks(path: Path, *keys: SigningKey, extra: list[dict[str, Any]] | None = None) -> Path:
    path.write_text(json.dumps({"keys": [k.jwk() for k in keys] + (extra or [])}))
    return path


@dataclass
class Pki:
    """A throwaway CA, a server certificate for 127.0.0.1, and a way to issue client certificates."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def issue(
        self, name: str, *, cn: str, spiffe: str | None = None, server: bool = False
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = []
        if server:
            sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        if spiffe:
            sans.append(x509.UniformResourceIdentifier(spiffe))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_file, key_file = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_file, key_file


def make_pki(directory: Path) -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentgw test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pki = Pki(key, cert, directory)
    pki.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pki
