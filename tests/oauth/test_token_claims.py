"""Access-token claims: `TokenIssuer.issue(audience=, claims=)` and the `Principal` fields read
from them (scopes, space, client id, connection id), strictly parsed."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from mana_auth import AuthError, KeyStore, LocalKeys, TokenIssuer, TokenVerifier
from mana_auth.keys import ALGORITHM

RESOURCE = "http://127.0.0.1:8000/mcp"


def _verifier(store: KeyStore) -> TokenVerifier:
    return TokenVerifier(LocalKeys(store), issuer="mana-local").accepting(RESOURCE)


def _raw(store: KeyStore, **extra: Any) -> str:
    """A token signed with the real key, carrying claims `issue` would never write."""
    key = store.signing_key()
    now = int(time.time())
    body = {"iss": "mana-local", "sub": "usr_1", "aud": RESOURCE, "iat": now, "exp": now + 300}
    return jwt.encode(
        {**body, **extra}, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid}
    )


async def test_oauth_claims_round_trip(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    issued = TokenIssuer(store).issue(
        "usr_1",
        email="a@b.test",
        ttl=timedelta(hours=1),
        audience=RESOURCE,
        claims={
            "scope": "mana:read mana:write",
            "space": "spc_9",
            "client_id": "c1",
            "gid": "conn_x",
        },
    )
    assert jwt.decode(issued.token, options={"verify_signature": False})["aud"] == RESOURCE
    principal = await _verifier(store).verify(issued.token)
    assert principal.user_id == "usr_1" and principal.email == "a@b.test"
    assert principal.scopes == frozenset({"mana:read", "mana:write"})
    assert principal.space == "spc_9"
    assert principal.client_id == "c1"
    assert principal.grant_id == "conn_x"


async def test_local_token_is_unchanged(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    issued = TokenIssuer(store).issue("usr_1", email=None, ttl=timedelta(minutes=5))
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert payload["aud"] == "mana"
    assert set(payload) == {"iss", "sub", "aud", "iat", "nbf", "exp", "jti"}
    principal = await _verifier(store).verify(issued.token)
    assert principal.scopes is None  # no scope claim: full access
    assert (principal.space, principal.client_id, principal.grant_id) == (None, None, None)


async def test_empty_scope_claim_grants_nothing(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    principal = await _verifier(store).verify(_raw(store, scope=""))
    assert principal.scopes == frozenset()


async def test_scope_claim_is_split_on_spaces_only(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    verifier = _verifier(store)
    spaced = await verifier.verify(_raw(store, scope=" mana:read  mana:write "))
    assert spaced.scopes == frozenset({"mana:read", "mana:write"})
    tabbed = await verifier.verify(_raw(store, scope="mana:read\tmana:write"))
    assert tabbed.scopes == frozenset({"mana:read\tmana:write"})  # one unknown scope


@pytest.mark.parametrize("reserved", ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"])
def test_extra_claims_cannot_override_reserved(tmp_path: Path, reserved: str) -> None:
    issuer = TokenIssuer(KeyStore(tmp_path))
    with pytest.raises(ValueError, match=reserved):
        issuer.issue("usr_1", email=None, ttl=timedelta(minutes=5), claims={reserved: "x"})


@pytest.mark.parametrize(
    "claims",
    [
        {"scope": ["mana:read"]},
        {"scope": 1},
        {"space": 7},
        {"space": ""},
        {"client_id": {"a": 1}},
        {"gid": ""},
        {"gid": ["conn_1"]},
    ],
)
async def test_malformed_claims_are_refused(tmp_path: Path, claims: dict[str, Any]) -> None:
    store = KeyStore(tmp_path)
    with pytest.raises(AuthError) as info:
        await _verifier(store).verify(_raw(store, **claims))
    assert info.value.reason == "malformed-claim"
    assert info.value.status == 401
