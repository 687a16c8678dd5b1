"""Validation of an authorization request (RFC 6749 §4.1.1 with OAuth 2.1's PKCE and RFC 8707's
`resource`), in the order that decides where an error may go.

The client and its redirect URI are checked first. Until both are known good, an error is a
`PageError`: shown to the user as a page, never redirected (a redirect to an unchecked URI
would make this server an open redirector). After that, every problem is an authlib
`OAuth2Error` carrying the validated redirect URI and the client's `state`, which the server
turns into a redirect back to the client (with `iss`, RFC 9207).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from authlib.oauth2.rfc6749.errors import (
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN

from mana_oauth.clients import Client, ClientError, ClientRegistry

READ = "mana:read"
WRITE = "mana:write"
# the parameters an authorization request may carry; the forms carry exactly these along
PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
)
MAX_PARAMETER = 4096
_CHALLENGE = re.compile(CODE_CHALLENGE_PATTERN.pattern)


class PageError(Exception):
    """A problem to show the user on a page (`status`), never to redirect anywhere."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def named_resource(target: str, resources: Iterable[str]) -> str | None:
    """The one of `resources` a client's `resource` parameter names (exactly, or with the
    trailing slash a user may have typed in the connector URL), or None: the resource a token
    is then issued for, in its canonical form."""
    return next((r for r in resources if target in (r, r + "/")), None)


def invalid_target(description: str, **where: str | None) -> OAuth2Error:
    """RFC 8707's `invalid_target` (authlib has no class of its own for it)."""
    return OAuth2Error(description=description, error="invalid_target", **where)


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated request: the client, where its answer goes, and what it asked for."""

    client: Client
    redirect_uri: str
    state: str | None
    # the scopes the client asked for; None when it asked for none (the user then chooses)
    requested: tuple[str, ...] | None
    code_challenge: str
    resource: str
    # the request's own parameters, as the pages carry them from form to form
    params: tuple[tuple[str, str], ...]

    @property
    def write_offered(self) -> bool:
        """Read and write may be granted only when the client asked for it (or for nothing)."""
        return self.requested is None or WRITE in self.requested

    def error(self, error: OAuth2Error) -> OAuth2Error:
        """`error`, addressed to this request's redirect URI with its state."""
        error.redirect_uri = self.redirect_uri
        error.state = self.state
        return error


def _single(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """The authorization parameters (blank ones count as absent, RFC 6749 §3.1) and the names
    that came more than once."""
    seen: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in pairs:
        if name not in PARAMETERS or value == "":
            continue
        if name in seen:
            repeated.add(name)
        seen[name] = value
    return seen, repeated


async def validate(
    pairs: Iterable[tuple[str, str]],
    clients: ClientRegistry,
    resource: str,
    scopes: tuple[str, ...],
    *,
    also: Collection[str] = (),
) -> AuthorizationRequest:
    """The request in `pairs` (query or form), for the protected resource `resource` (as the
    request reached it) whose scopes are `scopes`; its `resource` parameter may name `resource`
    or one of `also` (the server's other names for it), and the request is for that one.
    Raises `PageError`, or an `OAuth2Error` to redirect."""
    params, repeated = _single(pairs)
    client_id = params.get("client_id")
    if client_id is None or "client_id" in repeated:
        raise PageError(400, "Invalid request", "The request names no single client (client_id).")
    if len(client_id) > MAX_PARAMETER:
        raise PageError(400, "Invalid request", "The client_id is too long.")
    try:
        client = await clients.resolve(client_id)
    except ClientError as exc:
        raise PageError(400, "Unknown application", exc.description) from None
    if "redirect_uri" in repeated:
        raise PageError(400, "Invalid request", "The request names more than one redirect_uri.")
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None:
        if len(client.redirect_uris) != 1:
            raise PageError(
                400,
                "Invalid request",
                "The application registered several redirect URIs and did not say which one "
                "to use (redirect_uri).",
            )
        redirect_uri = client.redirect_uris[0]
    elif not client.redirect_allowed(redirect_uri):
        raise PageError(
            400,
            "Invalid redirect",
            f"{client.name} did not register the redirect URI this request names, so it is "
            "not followed.",
        )
    state = params.get("state")
    to_client = {"redirect_uri": redirect_uri, "state": state}
    if repeated:
        names = ", ".join(sorted(repeated))
        raise InvalidRequestError(f"repeated parameters: {names}", **to_client)
    if any(len(value) > MAX_PARAMETER for value in params.values()):
        raise InvalidRequestError("a parameter is too long", **to_client)
    response_type = params.get("response_type")
    if response_type is None:
        raise InvalidRequestError("response_type is missing", **to_client)
    if response_type != "code":
        raise UnsupportedResponseTypeError(
            response_type, description="only response_type=code is supported", **to_client
        )
    if client.grant_types and "authorization_code" not in client.grant_types:
        raise UnauthorizedClientError(
            "the client did not register the authorization_code grant", **to_client
        )
    challenge = params.get("code_challenge")
    if challenge is None:
        raise InvalidRequestError("code_challenge is required (PKCE)", **to_client)
    if params.get("code_challenge_method") != "S256":
        raise InvalidRequestError("code_challenge_method must be S256", **to_client)
    if not _CHALLENGE.fullmatch(challenge):
        raise InvalidRequestError("code_challenge is not a S256 challenge", **to_client)
    requested: tuple[str, ...] | None = None
    if "scope" in params:
        asked = tuple(dict.fromkeys(scope_to_list(params["scope"])))
        unknown = [s for s in asked if s not in scopes]
        if unknown:
            # not echoed: a client's text may hold characters an error description must not
            raise InvalidScopeError(
                f"only these scopes are offered: {' '.join(scopes)}", **to_client
            )
        requested = asked or None
    target = params.get("resource")
    named = resource if target is None else named_resource(target, (resource, *also))
    if named is None:
        raise invalid_target(f"this server issues tokens for {resource} only", **to_client)
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        state=state,
        requested=requested,
        code_challenge=challenge,
        resource=named,
        params=tuple((name, params[name]) for name in PARAMETERS if name in params),
    )


def granted_scopes(access: str | None, request: AuthorizationRequest) -> tuple[str, ...] | None:
    """The scopes of the consent form's `access` choice, or None when the choice is not one
    the request allows."""
    if access == "read":
        return (READ,)
    if access == "write" and request.write_offered:
        return (READ, WRITE)
    return None


__all__ = [
    "PARAMETERS",
    "AuthorizationRequest",
    "PageError",
    "granted_scopes",
    "invalid_target",
    "named_resource",
    "validate",
]
