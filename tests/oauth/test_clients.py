"""Dynamic client registration (RFC 7591) on the store of both backends: good metadata is
stored with defaults and answered (a secret only for confidential clients, stored hashed); bad
metadata is refused as invalid_redirect_uri / invalid_client_metadata and nothing is stored.
Client authentication at the token endpoint by the registered method only, and exact redirect
URI matching."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from mana_oauth.cimd import CimdPolicy
from mana_oauth.clients import DCR_CLIENT_PREFIX, Client, ClientError, ClientRegistry
from mana_oauth.store import ClientRecord, OAuthStore, secret_hash
from tests.oauth.helpers import SetClock, oauth_database

INSPECTOR = "http://localhost:6274/oauth/callback"


@pytest.fixture
def clock() -> SetClock:
    return SetClock()


@pytest_asyncio.fixture
async def store(database_target: str, clock: SetClock) -> AsyncIterator[OAuthStore]:
    async with oauth_database(database_target) as db:
        yield OAuthStore(db, clock)


@pytest.fixture
def registry(store: OAuthStore, clock: SetClock) -> ClientRegistry:
    return ClientRegistry(store, CimdPolicy(), clock=clock)


async def stored_clients(store: OAuthStore) -> int:
    return int(
        await store.db.read(lambda c: c.execute("SELECT count(*) FROM oauth_clients").fetchone()[0])
    )


def metadata(**extra: Any) -> dict[str, Any]:
    return {"client_name": "MCP Inspector", "redirect_uris": [INSPECTOR], **extra}


# -- registration -----------------------------------------------------------------------------


async def test_a_public_client_is_registered_with_defaults_and_no_secret(
    registry: ClientRegistry, store: OAuthStore, clock: SetClock
) -> None:
    body = await registry.register(
        metadata(unknown_field="dropped", jwks_uri="https://x.example/j")
    )

    client_id = body["client_id"]
    assert client_id.startswith(DCR_CLIENT_PREFIX)
    assert body == {
        "client_id": client_id,
        "client_id_issued_at": int(clock()),
        "client_name": "MCP Inspector",
        "redirect_uris": [INSPECTOR],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    record = await store.get_client(client_id)
    assert record is not None
    assert (record.kind, record.secret_hash, record.expires_at) == ("dcr", None, None)
    assert await registry.resolve(client_id) == Client(
        client_id=client_id,
        kind="dcr",
        name="MCP Inspector",
        redirect_uris=(INSPECTOR,),
        token_endpoint_auth_method="none",
        client_uri=None,
        logo_uri=None,
        grant_types=("authorization_code",),
    )
    again = await registry.register(metadata())
    assert again["client_id"] != client_id


async def test_null_fields_count_as_absent(registry: ClientRegistry) -> None:
    body = await registry.register(
        metadata(token_endpoint_auth_method=None, contacts=None, grant_types=None, logo_uri=None)
    )

    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code"]
    assert "contacts" not in body and "logo_uri" not in body


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
async def test_a_confidential_client_gets_a_secret_once_and_it_is_stored_hashed(
    registry: ClientRegistry, store: OAuthStore, method: str
) -> None:
    body = await registry.register(
        metadata(
            token_endpoint_auth_method=method, grant_types=["authorization_code", "refresh_token"]
        )
    )

    secret = body["client_secret"]
    assert len(secret) >= 32 and body["client_secret_expires_at"] == 0
    assert body["token_endpoint_auth_method"] == method
    record = await store.get_client(body["client_id"])
    assert record is not None and record.secret_hash == secret_hash(secret)
    assert secret not in repr(record)
    client = await registry.resolve(body["client_id"])
    assert client.grant_types == ("authorization_code", "refresh_token")
    assert not client.is_public


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/oauth/callback",
        INSPECTOR,
        "http://127.0.0.1:33418/",
        "http://[::1]:8080/cb",
        "cursor://anysphere.cursor-retrieval/oauth/user-mana/callback",
        "com.example.app:/oauth2redirect",
    ],
)
async def test_redirect_uris_of_web_loopback_and_native_clients_are_accepted(
    registry: ClientRegistry, uri: str
) -> None:
    body = await registry.register(metadata(redirect_uris=[uri]))

    assert body["redirect_uris"] == [uri]


@pytest.mark.parametrize(
    ("change", "error", "reason"),
    [
        ({"redirect_uris": None}, "invalid_redirect_uri", "redirect_uris is required"),
        ({"redirect_uris": []}, "invalid_redirect_uri", "redirect_uris is required"),
        ({"redirect_uris": INSPECTOR}, "invalid_redirect_uri", "must be a list of strings"),
        ({"redirect_uris": [7]}, "invalid_redirect_uri", "must be a list of strings"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri", "scheme javascript:"),
        ({"redirect_uris": ["data:text/html,hi"]}, "invalid_redirect_uri", "scheme data:"),
        ({"redirect_uris": ["file:///etc/passwd"]}, "invalid_redirect_uri", "scheme file:"),
        ({"redirect_uris": ["https://app.example/cb#x"]}, "invalid_redirect_uri", "fragment"),
        ({"redirect_uris": ["http://app.example/cb"]}, "invalid_redirect_uri", "must be https"),
        ({"redirect_uris": ["https://u:p@app.example/cb"]}, "invalid_redirect_uri", "credentials"),
        ({"redirect_uris": ["/relative/cb"]}, "invalid_redirect_uri", "not an absolute URI"),
        ({"redirect_uris": ["https:///cb"]}, "invalid_redirect_uri", "has no host"),
        ({"redirect_uris": ["myapp:"]}, "invalid_redirect_uri", "nothing after its scheme"),
        ({"redirect_uris": ["https://a.example/ cb"]}, "invalid_redirect_uri", "whitespace"),
        (
            {"redirect_uris": ["https://a.example/" + "x" * 2000]},
            "invalid_redirect_uri",
            "longer than 2000",
        ),
        (
            {"redirect_uris": [f"https://a.example/{i}" for i in range(21)]},
            "invalid_redirect_uri",
            "at most 20 entries",
        ),
        ({"grant_types": ["implicit"]}, "invalid_client_metadata", "grant_types must be a subset"),
        (
            {"grant_types": ["client_credentials"]},
            "invalid_client_metadata",
            "grant_types must be a subset",
        ),
        (
            {"grant_types": ["refresh_token"]},
            "invalid_client_metadata",
            "must include authorization_code",
        ),
        ({"response_types": ["token"]}, "invalid_client_metadata", 'must be ["code"]'),
        (
            {"token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
            "token_endpoint_auth_method must be one of",
        ),
        ({"client_name": "x" * 201}, "invalid_client_metadata", "client_name must be a string"),
        ({"client_name": ["x"]}, "invalid_client_metadata", "client_name must be a string"),
        ({"client_name": "Claude\nAllow"}, "invalid_client_metadata", "control characters"),
        (
            {"client_uri": "javascript://x.example/"},
            "invalid_client_metadata",
            "client_uri must be an http(s) URL",
        ),
        ({"logo_uri": "not a url"}, "invalid_client_metadata", "logo_uri must be an http(s) URL"),
        ({"contacts": ["a@x.example"] * 11}, "invalid_client_metadata", "at most 10 entries"),
        ({"contacts": ["a" * 201]}, "invalid_client_metadata", "at most 200 characters"),
        ({"grant_types": "authorization_code"}, "invalid_client_metadata", "list of strings"),
    ],
)
async def test_bad_metadata_is_refused_and_nothing_is_stored(
    registry: ClientRegistry,
    store: OAuthStore,
    change: dict[str, Any],
    error: str,
    reason: str,
) -> None:
    with pytest.raises(ClientError) as caught:
        await registry.register({**metadata(), **change})

    assert caught.value.error == error
    assert reason in caught.value.description
    assert await stored_clients(store) == 0


async def test_a_body_that_is_not_an_object_is_refused(registry: ClientRegistry) -> None:
    with pytest.raises(ClientError) as caught:
        await registry.register([INSPECTOR])  # type: ignore[arg-type]

    assert caught.value.error == "invalid_client_metadata"


# -- resolving and authenticating ---------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["", "mana_client_unknown", "https"])
async def test_an_unknown_client_is_invalid_client(
    registry: ClientRegistry, client_id: str
) -> None:
    with pytest.raises(ClientError) as caught:
        await registry.resolve(client_id)

    assert caught.value.error == "invalid_client"


async def test_a_public_client_authenticates_with_its_client_id_only(
    registry: ClientRegistry,
) -> None:
    client_id = (await registry.register(metadata()))["client_id"]

    assert (await registry.authenticate(client_id, None, None)).client_id == client_id
    with pytest.raises(ClientError, match="authenticates with none, not client_secret_post"):
        await registry.authenticate(client_id, "guess", None)
    with pytest.raises(ClientError, match="authenticates with none, not client_secret_basic"):
        await registry.authenticate(None, None, (client_id, "guess"))


async def test_a_cached_metadata_document_client_is_a_public_client(
    registry: ClientRegistry, store: OAuthStore, clock: SetClock
) -> None:
    url = "https://client.example/oauth/metadata.json"
    await store.save_client(
        ClientRecord(
            url,
            "cimd",
            {"redirect_uris": [INSPECTOR], "token_endpoint_auth_method": "none"},
            None,
            clock(),
            clock() + 600,
        )
    )

    client = await registry.authenticate(url, None, None)

    assert (client.kind, client.name, client.is_public) == ("cimd", url, True)
    with pytest.raises(ClientError) as caught:
        await registry.authenticate(url, "a-secret", None)
    assert caught.value.error == "invalid_client"


async def test_client_secret_post_authenticates_only_with_its_secret_in_the_body(
    registry: ClientRegistry,
) -> None:
    body = await registry.register(metadata(token_endpoint_auth_method="client_secret_post"))
    client_id, secret = body["client_id"], body["client_secret"]

    assert (await registry.authenticate(client_id, secret, None)).client_id == client_id
    for attempt, reason in [
        ((client_id, secret + "x", None), "client authentication failed"),
        ((client_id, "", None), "client authentication failed"),
        ((client_id, None, None), "authenticates with client_secret_post, not none"),
        ((None, None, (client_id, secret)), "not client_secret_basic"),
        ((client_id, secret, (client_id, secret)), "one client authentication method"),
        ((None, secret, None), "client_id is missing"),
    ]:
        with pytest.raises(ClientError) as caught:
            await registry.authenticate(*attempt)
        assert caught.value.error == "invalid_client" and reason in caught.value.description


async def test_client_secret_basic_authenticates_only_with_the_authorization_header(
    registry: ClientRegistry,
) -> None:
    body = await registry.register(metadata(token_endpoint_auth_method="client_secret_basic"))
    client_id, secret = body["client_id"], body["client_secret"]
    other = (await registry.register(metadata()))["client_id"]

    assert (await registry.authenticate(None, None, (client_id, secret))).client_id == client_id
    assert (
        await registry.authenticate(client_id, None, (client_id, secret))
    ).client_id == client_id
    for attempt, reason in [
        ((None, None, (client_id, "wrong")), "client authentication failed"),
        ((other, None, (client_id, secret)), "differs from the Authorization header"),
        ((client_id, secret, None), "not client_secret_post"),
        ((None, None, ("mana_client_nobody", secret)), "unknown client_id"),
    ]:
        with pytest.raises(ClientError) as caught:
            await registry.authenticate(*attempt)
        assert caught.value.error == "invalid_client" and reason in caught.value.description


# -- Client -------------------------------------------------------------------------------------


def client_with(*uris: str) -> Client:
    return Client.of(
        ClientRecord("mana_client_x", "dcr", {"redirect_uris": list(uris)}, None, 0.0, None)
    )


@pytest.mark.parametrize(
    "asked",
    [
        "http://127.0.0.1:9999/callback/",
        "http://127.0.0.1:9999/callback?next=https://evil.example",
        "http://127.0.0.1:9999/callback/../evil",
        "http://127.0.0.1:9999/callbackx",
        "http://127.0.0.1:9999/CALLBACK",
        "HTTP://127.0.0.1:9999/callback",
        "http://127.0.0.1:9999/callback#x",
        "http://127.0.0.1/callback",
        "http://localhost:9999/callback",
        "http://127.0.0.1:9999/Callback",
        "http://127.0.0.1:9999/callback%2F",
        "",
    ],
)
def test_a_redirect_uri_must_match_a_registered_one_exactly(asked: str) -> None:
    client = client_with("http://127.0.0.1:9999/callback", "https://app.example/cb")

    assert client.redirect_allowed("http://127.0.0.1:9999/callback")
    assert client.redirect_allowed("https://app.example/cb")
    assert not client.redirect_allowed(asked)


@pytest.mark.parametrize(
    ("uri", "host"),
    [
        ("https://app.example:8443/cb", "app.example:8443"),
        ("http://127.0.0.1:33418/", "127.0.0.1:33418"),
        ("cursor://anysphere.cursor-retrieval/oauth/callback", "anysphere.cursor-retrieval"),
        ("com.example.app:/oauth2redirect", "com.example.app:"),
    ],
)
def test_the_redirect_host_names_where_the_first_redirect_uri_goes(uri: str, host: str) -> None:
    assert client_with(uri, "https://second.example/cb").redirect_host == host


def test_a_client_without_a_name_is_named_by_its_client_id() -> None:
    client = client_with("https://app.example/cb")

    assert client.name == "mana_client_x"
    assert client.grant_types == ("authorization_code",)
    assert client.token_endpoint_auth_method == "none"
