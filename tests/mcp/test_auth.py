"""mana_auth units: key store and rotation, token verification, remote JWKS (respx), password
login throttling, durations, settings validation, and the policy-decision metric source."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mana_auth import (
    AuthError,
    AuthUnavailable,
    KeyStore,
    LocalKeys,
    LoginThrottle,
    LoginThrottled,
    PasswordLogin,
    RemoteJwks,
    TokenIssuer,
    TokenVerifier,
    parse_duration,
)
from mana_auth.keys import public_jwk_of, thumbprint_kid
from mana_cli.config import Settings
from mana_http.metrics import Metrics
from policy.metrics import PolicyMetrics
from tool_registry.errors import ValidationFailed
from tool_registry.testing import ToolKit

JWKS_URL = "https://auth.mana.test/.well-known/jwks.json"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_key_created_on_first_use_with_kid(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    assert store.jwks() == {"keys": []}
    key = store.signing_key()
    (info,) = store.published()
    assert info.kid == key.kid == thumbprint_kid(info.public_jwk)
    assert store.jwks()["keys"][0] == {
        **info.public_jwk,
        "kid": key.kid,
        "use": "sig",
        "alg": "EdDSA",
    }
    assert KeyStore(tmp_path).signing_key().kid == key.kid  # stable across processes


def test_rotation_keeps_old_public_key_until_its_tokens_expire(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path, clock=clock)
    issuer = TokenIssuer(store, clock=lambda: clock.now.timestamp())
    old = issuer.issue("usr_1", email=None, ttl=timedelta(hours=2))
    other_process = KeyStore(tmp_path, clock=clock)
    assert other_process.signing_key().kid == old.kid

    new, retired = store.rotate()
    assert retired is not None and retired.kid == old.kid and new.kid != old.kid
    assert not (store.directory / f"{old.kid}.pem").exists()  # nobody can sign with it any more
    assert other_process.signing_key().kid == new.kid  # noticed the rotation on disk
    assert {k["kid"] for k in store.jwks()["keys"]} == {old.kid, new.kid}

    clock.now += timedelta(hours=1)
    assert old.kid in {k.kid for k in store.published()}
    clock.now += timedelta(hours=1, minutes=2)  # past the last token's expiry (+ leeway)
    assert {k.kid for k in store.published()} == {new.kid}
    assert store.public_key(old.kid) is None


async def test_verifier_checks_and_caches(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    issued = TokenIssuer(store).issue("usr_1", email="a@b.test", ttl=timedelta(minutes=5))

    class CountingKeys(LocalKeys):
        calls = 0

        async def find(self, kid: str) -> Any:
            CountingKeys.calls += 1
            return await super().find(kid)

    verifier = TokenVerifier(CountingKeys(store), issuer="mana-local")
    first = await verifier.verify(issued.token)
    second = await verifier.verify(issued.token)
    assert first == second and first.user_id == "usr_1" and first.email == "a@b.test"
    assert CountingKeys.calls == 1  # the second request did not re-verify the signature
    with pytest.raises(AuthError) as info:
        await TokenVerifier(LocalKeys(store), audience="other").verify(issued.token)
    assert info.value.reason == "wrong-audience"


def _jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    return {**public_jwk_of(key.public_key()), "kid": kid, "alg": "EdDSA", "use": "sig"}


def _token(key: Any, kid: str, alg: str = "EdDSA", **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "usr_remote", "aud": "mana", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@respx.mock
async def test_remote_jwks_fetch_cache_and_rotation() -> None:
    k1, k2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    secret = b"shared-secret-that-must-never-be-accepted"
    oct_jwk = {"kty": "oct", "kid": "hmac", "k": base64.urlsafe_b64encode(secret).decode()}
    route = respx.get(JWKS_URL).mock(
        return_value=httpx.Response(
            200, json={"keys": [_jwk(k1, "k1"), {**rsa_jwk, "kid": "r1"}, oct_jwk]}
        )
    )
    now = [1000.0]
    remote = RemoteJwks(JWKS_URL, clock=lambda: now[0], ttl=300, min_refresh_interval=30)
    verifier = TokenVerifier(remote, issuer=None)
    assert (await verifier.verify(_token(k1, "k1"))).user_id == "usr_remote"
    assert (await verifier.verify(_token(rsa_key, "r1", alg="RS256"))).user_id == "usr_remote"
    with pytest.raises(AuthError) as info:
        await verifier.verify(_token(secret, "hmac", alg="HS256"))
    assert info.value.reason == "alg-not-allowed"
    assert route.call_count == 1

    # the auth server rotates: an unknown kid triggers one early re-fetch, not one per request
    route.mock(return_value=httpx.Response(200, json={"keys": [_jwk(k2, "k2")]}))
    with pytest.raises(AuthError):
        await verifier.verify(_token(k2, "k2", jti="a"))  # within min_refresh_interval
    now[0] += 31
    assert (await verifier.verify(_token(k2, "k2", jti="b"))).kid == "k2"
    for i in range(5):
        with pytest.raises(AuthError) as info:
            await verifier.verify(_token(k1, "made-up", jti=str(i)))
        assert info.value.reason == "unknown-kid"
    assert route.call_count == 2

    # the auth server is down: keep using the keys we have
    route.mock(side_effect=httpx.ConnectError("down"))
    now[0] += 400
    assert (await verifier.verify(_token(k2, "k2", jti="c"))).kid == "k2"
    await remote.aclose()


@respx.mock
async def test_remote_jwks_unavailable_is_503() -> None:
    respx.get(JWKS_URL).mock(return_value=httpx.Response(500))
    verifier = TokenVerifier(RemoteJwks(JWKS_URL))
    with pytest.raises(AuthUnavailable) as info:
        await verifier.verify(_token(Ed25519PrivateKey.generate(), "k1"))
    assert info.value.status == 503


def test_remote_jwks_url_must_be_https() -> None:
    with pytest.raises(ValueError, match="https"):
        RemoteJwks("http://auth.example.com/jwks.json")


async def test_login_throttles_repeated_failures(mana_kit: ToolKit, tmp_path: Path) -> None:
    await mana_kit.user("ann@kit.test", password="correct-horse")
    now = [0.0]
    login = PasswordLogin(
        mana_kit.accounts,
        TokenIssuer(KeyStore(tmp_path)),
        LoginThrottle(per_client=2, per_account=4, window=60, clock=lambda: now[0]),
    )
    for _ in range(2):
        with pytest.raises(AuthError) as info:
            await login.login("ann@kit.test", "wrong")
        assert info.value.reason == "bad-credentials"
    with pytest.raises(LoginThrottled):
        await login.login("ann@kit.test", "correct-horse")
    now[0] += 61
    issued = await login.login("ANN@kit.test", "correct-horse")
    assert issued.expires_in() <= 3600


def test_durations() -> None:
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("7d") == timedelta(days=7)
    for bad in ("", "1w", "-5m", "0s", "h"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_settings_for_the_server() -> None:
    s = Settings.load(
        {},
        {
            "MANA_JWT_AUDIENCE": "mana-prod",
            "MANA_JWKS_URL": "https://auth.example.com/.well-known/jwks.json",
            "MANA_ALLOWED_ORIGINS": "http://localhost:6274, https://app.example.com",
            "MANA_SESSION_IDLE_SECONDS": "600",
            "MANA_SESSIONS_PER_USER": "4",
            "MANA_USER": "demo@mana.test",
            "MANA_SPACE": "demo-studio",
        },
    )
    assert s.jwt_audience == "mana-prod" and s.sessions_per_user == 4
    assert s.allowed_origins == ("http://localhost:6274", "https://app.example.com")
    assert (s.user, s.space, s.session_idle_seconds) == ("demo@mana.test", "demo-studio", 600)
    assert s.with_flags(host="127.0.0.2", port=8080, space="x").space == "x"
    for env in (
        {"MANA_JWKS_URL": "http://evil.example/jwks.json"},
        {"MANA_ALLOWED_ORIGINS": "*"},
        {"MANA_SESSION_IDLE_SECONDS": "0"},
        {"MANA_SESSIONS_PER_USER": "many"},
        {"MANA_JWT_AUDIENCE": "two words"},
    ):
        with pytest.raises(ValidationFailed, match=next(iter(env))):
            Settings.load({}, env)


def test_policy_metrics_come_from_the_gate_when_it_counts() -> None:
    counter = PolicyMetrics()
    counter.count("deny", "destructive-not-allowed", "enforce")
    counter.count("allow", "allowed", "enforce")

    class Gate:
        metrics = counter

    text = Metrics(gate=Gate()).render().decode()
    assert (
        'mana_policy_decisions_total{decision="deny",mode="enforce",'
        'reason="destructive-not-allowed"} 1.0'
    ) in text
