"""JWT verification: what is accepted, what is refused, and with which reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import httpx
import jwt
import pytest

from service.auth.bearer import JwtVerifier
from service.auth.jwks import JwksFile, JwksUrl, parse_jwks
from service.auth.principal import Role
from service.errors import Unauthenticated
from tests.auth.keys import SigningKey, ec_key, ed_key, rsa_key, write_jwks


class StaticKeys:
    def __init__(self, *keys: SigningKey, with_alg: bool = False) -> None:
        self._keys = parse_jwks(json.dumps({"keys": [k.jwk(with_alg=with_alg) for k in keys]}))

    async def keys(self, *, refresh: bool = False) -> list:  # type: ignore[type-arg]
        return self._keys


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def reason_of(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        await verifier.verify(token)
    # Never a hint of what the gateway expected.
    assert "kid" not in str(info.value) and "iss" not in str(info.value)
    return info.value.reason


@pytest.mark.parametrize("make", [rsa_key, ec_key, ed_key], ids=["RS256", "ES256", "EdDSA"])
async def test_a_valid_token_names_its_subject_and_role(make: object) -> None:
    key = make()  # type: ignore[operator]
    verifier = JwtVerifier(StaticKeys(key))
    principal = await verifier.verify(key.token(sub="billing-svc"))
    assert (principal.name, principal.role, principal.method) == ("billing-svc", Role.CALLER, "jwt")
    viewer = await verifier.verify(key.token(sub="sre", agentgw_role="viewer"))
    assert viewer.role is Role.VIEWER and viewer.can_read_all and not viewer.is_admin
    admin = await verifier.verify(key.token(sub="ops", agentgw_role="admin"))
    assert admin.is_admin


async def test_expired_tokens_are_token_expired_and_skew_is_bounded_by_leeway() -> None:
    key = rsa_key()
    strict = JwtVerifier(StaticKeys(key), leeway_seconds=0)
    assert await reason_of(strict, key.token(exp=int(time.time()) - 5)) == "TOKEN_EXPIRED"
    lenient = JwtVerifier(StaticKeys(key), leeway_seconds=30)
    assert (await lenient.verify(key.token(exp=int(time.time()) - 5))).name == "svc-a"
    assert await reason_of(lenient, key.token(exp=int(time.time()) - 60)) == "TOKEN_EXPIRED"
    # Not yet valid beyond the leeway.
    assert await reason_of(lenient, key.token(nbf=int(time.time()) + 120)) == "TOKEN_INVALID"


@pytest.mark.parametrize("missing", ["exp", "sub"])
async def test_exp_and_sub_are_required(missing: str) -> None:
    key = rsa_key()
    assert await reason_of(JwtVerifier(StaticKeys(key)), key.token(**{missing: None})) == "TOKEN_INVALID"


async def test_issuer_and_audience_are_checked_when_configured() -> None:
    key = rsa_key()
    verifier = JwtVerifier(StaticKeys(key), issuer="https://idp.internal", audience="agentgw")
    ok = key.token(iss="https://idp.internal", aud="agentgw")
    assert (await verifier.verify(ok)).name == "svc-a"
    assert await reason_of(verifier, key.token(iss="https://evil", aud="agentgw")) == "TOKEN_INVALID"
    assert await reason_of(verifier, key.token(iss="https://idp.internal", aud="other")) == "TOKEN_INVALID"
    assert await reason_of(verifier, key.token(iss="https://idp.internal")) == "TOKEN_INVALID"
    # Unconfigured, neither is required.
    assert (await JwtVerifier(StaticKeys(key)).verify(key.token(aud="anything"))).name == "svc-a"


async def test_alg_none_is_refused() -> None:
    key = rsa_key()
    header = _b64({"alg": "none", "typ": "JWT", "kid": key.kid})
    body = _b64({"sub": "root", "exp": int(time.time()) + 300, "agentgw_role": "admin"})
    assert await reason_of(JwtVerifier(StaticKeys(key)), f"{header}.{body}.") == "TOKEN_INVALID"


async def test_hmac_signed_with_the_public_key_is_refused() -> None:
    """The classic confusion: an HS256 token whose secret is the verifier's own public key."""
    key = rsa_key()
    # PyJWT itself refuses to HMAC with a PEM key, so the token is forged by hand.
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": key.kid})
    body = _b64({"sub": "root", "exp": int(time.time()) + 300, "agentgw_role": "admin"})
    mac = hmac.new(key.public_pem(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert await reason_of(JwtVerifier(StaticKeys(key)), forged) == "TOKEN_INVALID"


async def test_symmetric_keys_in_the_jwks_are_never_used() -> None:
    secret = b"shared-secret-of-32-bytes-length!"
    oct_jwk = {"kty": "oct", "kid": "hs", "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}
    with pytest.raises(ValueError, match="no usable asymmetric"):
        parse_jwks(json.dumps({"keys": [oct_jwk]}))
    rsa = rsa_key()
    keys = parse_jwks(json.dumps({"keys": [oct_jwk, rsa.jwk()]}))
    assert [k.kid for k in keys] == [rsa.kid]


async def test_an_algorithm_that_does_not_match_the_key_is_refused() -> None:
    rsa, ec = rsa_key(), ec_key()
    verifier = JwtVerifier(StaticKeys(rsa, ec))
    # An ES256 token that names the RSA key's kid.
    token = jwt.encode(
        {"sub": "x", "exp": int(time.time()) + 60}, ec.private, algorithm="ES256", headers={"kid": rsa.kid}
    )
    assert await reason_of(verifier, token) == "TOKEN_INVALID"
    # A key pinned to RS256 does not verify PS256.
    pinned = JwtVerifier(StaticKeys(rsa, with_alg=True))
    ps = SigningKey(rsa.kid, "PS256", rsa.private).token()
    assert await reason_of(pinned, ps) == "TOKEN_INVALID"
    assert (await JwtVerifier(StaticKeys(rsa)).verify(ps)).name == "svc-a"


async def test_kid_selects_the_key_and_is_required_among_several() -> None:
    a, b = rsa_key("a"), rsa_key("b")
    verifier = JwtVerifier(StaticKeys(a, b))
    assert (await verifier.verify(b.token(sub="from-b"))).name == "from-b"
    no_kid = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, a.private, algorithm="RS256")
    assert await reason_of(verifier, no_kid) == "TOKEN_INVALID"
    assert await reason_of(verifier, a.token(headers={"kid": "unknown"})) == "TOKEN_INVALID"
    # A signature by another key under a known kid.
    impostor = SigningKey("a", "RS256", rsa_key().private)
    assert await reason_of(verifier, impostor.token()) == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", "x" * 10_000, "..."],
    ids=["empty", "garbage", "three-parts", "huge", "dots"],
)
async def test_malformed_tokens_are_token_invalid(token: str) -> None:
    assert await reason_of(JwtVerifier(StaticKeys(rsa_key())), token) == "TOKEN_INVALID"


@pytest.mark.parametrize("role", ["root", 7, ""])
async def test_an_unknown_role_claim_is_token_invalid(role: object) -> None:
    key = rsa_key()
    assert await reason_of(JwtVerifier(StaticKeys(key)), key.token(agentgw_role=role)) == "TOKEN_INVALID"


async def test_the_jwks_file_is_reloaded_when_it_changes(tmp_path: Path) -> None:
    old, new = rsa_key("old"), rsa_key("new")
    path = write_jwks(tmp_path / "jwks.json", old)
    ticks = [0.0]
    source = JwksFile(path, clock=lambda: ticks[0])
    verifier = JwtVerifier(source)
    assert (await verifier.verify(old.token())).name == "svc-a"
    write_jwks(path, new)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    ticks[0] = 5.0
    assert (await verifier.verify(new.token())).name == "svc-a"
    assert await reason_of(verifier, old.token()) == "TOKEN_INVALID"
    # A broken file keeps the last good keys.
    path.write_text("{not json")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    ticks[0] = 10.0
    assert (await verifier.verify(new.token())).name == "svc-a"


def test_a_jwks_file_without_keys_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": []}))
    with pytest.raises(ValueError, match="no usable"):
        JwksFile(path)


async def test_the_jwks_url_is_cached_and_refreshed_for_unknown_kids_at_a_bounded_rate() -> None:
    first, second = rsa_key("first"), rsa_key("second")
    served = {"keys": [first.jwk()]}
    fetches: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetches.append(str(request.url))
        return httpx.Response(200, json=served)

    ticks = [0.0]
    source = JwksUrl(
        "https://idp.internal/jwks.json",
        ttl_seconds=300,
        min_refresh_seconds=10,
        transport=httpx.MockTransport(handler),
        clock=lambda: ticks[0],
    )
    try:
        verifier = JwtVerifier(source)
        for _ in range(5):
            assert (await verifier.verify(first.token())).name == "svc-a"
        assert len(fetches) == 1
        served = {"keys": [first.jwk(), second.jwk()]}
        # An unknown kid right after a fetch waits for min_refresh.
        assert await reason_of(verifier, second.token()) == "TOKEN_INVALID"
        assert len(fetches) == 1
        ticks[0] = 11.0
        assert (await verifier.verify(second.token())).name == "svc-a"
        assert len(fetches) == 2
    finally:
        await source.aclose()


def test_a_broken_jwks_entry_is_logged_without_its_contents(caplog: pytest.LogCaptureFixture) -> None:
    good = rsa_key()
    broken = {"kty": "RSA", "kid": "broken", "n": "secret-looking-material", "e": "AQAB", "d": "private-part"}
    with caplog.at_level("WARNING", logger="agentgw.auth"):
        keys = parse_jwks(json.dumps({"keys": [broken, good.jwk()]}))
    assert [k.kid for k in keys] == [good.kid]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "JWKS key 0 ignored" in logged
    assert "private-part" not in logged and "secret-looking-material" not in logged
