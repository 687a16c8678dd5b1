"""Sign-in of a remote MCP client, end to end: a real `mana serve --http`, the `mcp` package's
own OAuth client (discovery from the 401, client registration by a Client ID Metadata Document
or by RFC 7591 dynamic registration, PKCE, token exchange and refresh), and Chromium as the
user's browser: it signs in with the user's password, picks the brand space and the access on
the consent page and allows; the redirect lands on the client's loopback listener. The client
then works in the chosen space with the chosen access, until the user ends the connection with
`mana connections revoke`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientMetadata,
    OAuthToken,
)
from playwright.async_api import Browser
from pydantic import AnyUrl

from tests.browser.support import NOT_IN_BRAND, Access, BrowserUser, LocalSite, Page
from tests.mcp.support import (
    BRAND_IMAGES,
    BRAND_SLUG,
    DEMO_EMAIL,
    JSON_ACCEPT,
    MODERN_HEADERS,
    REPO,
    Mode,
    ServerProcess,
    World,
    mana_argv,
    modern_tools_list,
    seeded_world,
)
from tests.oauth.support import MemoryStorage

CALLBACK_WAIT = 30.0
# polls (0.25 s apart) for a revoked connection's access token to be refused: the server's
# grant check may answer from its cache for up to 2 s
REVOCATION_POLLS = 40


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, database_backend: str, request: pytest.FixtureRequest
) -> Iterator[World]:
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("oauth-e2e")) as world:
        yield world


@pytest.fixture(scope="module")
def client_site() -> Iterator[LocalSite]:
    """The client's side on 127.0.0.1: its metadata documents and its redirect listener."""
    with LocalSite().running() as site:
        yield site


@pytest.fixture(scope="module")
def server(world: World, client_site: LocalSite) -> Iterator[ServerProcess]:
    # the documents are served over plain http from loopback: the operator allows that origin
    env = {"MANA_OAUTH_LOOPBACK_CLIENTS": client_site.origin}
    with ServerProcess(world.installation, env=env) as proc:
        yield proc


def _register_client(site: LocalSite, name: str, *, document: bool) -> tuple[str, str | None]:
    """A callback path of its own for client `name`, and (with `document`) its metadata
    document on `site`. Returns (redirect URI, client_id URL or None)."""
    redirect_uri = site.url(f"/callback/{name}")
    site.pages[f"/callback/{name}"] = Page(b"<!doctype html><p>Connected. Close this window.")
    if not document:
        return redirect_uri, None
    client_id = site.url(f"/clients/{name}.json")
    metadata = {
        "client_id": client_id,
        "client_name": f"Browser test {name}",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    site.pages[f"/clients/{name}.json"] = Page(json.dumps(metadata).encode(), "application/json")
    return redirect_uri, client_id


@dataclass
class Connected:
    client: Client
    provider: OAuthClientProvider
    storage: MemoryStorage
    user: BrowserUser


@asynccontextmanager
async def _connect(
    chromium: Browser,
    server: ServerProcess,
    world: World,
    site: LocalSite,
    *,
    name: str,
    registration: Literal["cimd", "dcr"],
    access: Access,
    mode: Mode,
) -> AsyncIterator[Connected]:
    """An `mcp` client whose first request meets the 401 and runs the whole sign-in."""
    redirect_uri, client_id = _register_client(site, name, document=registration == "cimd")
    user = BrowserUser(chromium, server, world, world.brand_id, access, redirect_uri)
    storage = MemoryStorage()
    callback_path = f"/callback/{name}"

    async def callback() -> AuthorizationCodeResult:
        """The client's `callback_handler`: what reached its loopback listener."""
        query = await asyncio.to_thread(site.wait_for, callback_path, CALLBACK_WAIT)
        assert "error" not in query, query
        return AuthorizationCodeResult(
            code=query["code"][0], state=query["state"][0], iss=query.get("iss", [None])[0]
        )

    provider = OAuthClientProvider(
        server.mcp_url,
        OAuthClientMetadata(
            redirect_uris=[AnyUrl(redirect_uri)],
            client_name=f"Browser test {name}",
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method="none",
        ),
        storage,
        redirect_handler=user.authorize,
        callback_handler=callback,
    )
    if client_id is not None:
        # The SDK's constructor accepts only https client_id URLs; this document is served
        # over plain http from loopback (allowed by MANA_OAUTH_LOOPBACK_CLIENTS), so it is set
        # on the flow's context after construction.
        provider.context.client_metadata_url = client_id
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30.0) as http,
        Client(
            streamable_http_client(server.mcp_url, http_client=http),
            mode=mode,
            read_timeout_seconds=30,
        ) as client,
    ):
        yield Connected(client, provider, storage, user)


async def _mana(world: World, *args: str) -> str:
    """`mana ARGS` on the server's installation, as its operator would run it; its stdout."""
    proc = await asyncio.create_subprocess_exec(
        *mana_argv(world.data_dir, *args),
        cwd=REPO,
        env=world.installation.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def _assert_ended(server: ServerProcess, client_id: str, tokens: OAuthToken) -> None:
    """After revocation: the refresh token is refused at once, and the access token at /mcp
    as soon as the server's grant check learns of it (it caches an answer for up to 2 s)."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        refreshed = await http.post(
            f"{server.url}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens.refresh_token or "",
                "client_id": client_id,
            },
        )
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
        bearer = {**JSON_ACCEPT, **MODERN_HEADERS, "authorization": f"Bearer {tokens.access_token}"}
        for _ in range(REVOCATION_POLLS):
            answer = await http.post(server.mcp_url, json=modern_tools_list(), headers=bearer)
            if answer.status_code != 200:
                break
            await asyncio.sleep(0.25)
        assert answer.status_code == 401, answer.text
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def _image_ids(result: types.CallToolResult) -> set[str]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return {image["id"] for image in result.structured_content["images"]}


def _assert_brand_listing(tools: list[types.Tool]) -> set[str]:
    names = {tool.name for tool in tools}
    assert "me.listReferenceImages" in names
    assert not {name for name in names if name.split(".")[0] in NOT_IN_BRAND}, names
    return names


@pytest.mark.parametrize(
    ("registration", "mode"),
    [("cimd", "auto"), ("dcr", "legacy")],
    ids=["cimd-2026-07-28", "dcr-2025-11-25"],
)
async def test_client_signs_in_picks_the_brand_space_and_works_there(
    chromium: Browser,
    server: ServerProcess,
    world: World,
    client_site: LocalSite,
    registration: Literal["cimd", "dcr"],
    mode: Mode,
) -> None:
    name = f"{registration}-{mode}-{world.installation.backend}"
    async with _connect(
        chromium,
        server,
        world,
        client_site,
        name=name,
        registration=registration,
        access="write",
        mode=mode,
    ) as connected:
        client, storage, user = connected.client, connected.storage, connected.user
        expected_era = "2026-07-28" if mode == "auto" else "2025-11-25"
        assert client.protocol_version == expected_era

        # one sign-in, on a page that named the client and where it sends the browser
        assert len(user.authorizations) == 1
        assert f"Browser test {name}" in user.consent_text
        assert client_site.origin.removeprefix("http://") in user.consent_text
        assert storage.client_info is not None and storage.tokens is not None
        if registration == "cimd":
            assert storage.client_info.client_id == client_site.url(f"/clients/{name}.json")
            assert (f"/clients/{name}.json", {}) in client_site.requests  # fetched by Mana
        else:
            assert not storage.client_info.client_id.startswith("http")
        assert set((storage.tokens.scope or "").split()) == {"mana:read", "mana:write"}
        assert storage.tokens.refresh_token

        # the connection's space is the brand space, without any X-Mana-Space header
        names = _assert_brand_listing((await client.list_tools()).tools)
        assert "notes.create" in names
        images = await client.call_tool("me.listReferenceImages", {})
        assert _image_ids(images) == BRAND_IMAGES
        assert images.meta is not None and images.meta["mana/spaceId"] == world.brand_id

        # the access token runs out: the client refreshes (the refresh token rotates) and
        # carries on, without another sign-in
        first = storage.tokens
        connected.provider.context.token_expiry_time = time.time() - 1
        again = await client.call_tool("me.listReferenceImages", {})
        assert _image_ids(again) == BRAND_IMAGES
        assert storage.tokens is not None and storage.tokens is not first
        assert storage.tokens.access_token != first.access_token
        assert storage.tokens.refresh_token not in (None, first.refresh_token)
        assert len(user.authorizations) == 1

        # the user finds the connection with `mana connections list` and ends it
        listed = json.loads(await _mana(world, "connections", "list", "--as", DEMO_EMAIL, "--json"))
        (mine,) = [c for c in listed if c["client_name"] == f"Browser test {name}"]
        assert mine["client_id"] == storage.client_info.client_id
        assert (mine["space"], mine["scopes"]) == (BRAND_SLUG, ["mana:read", "mana:write"])
        await _mana(world, "connections", "revoke", mine["id"], "--as", DEMO_EMAIL)
        await _assert_ended(server, storage.client_info.client_id, storage.tokens)


async def test_read_only_consent_lists_no_write_tools(
    chromium: Browser, server: ServerProcess, world: World, client_site: LocalSite
) -> None:
    async with _connect(
        chromium,
        server,
        world,
        client_site,
        name=f"read-only-{world.installation.backend}",
        registration="cimd",
        access="read",
        mode="auto",
    ) as connected:
        assert connected.storage.tokens is not None
        assert connected.storage.tokens.scope == "mana:read"
        tools = (await connected.client.list_tools()).tools
        names = _assert_brand_listing(tools)
        writers = [
            t.name for t in tools if t.annotations is None or not t.annotations.read_only_hint
        ]
        assert writers == []
        assert "notes.create" not in names
        images = await connected.client.call_tool("me.listReferenceImages", {})
        assert _image_ids(images) == BRAND_IMAGES
        assert len(connected.user.authorizations) == 1
