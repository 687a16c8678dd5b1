"""The OAuth sign-in as a client and a browser would do it, over plain HTTP (no JavaScript, no
browser): register a client (RFC 7591) or name a metadata document URL, open
`/oauth/authorize`, post the sign-in form, post the consent form, exchange the code at
`/oauth/token`. Each step is a method, so attack tests can stop or tamper anywhere; `connect`
runs them all.

The forms are read from the served HTML (`page_form`), so a test posts exactly what the page
carries (hidden parameters and CSRF token) plus what a user types or clicks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from authlib.oauth2.rfc7636.challenge import create_s256_code_challenge
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

REDIRECT_URI = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        return cls(verifier, create_s256_code_challenge(verifier))


@dataclass
class PageForm:
    """One `<form>` of a page: its action, the values it would submit as is (hidden inputs,
    checked radios, text values), the radio choices per name and the submit buttons."""

    action: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    choices: dict[str, list[str]] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[PageForm] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(PageForm(action=a.get("action", "")))
            return
        if not self.forms:
            return
        form = self.forms[-1]
        name = a.get("name")
        if tag == "button" and name:
            form.buttons.append((name, a.get("value", "")))
        elif tag == "input" and name:
            kind = a.get("type", "text")
            if kind == "radio":
                form.choices.setdefault(name, []).append(a.get("value", ""))
                if "checked" in a:
                    form.fields[name] = a.get("value", "")
            else:
                form.fields[name] = a.get("value", "")


def page_form(html: str) -> PageForm:
    """The one form of a sign-in or consent page."""
    parser = _FormParser()
    parser.feed(html)
    assert len(parser.forms) == 1, f"expected one form, found {len(parser.forms)}"
    return parser.forms[0]


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect (each once)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    scope: str
    body: dict[str, Any]


class OAuthFlow:
    """The sign-in steps against one server (`http`: a client into it, e.g.
    `McpTestServer.http()`; it keeps the browser cookie between steps)."""

    def __init__(self, http: httpx2.AsyncClient) -> None:
        self.http = http

    async def register(
        self, redirect_uris: list[str] | None = None, **metadata: Any
    ) -> dict[str, Any]:
        """Dynamic registration of a public client (RFC 7591); the response body."""
        body = {
            "client_name": "Test Client",
            "redirect_uris": redirect_uris or [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            **metadata,
        }
        resp = await self.http.post("/oauth/register", json=body)
        assert resp.status_code == 201, resp.text
        registered: dict[str, Any] = resp.json()
        return registered

    @staticmethod
    def params(
        client_id: str,
        pkce: Pkce,
        *,
        redirect_uri: str | None = REDIRECT_URI,
        scope: str | None = "mana:read mana:write",
        state: str | None = "state-123",
        resource: str | None = None,
        **extra: str,
    ) -> dict[str, str]:
        """Authorization request parameters (None leaves a parameter out)."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            "resource": resource,
            **extra,
        }
        return {k: v for k, v in params.items() if v is not None}

    async def authorize(self, params: dict[str, str]) -> httpx2.Response:
        return await self.http.get("/oauth/authorize", params=params)

    async def post(self, fields: dict[str, str]) -> httpx2.Response:
        return await self.http.post("/oauth/authorize", data=fields)

    async def sign_in(self, params: dict[str, str], email: str, password: str) -> httpx2.Response:
        """Open the sign-in page and post it; the answer (303 to the consent page on success)."""
        page = await self.authorize(params)
        assert page.status_code == 200, page.text
        form = page_form(page.text)
        assert ("action", "login") in form.buttons
        return await self.post(
            {**form.fields, "email": email, "password": password, "action": "login"}
        )

    async def consent_form(self, params: dict[str, str]) -> PageForm:
        page = await self.authorize(params)
        assert page.status_code == 200, page.text
        form = page_form(page.text)
        assert ("decision", "allow") in form.buttons, page.text
        return form

    async def decide(
        self,
        params: dict[str, str],
        *,
        space: str | None = None,
        access: str | None = None,
        decision: str = "allow",
    ) -> httpx2.Response:
        """Post the consent form (defaults as the page checks them); the redirect."""
        form = await self.consent_form(params)
        fields = dict(form.fields)
        if space is not None:
            fields["space"] = space
        if access is not None:
            fields["access"] = access
        return await self.post({**fields, "decision": decision})

    async def code(
        self,
        params: dict[str, str],
        email: str,
        password: str,
        *,
        space: str | None = None,
        access: str | None = None,
    ) -> str:
        """Sign in (unless this browser is signed in), allow, and return the code from the
        redirect."""
        page = await self.authorize(params)
        assert page.status_code == 200, page.text
        if ("action", "login") in page_form(page.text).buttons:
            signed = await self.sign_in(params, email, password)
            assert signed.status_code == 303, signed.text
        resp = await self.decide(params, space=space, access=access)
        assert resp.status_code == 302, resp.text
        location = resp.headers["location"]
        assert location.startswith(params.get("redirect_uri", REDIRECT_URI) + "?")
        query = query_of(location)
        assert query.get("state") == params.get("state")
        return query["code"]

    async def exchange(
        self,
        client_id: str,
        code: str,
        verifier: str | None,
        *,
        redirect_uri: str | None = REDIRECT_URI,
        **extra: str,
    ) -> httpx2.Response:
        data = {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            **extra,
        }
        return await self.http.post(
            "/oauth/token", data={k: v for k, v in data.items() if v is not None}
        )

    async def refresh(self, client_id: str, refresh_token: str, **extra: str) -> httpx2.Response:
        data = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "refresh_token": refresh_token,
            **extra,
        }
        return await self.http.post("/oauth/token", data=data)

    async def revoke(self, client_id: str, token: str) -> httpx2.Response:
        return await self.http.post("/oauth/revoke", data={"client_id": client_id, "token": token})

    async def connect(
        self,
        email: str,
        password: str,
        *,
        client_id: str | None = None,
        space: str | None = None,
        access: str | None = None,
        scope: str | None = "mana:read mana:write",
    ) -> Tokens:
        """The whole flow for a (newly registered, unless `client_id`) public client."""
        if client_id is None:
            client_id = (await self.register())["client_id"]
        pkce = Pkce.new()
        params = self.params(client_id, pkce, scope=scope)
        code = await self.code(params, email, password, space=space, access=access)
        resp = await self.exchange(client_id, code, pkce.verifier)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return Tokens(body["access_token"], body["refresh_token"], body["scope"], body)


@dataclass
class MemoryStorage:
    """The `mcp` client's token storage (`mcp.client.auth.TokenStorage`), in memory."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


__all__ = [
    "PASSWORD",
    "REDIRECT_URI",
    "MemoryStorage",
    "OAuthFlow",
    "PageForm",
    "Pkce",
    "Tokens",
    "page_form",
    "query_of",
]
