"""Client ID Metadata Documents: a URL client_id is fetched from a loopback document server
(allowlisted origin), validated and cached in the store (shared by replicas, refetched after its
max-age); every unsafe fetch is refused as invalid_client naming the URL: oversized, slow,
redirected, wrong client_id, secrets, plain http or loopback not allowlisted, and hosts that
resolve to private, link-local or otherwise non-public addresses (no connection is made)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from mana_oauth.cimd import (
    DEFAULT_CACHE_SECONDS,
    CimdError,
    CimdFetcher,
    CimdPolicy,
    FetchedDocument,
    address_refusal,
    check_url,
    is_metadata_url,
    parse_loopback_origins,
)
from mana_oauth.clients import Client, ClientError, ClientRegistry
from mana_oauth.store import ClientRecord, OAuthStore
from tests.oauth.document_server import Answer, DocumentServer, tls_contexts
from tests.oauth.helpers import SetClock, oauth_database

REDIRECT = "http://127.0.0.1:9999/callback"


def document(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Loopback Test Client",
        "client_uri": "https://client.example",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **extra,
    }


class MemoryClients:
    """The store's client methods in memory, for tests about refusals (nothing is stored)."""

    def __init__(self) -> None:
        self.records: dict[str, ClientRecord] = {}

    async def save_client(self, record: ClientRecord) -> None:
        self.records[record.client_id] = record

    async def get_client(self, client_id: str) -> ClientRecord | None:
        return self.records.get(client_id)


class Resolved:
    """A resolver that answers fixed addresses and remembers what it was asked."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        return self.addresses


class Wire(httpx.AsyncBaseTransport):
    """An httpx transport that records every request it is handed (a connection would be
    made) and answers with `document` for the request's Host."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.document = document

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.document, headers={"content-type": "application/json"})


@pytest.fixture
def docs() -> Iterator[DocumentServer]:
    with DocumentServer().running() as server:
        yield server


@pytest.fixture
def clock() -> SetClock:
    return SetClock()


@pytest_asyncio.fixture
async def store(database_target: str, clock: SetClock) -> AsyncIterator[OAuthStore]:
    async with oauth_database(database_target) as db:
        yield OAuthStore(db, clock)


def loopback_registry(
    docs: DocumentServer, clock: SetClock, store: Any = None, **policy: Any
) -> ClientRegistry:
    chosen = CimdPolicy(loopback_origins=frozenset({docs.origin}), **policy)
    return ClientRegistry(store if store is not None else MemoryClients(), chosen, clock=clock)


async def refusal(registry: ClientRegistry, url: str) -> str:
    with pytest.raises(ClientError) as caught:
        await registry.resolve(url)
    assert caught.value.error == "invalid_client"
    assert url in caught.value.description
    return caught.value.description


# -- good documents, cache --------------------------------------------------------------------


async def test_a_document_is_fetched_validated_and_cached_for_every_replica(
    docs: DocumentServer, clock: SetClock, store: OAuthStore
) -> None:
    url = docs.url("/oauth/client.json")
    docs.serve_json("/oauth/client.json", document(url, extra_field="ignored"))
    registry = loopback_registry(docs, clock, store)

    client = await registry.resolve(url)

    assert client == Client(
        client_id=url,
        kind="cimd",
        name="Loopback Test Client",
        redirect_uris=(REDIRECT,),
        token_endpoint_auth_method="none",
        client_uri="https://client.example",
        logo_uri=None,
        grant_types=("authorization_code", "refresh_token"),
    )
    record = await store.get_client(url)
    assert record is not None and record.kind == "cimd" and record.secret_hash is None
    assert record.expires_at == clock() + DEFAULT_CACHE_SECONDS
    assert "extra_field" not in record.metadata
    assert await registry.resolve(url) == client
    replica = loopback_registry(docs, clock, OAuthStore(store.db, clock))
    assert await replica.resolve(url) == client
    assert docs.hits["/oauth/client.json"] == 1


async def test_a_document_is_fetched_again_once_its_max_age_has_passed(
    docs: DocumentServer, clock: SetClock, store: OAuthStore
) -> None:
    url = docs.url("/client.json")
    docs.serve_json(
        "/client.json",
        document(url),
        headers={"Content-Type": "application/json", "Cache-Control": "public, max-age=600"},
    )
    registry = loopback_registry(docs, clock, store)
    first = await registry.resolve(url)
    clock.advance(599)
    await registry.resolve(url)
    assert docs.hits["/client.json"] == 1

    docs.serve_json("/client.json", document(url, client_name="Renamed"))
    clock.advance(2)
    again = await registry.resolve(url)

    assert docs.hits["/client.json"] == 2
    assert (first.name, again.name) == ("Loopback Test Client", "Renamed")
    record = await store.get_client(url)
    assert record is not None and record.expires_at == clock() + DEFAULT_CACHE_SECONDS


class HeldFetcher(CimdFetcher):
    """Counts fetches and holds each until the test releases it."""

    def __init__(self, policy: CimdPolicy, outcome: dict[str, Any] | None) -> None:
        super().__init__(policy)
        self.outcome = outcome
        self.calls = 0
        self.release = asyncio.Event()

    async def fetch(self, url: str) -> FetchedDocument:
        self.calls += 1
        await self.release.wait()
        if self.outcome is None:
            raise CimdError(f"{url!r} answered HTTP 503")
        return FetchedDocument(self.outcome, DEFAULT_CACHE_SECONDS)


class CountedClients(MemoryClients):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_client(self, client_id: str) -> ClientRecord | None:
        self.reads += 1
        return await super().get_client(client_id)


@pytest.mark.parametrize("succeeds", [True, False])
async def test_callers_arriving_during_a_fetch_share_it(clock: SetClock, succeeds: bool) -> None:
    url = "https://client.example/doc.json"
    fetcher = HeldFetcher(CimdPolicy(), document(url) if succeeds else None)
    store = CountedClients()
    registry = ClientRegistry(store, fetcher.policy, fetcher=fetcher, clock=clock)

    callers = [asyncio.ensure_future(registry.resolve(url)) for _ in range(3)]
    for _ in range(1000):  # until each caller found no cached document and waits on the fetch
        if store.reads == 3:
            break
        await asyncio.sleep(0)
    fetcher.release.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)

    assert fetcher.calls == 1
    if succeeds:
        assert [client.client_id for client in outcomes if isinstance(client, Client)] == [url] * 3
        await registry.resolve(url)  # cached now
        assert fetcher.calls == 1
    else:
        assert [e.error for e in outcomes if isinstance(e, ClientError)] == ["invalid_client"] * 3
        with pytest.raises(ClientError):  # a refusal is not remembered: the next caller fetches
            await registry.resolve(url)
        assert fetcher.calls == 2


async def test_a_caller_that_gives_up_does_not_end_the_fetch_of_the_others(
    clock: SetClock,
) -> None:
    url = "https://client.example/doc.json"
    fetcher = HeldFetcher(CimdPolicy(), document(url))
    store = CountedClients()
    registry = ClientRegistry(store, fetcher.policy, fetcher=fetcher, clock=clock)
    leaving, staying = (asyncio.ensure_future(registry.resolve(url)) for _ in range(2))
    for _ in range(1000):
        if store.reads == 2:
            break
        await asyncio.sleep(0)

    leaving.cancel()
    fetcher.release.set()

    assert (await staying).client_id == url
    assert leaving.cancelled() and fetcher.calls == 1


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        (None, DEFAULT_CACHE_SECONDS),
        ("max-age=7200", 7200.0),
        ("public, max-age=10", 300.0),
        ("max-age=99999999", 86400.0),
        ("no-store", 300.0),
        ("no-cache, max-age=7200", 300.0),
    ],
)
def test_cache_lifetime_is_max_age_clamped_to_the_policy(
    cache_control: str | None, seconds: float
) -> None:
    assert CimdPolicy().cache_seconds(cache_control) == seconds


async def test_an_allowlisted_localhost_origin_is_fetched_with_its_host_name(
    docs: DocumentServer, clock: SetClock
) -> None:
    url = docs.url("/c.json", host="localhost")
    docs.serve_json("/c.json", document(url))
    policy = CimdPolicy(loopback_origins=frozenset({f"http://localhost:{docs.port}"}))
    registry = ClientRegistry(MemoryClients(), policy, clock=clock)

    assert (await registry.resolve(url)).client_id == url
    assert docs.hosts == [f"localhost:{docs.port}"]


async def test_a_public_host_is_pinned_to_the_checked_address() -> None:
    url = "https://client.example/oauth/metadata.json"
    resolver = Resolved("93.184.216.34")
    wire = Wire(document(url))
    fetcher = CimdFetcher(CimdPolicy(), resolver=resolver, transport=wire)

    fetched = await fetcher.fetch(url)

    assert fetched.document["client_id"] == url
    assert resolver.asked == [("client.example", 443)]
    [request] = wire.requests
    assert request.url.host == "93.184.216.34"
    assert request.url.path == "/oauth/metadata.json"
    assert request.headers["host"] == "client.example"
    assert request.extensions["sni_hostname"] == "client.example"


async def test_an_ipv6_host_is_pinned_and_named_with_its_port() -> None:
    url = "https://client.example:8443/m.json"
    wire = Wire(document(url))
    fetcher = CimdFetcher(CimdPolicy(), resolver=Resolved("2606:4700::1111"), transport=wire)

    await fetcher.fetch(url)

    [request] = wire.requests
    assert request.url.host == "2606:4700::1111" and request.url.port == 8443
    assert request.headers["host"] == "client.example:8443"


# -- refusals of the fetch --------------------------------------------------------------------


def padded(url: str, size: int) -> bytes:
    """A valid document of exactly `size` bytes."""
    base = json.dumps(document(url, padding="")).encode()
    assert len(base) <= size
    return base.replace(b'"padding": ""', b'"padding": "' + b"x" * (size - len(base)) + b'"')


@pytest.mark.parametrize("size", [1024 * 1024, 5121])
@pytest.mark.parametrize("content_length", [True, False])
async def test_an_oversized_document_is_refused(
    docs: DocumentServer, clock: SetClock, size: int, content_length: bool
) -> None:
    url = docs.url("/big.json")
    body = padded(url, size)
    chunks = tuple(body[i : i + 1000] for i in range(0, len(body), 1000))
    docs.serve("/big.json", Answer(chunks=chunks, content_length=content_length))

    description = await refusal(loopback_registry(docs, clock), url)

    assert "larger than 5120 bytes" in description


async def test_a_document_of_exactly_max_bytes_is_accepted(
    docs: DocumentServer, clock: SetClock
) -> None:
    url = docs.url("/edge.json")
    docs.serve("/edge.json", Answer(chunks=(padded(url, 5120),), content_length=False))

    assert (await loopback_registry(docs, clock).resolve(url)).client_id == url


async def test_a_slow_document_is_refused_after_the_time_limit(
    docs: DocumentServer, clock: SetClock
) -> None:
    url = docs.url("/slow.json")
    body = json.dumps(document(url)).encode()
    chunks = tuple(body[i : i + 20] for i in range(0, len(body), 20))
    docs.serve("/slow.json", Answer(chunks=chunks, pause=0.3))

    description = await refusal(loopback_registry(docs, clock, timeout=0.5), url)

    assert "took longer than 0.5 s" in description


async def test_a_redirect_is_not_followed(docs: DocumentServer, clock: SetClock) -> None:
    url = docs.url("/moved.json")
    target = docs.url("/real.json")
    docs.serve_json("/real.json", document(url))
    docs.serve("/moved.json", Answer(chunks=(), status=302, headers={"Location": target}))

    description = await refusal(loopback_registry(docs, clock), url)

    assert "redirect (302)" in description
    assert docs.hits["/real.json"] == 0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(chunks=(b"{}",), status=404), "answered HTTP 404"),
        (
            Answer(chunks=(b"{}",), headers={"Content-Type": "text/html"}),
            "not served as application/json",
        ),
        (Answer(chunks=(b"{not json",)), "is not valid JSON"),
        (Answer(chunks=(b'["a list"]',)), "is not a JSON object"),
    ],
)
async def test_an_answer_that_is_not_a_json_document_is_refused(
    docs: DocumentServer, clock: SetClock, answer: Answer, reason: str
) -> None:
    url = docs.serve("/doc.json", answer)

    assert reason in await refusal(loopback_registry(docs, clock), url)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"client_id": "https://other.example/client.json"}, "is not that URL"),
        ({"client_secret": "s3cret"}, "must not carry client_secret"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "only 'none' is supported"),
        ({"redirect_uris": []}, "names no redirect_uris"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "refused scheme javascript:"),
        ({"redirect_uris": ["http://evil.example/cb"]}, "plain http only on loopback"),
        ({"grant_types": ["client_credentials"]}, "grant_types must be a subset"),
    ],
)
async def test_a_document_breaking_the_rules_is_refused(
    docs: DocumentServer, clock: SetClock, change: dict[str, Any], reason: str
) -> None:
    url = docs.url("/doc.json")
    docs.serve_json("/doc.json", {**document(url), **change})

    assert reason in await refusal(loopback_registry(docs, clock), url)


async def test_a_refused_document_is_not_cached(docs: DocumentServer, clock: SetClock) -> None:
    url = docs.url("/doc.json")
    docs.serve_json("/doc.json", document(url, client_id="https://other.example/x.json"))
    store = MemoryClients()
    registry = loopback_registry(docs, clock, store)

    await refusal(registry, url)
    await refusal(registry, url)

    assert store.records == {}
    assert docs.hits["/doc.json"] == 2


# -- refusals before any connection ---------------------------------------------------------


async def test_loopback_that_is_not_allowlisted_is_refused(
    docs: DocumentServer, clock: SetClock
) -> None:
    with DocumentServer().running() as other:
        plain = other.url("/doc.json")
        other.serve_json("/doc.json", document(plain))
        registry = loopback_registry(docs, clock)

        assert "must be https" in await refusal(registry, plain)
        tls = f"https://127.0.0.1:{other.port}/doc.json"
        assert "127.0.0.1 is a loopback address" in await refusal(registry, tls)
        by_name = docs.url("/doc.json", host="localhost")
        assert "must be https" in await refusal(registry, by_name)
        assert other.hits["/doc.json"] == 0
        assert docs.hits["/doc.json"] == 0


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (("10.0.0.5",), "10.0.0.5 is a private address"),
        (("169.254.169.254",), "169.254.169.254 is a link-local address"),
        (("fd00::1",), "fd00::1 is a private address"),
        (("fe80::1",), "fe80::1 is a link-local address"),
        (("::ffff:10.0.0.5",), "10.0.0.5 is a private address"),
        (("::ffff:127.0.0.1",), "127.0.0.1 is a loopback address"),
        (("64:ff9b::a9fe:a9fe",), "169.254.169.254 is a link-local address"),
        (("2002:a00:5::1",), "10.0.0.5 is a private address"),
        (("0.0.0.0",), "0.0.0.0 is the unspecified address"),  # noqa: S104 - a resolved address, not a bind
        (("100.64.0.1",), "100.64.0.1 is not a public address"),
        (("224.0.0.1",), "224.0.0.1 is a multicast address"),
        (("93.184.216.34", "10.0.0.5"), "10.0.0.5 is a private address"),
    ],
)
async def test_a_host_resolving_to_a_non_public_address_is_never_connected_to(
    clock: SetClock, addresses: tuple[str, ...], reason: str
) -> None:
    url = "https://client.example/doc.json"
    wire = Wire(document(url))
    fetcher = CimdFetcher(CimdPolicy(), resolver=Resolved(*addresses), transport=wire)
    registry = ClientRegistry(MemoryClients(), fetcher.policy, fetcher=fetcher, clock=clock)

    description = await refusal(registry, url)

    assert "resolves to a refused address" in description and reason in description
    assert wire.requests == []


async def test_an_allowlisted_origin_still_may_not_resolve_to_a_private_address(
    clock: SetClock,
) -> None:
    url = "http://localhost:8123/doc.json"
    wire = Wire(document(url))
    policy = CimdPolicy(loopback_origins=frozenset({"http://localhost:8123"}))
    fetcher = CimdFetcher(policy, resolver=Resolved("127.0.0.1", "10.1.2.3"), transport=wire)

    with pytest.raises(CimdError, match=r"10\.1\.2\.3 is a private address"):
        await fetcher.fetch(url)
    assert wire.requests == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://client.example/doc.json", "must be https"),
        ("https://client.example", "must have a path"),
        ("https://client.example/", "must have a path"),
        ("https://client.example/doc.json#frag", "must not have a fragment"),
        ("https://user:pw@client.example/doc.json", "must not carry credentials"),
        ("https://client.example/a/../doc.json", "'.' or '..' path segments"),
        ("https://client.example/a b.json", "printable ASCII"),
        ("https://client.example/\x7f.json", "printable ASCII"),
        ("https://bücher.example/doc.json", "printable ASCII"),
        ("https://client.example:99999/doc.json", "is not a valid URL"),
        ("https://client.example/" + "a" * 2000, "longer than 2000 characters"),
    ],
)
async def test_a_url_of_the_wrong_shape_is_refused_without_resolving(
    clock: SetClock, url: str, reason: str
) -> None:
    resolver = Resolved("93.184.216.34")
    fetcher = CimdFetcher(CimdPolicy(), resolver=resolver, transport=Wire())
    registry = ClientRegistry(MemoryClients(), fetcher.policy, fetcher=fetcher, clock=clock)

    with pytest.raises(ClientError) as caught:
        await registry.resolve(url)

    assert caught.value.error == "invalid_client" and reason in caught.value.description
    assert resolver.asked == []


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_may_be_fetched_from(address: str) -> None:
    assert address_refusal(address, loopback_ok=False) is None


def test_loopback_addresses_pass_only_for_an_allowlisted_origin() -> None:
    assert address_refusal("127.0.0.1", loopback_ok=True) is None
    assert address_refusal("::1", loopback_ok=True) is None
    assert address_refusal("::1", loopback_ok=False) == "::1 is a loopback address"


def test_metadata_urls_are_told_from_registered_client_ids() -> None:
    assert is_metadata_url("https://claude.ai/oauth/mcp-oauth-client-metadata")
    assert is_metadata_url("http://127.0.0.1:8123/client.json")
    assert not is_metadata_url("mana_client_abc")


def test_loopback_origins_are_checked_and_normalised() -> None:
    assert parse_loopback_origins(" http://127.0.0.1:8123/, http://[::1]:9000 ,") == {
        "http://127.0.0.1:8123",
        "http://[::1]:9000",
    }
    assert parse_loopback_origins("http://localhost") == {"http://localhost:80"}
    with pytest.raises(ValueError, match="not a loopback origin"):
        parse_loopback_origins("http://10.0.0.5:8123")
    with pytest.raises(ValueError, match="is not an origin"):
        parse_loopback_origins("http://127.0.0.1:8123/path")
    policy = CimdPolicy(loopback_origins=frozenset({"http://LOCALHOST:8123"}))
    assert check_url("http://localhost:8123/c.json", policy).loopback_allowed


@pytest.mark.parametrize("certified", ["localhost", "other.example"])
async def test_tls_is_verified_for_the_host_name_while_connecting_to_the_checked_address(
    tmp_path: Path, certified: str
) -> None:
    server_tls, client_tls = tls_contexts(tmp_path, certified)
    with DocumentServer(tls=server_tls).running() as docs:
        url = docs.url("/doc.json", host="localhost")
        docs.serve_json("/doc.json", document(url))
        policy = CimdPolicy(loopback_origins=frozenset({f"https://localhost:{docs.port}"}))
        fetcher = CimdFetcher(policy, transport=httpx.AsyncHTTPTransport(verify=client_tls))

        if certified == "localhost":
            # the certificate names only "localhost": the connection to 127.0.0.1 verifies
            # because the TLS server name is the URL's host
            assert (await fetcher.fetch(url)).document["client_id"] == url
            assert docs.hosts == [f"localhost:{docs.port}"]
        else:
            with pytest.raises(CimdError, match="CERTIFICATE_VERIFY_FAILED"):
                await fetcher.fetch(url)
            assert docs.hits["/doc.json"] == 0


async def test_a_resolver_that_never_answers_is_bounded_by_the_time_limit() -> None:
    async def silent(host: str, port: int) -> Sequence[str]:
        await asyncio.Event().wait()
        return []

    wire = Wire()
    fetcher = CimdFetcher(CimdPolicy(timeout=0.2), resolver=silent, transport=wire)

    with pytest.raises(CimdError, match=r"took longer than 0\.2 s"):
        await fetcher.fetch("https://client.example/doc.json")
    assert wire.requests == []


class NotFound(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.builds(lambda host, path: f"https://{host}/{path}", st.text(), st.text()),
        st.builds(lambda host, path: f"http://{host}/{path}", st.text(), st.text()),
    )
)
def test_any_client_id_is_fetched_or_refused_with_a_reason(url: str) -> None:
    async def public(host: str, port: int) -> Sequence[str]:
        return ["93.184.216.34"]

    fetcher = CimdFetcher(CimdPolicy(), resolver=public, transport=NotFound())

    with pytest.raises(CimdError):
        asyncio.run(fetcher.fetch(url))
