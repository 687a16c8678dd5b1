"""The built-in authorization server's endpoints (OAuth 2.1 with PKCE, RFC 8414 metadata,
RFC 7009 revocation, RFC 7591 registration), as Starlette routes on the HTTP app.

`/oauth/authorize` is for a browser: GET shows the sign-in form (password login under the
server's one `LoginThrottle`) or, once signed in (cookie `mana_oauth_session`, a row in the
store so every replica knows it), the consent form. Every POST must carry the CSRF token of
the browser session that shows the form (compared in constant time); the Origin check in front
of every route applies too. Allowing stores a single-use code (60 s) bound to the PKCE
challenge, the chosen space and scopes, and redirects to the client.

`/oauth/token`, `/oauth/revoke` and `/oauth/register` are for clients: form (or JSON for
registration) bodies of at most `MAX_BODY` bytes, JSON answers with `Cache-Control: no-store`,
errors as `{"error", "error_description"}` built by authlib's error classes.

Bound to loopback without a public URL, the server has one name per loopback host
(`ResourceServer.for_scope`): a request's `Host` decides the issuer it is told (metadata, `iss`)
and the resource its code and tokens are for unless its `resource` parameter names another of
them; the code keeps the resource it was issued for, and its access token names that one.

Access tokens are the server's EdDSA JWTs for the resource URL (RFC 8707), carrying `scope`,
`space`, `client_id` and the connection id `gid`; the MCP endpoint's guard checks that the
connection is still live on every request, so revoking a connection ends its access tokens too.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import jwt
import structlog
from authlib.common.urls import add_params_to_uri, url_decode
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN, create_s256_code_challenge
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mana_auth.errors import AuthError, LoginThrottled
from mana_auth.keys import KeyStore
from mana_auth.login import PasswordLogin
from mana_auth.tokens import LocalKeys, TokenIssuer
from mana_oauth.authorization import (
    AuthorizationRequest,
    PageError,
    granted_scopes,
    invalid_target,
    named_resource,
    validate,
)
from mana_oauth.clients import Client, ClientError, ClientRegistry
from mana_oauth.metadata import (
    AUTHORIZE_PATH,
    METADATA_PATHS,
    REGISTER_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    authorization_server_metadata,
)
from mana_oauth.pages import (
    ClientView,
    SpaceChoice,
    consent_page,
    error_page,
    login_page,
    page_response,
)
from mana_oauth.store import (
    BROWSER_TTL_ANONYMOUS,
    BROWSER_TTL_SIGNED_IN,
    CODE_TTL,
    CodeRecord,
    OAuthStore,
    RefreshReused,
    new_secret,
    scopes_text,
)
from tool_registry.json_input import JsonInputError, loads_json
from tool_registry.store.accounts import Accounts
from tool_registry.store.postgres import DatabaseUnavailable

if TYPE_CHECKING:  # mana_http's app imports this module
    from mana_http.resource_metadata import ResourceServer

log = structlog.get_logger("mana.oauth")

SESSION_COOKIE = "mana_oauth_session"
ACCESS_TOKEN_TTL = timedelta(hours=1)
MAX_BODY = 16 * 1024
FORM = "application/x-www-form-urlencoded"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
METADATA_CACHE_SECONDS = 300


class _BodyTooLarge(Exception):
    pass


async def _body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, or `_BodyTooLarge` as soon as it passes `limit` bytes."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _BodyTooLarge
    return body


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _error_response(error: OAuth2Error) -> JSONResponse:
    """An OAuth error as JSON (RFC 6749 §5.2), with authlib's status and headers."""
    status, body, headers = error()
    named = {name.lower(): value for name, value in headers if name.lower() != "content-type"}
    return JSONResponse(body, status_code=status, headers={**named, **NO_STORE})


def _client_address(request: Request) -> str:
    return request.client.host if request.client else ""


class AuthorizationServer:
    """The endpoints, over the store, the client registry and the password login. Built once
    by the HTTP app when the server has its own signing keys (no external issuer)."""

    def __init__(
        self,
        *,
        store: OAuthStore,
        clients: ClientRegistry,
        login: PasswordLogin,
        accounts: Accounts,
        issuer: TokenIssuer,
        keys: KeyStore,
        resource: ResourceServer,
        on_login_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`resource` is the protected resource this server issues tokens for (its base URL is
        the issuer, RFC 8414); `on_login_failure(reason)` hears of every refused sign-in (the
        server's metrics)."""
        self.store = store
        self.clients = clients
        self.login = login
        self.accounts = accounts
        self.issuer = issuer
        self.keys = LocalKeys(keys)
        # RFC 8414: the issuer identifier is the server's base URL, as the request reached it
        self.resource = resource
        self.scopes = resource.scopes
        public = urlsplit(resource.base_url)
        self.secure_cookie = public.scheme == "https"
        # behind a proxy the public URL may have a path: the browser sees the pages below it
        self.authorize_path = public.path.rstrip("/") + AUTHORIZE_PATH
        self.cookie_path = public.path.rstrip("/") + "/oauth"
        self._on_login_failure = on_login_failure
        self._clock = clock

    def routes(self) -> list[Route]:
        return [
            *(Route(path, self.metadata, methods=["GET"]) for path in METADATA_PATHS),
            Route(AUTHORIZE_PATH, _unavailable(self.authorize, page=True), methods=["GET", "POST"]),
            Route(TOKEN_PATH, _unavailable(self.token), methods=["POST"]),
            Route(REVOKE_PATH, _unavailable(self.revoke), methods=["POST"]),
            Route(REGISTER_PATH, _unavailable(self.register), methods=["POST"]),
        ]

    # -- metadata ------------------------------------------------------------------------------

    def _site(self, request: Request) -> ResourceServer:
        """This server as `request` reached it (one of its loopback names, or its one URL)."""
        return self.resource.for_scope(request.scope)

    async def metadata(self, request: Request) -> Response:
        document = authorization_server_metadata(self._site(request).base_url, self.scopes)
        return JSONResponse(
            document, headers={"cache-control": f"public, max-age={METADATA_CACHE_SECONDS}"}
        )

    # -- /oauth/authorize ----------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        site = self._site(request)
        if request.method == "POST":
            return await self._authorize_post(request, site)
        try:
            auth = await self._validate(request.query_params.multi_items(), site)
        except PageError as exc:
            return page_response(error_page(exc.title, exc.message), status=exc.status)
        except OAuth2Error as exc:
            return self._redirect_error(exc, site)
        cookie = request.cookies.get(SESSION_COOKIE)
        browser = await self.store.browser_session(cookie) if cookie else None
        if cookie is not None and browser is not None:
            user_id, csrf = browser
            if user_id is not None:
                return await self._consent(auth, user_id, csrf)
        else:
            cookie, csrf = await self.store.open_browser_session(None, BROWSER_TTL_ANONYMOUS)
        response = self._login_page(auth, csrf)
        self._set_cookie(response, cookie, BROWSER_TTL_ANONYMOUS)
        return response

    async def _authorize_post(self, request: Request, site: ResourceServer) -> Response:
        try:
            pairs = await self._form(request)
        except (_BodyTooLarge, ValueError):
            return page_response(
                error_page("Invalid request", "The form could not be read."), status=400
            )
        form = dict(pairs)
        cookie = request.cookies.get(SESSION_COOKIE)
        browser = await self.store.browser_session(cookie) if cookie else None
        sent = form.get("csrf", "")
        if (
            cookie is None
            or browser is None
            or not hmac.compare_digest(sent.encode(), browser[1].encode())
        ):
            return page_response(
                error_page(
                    "Form expired",
                    "This form has expired or did not come from this page. Nothing was "
                    "granted; start the connection again from your application.",
                ),
                status=403,
            )
        try:
            auth = await self._validate(pairs, site)
        except PageError as exc:
            return page_response(error_page(exc.title, exc.message), status=exc.status)
        except OAuth2Error as exc:
            return self._redirect_error(exc, site)
        user_id = browser[0]
        if form.get("action") == "login":
            return await self._login(request, auth, cookie, browser[1], form)
        decision = form.get("decision")
        if user_id is None or decision not in ("allow", "deny"):
            return page_response(
                error_page("Invalid request", "Sign in and choose Allow or Deny."),
                status=400,
                redirect_uri=auth.redirect_uri,
            )
        if decision == "deny":
            return self._redirect_error(
                auth.error(AccessDeniedError("the user denied the request")), site
            )
        return await self._allow(auth, user_id, form, site)

    async def _validate(
        self, pairs: list[tuple[str, str]], site: ResourceServer
    ) -> AuthorizationRequest:
        return await validate(
            pairs, self.clients, site.resource, self.scopes, also=self.resource.resources
        )

    async def _login(
        self,
        request: Request,
        auth: AuthorizationRequest,
        cookie: str,
        csrf: str,
        form: Mapping[str, str],
    ) -> Response:
        email = form.get("email", "")
        password = form.get("password", "")
        try:
            user = await self.login.authenticate(email, password, client=_client_address(request))
        except LoginThrottled as exc:
            self._login_failed(exc.reason)
            return self._login_page(
                auth,
                csrf,
                status=429,
                email=email,
                error=exc.message,
                headers={"retry-after": str(exc.retry_after)},
            )
        except AuthError as exc:
            self._login_failed(exc.reason)
            return self._login_page(
                auth, csrf, status=401, email=email, error="The email or password is wrong."
            )
        # a new session id and CSRF token once signed in: one planted before is worthless now
        new_cookie, _ = await self.store.sign_in_browser_session(
            cookie, user.id, BROWSER_TTL_SIGNED_IN
        )
        response = RedirectResponse(
            f"{self.authorize_path}?{urlencode(auth.params)}", status_code=303, headers=NO_STORE
        )
        self._set_cookie(response, new_cookie, BROWSER_TTL_SIGNED_IN)
        return response

    def _login_failed(self, reason: str) -> None:
        if self._on_login_failure is not None:
            self._on_login_failure(reason)

    def _login_page(
        self,
        auth: AuthorizationRequest,
        csrf: str,
        *,
        status: int = 200,
        email: str = "",
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        page = login_page(
            self._client_view(auth),
            auth.params,
            csrf,
            action=self.authorize_path,
            email=email,
            error=error,
        )
        return page_response(page, status=status, redirect_uri=auth.redirect_uri, headers=headers)

    async def _consent(self, auth: AuthorizationRequest, user_id: str, csrf: str) -> Response:
        user = await self.accounts.user_by_id(user_id)
        spaces = await self.accounts.spaces_of(user_id)
        if user is None or not spaces:
            return page_response(
                error_page("No account", "This account has no space to connect."), status=403
            )
        personal = next((s.space.id for s in spaces if s.space.type == "personal"), None)
        return page_response(
            consent_page(
                self._client_view(auth),
                auth.params,
                csrf,
                action=self.authorize_path,
                user_email=user.email,
                spaces=[
                    SpaceChoice(s.space.id, s.space.name, s.space.slug, s.space.type)
                    for s in spaces
                ],
                default_space=personal or spaces[0].space.id,
                write_offered=auth.write_offered,
                write_default=auth.requested is not None and auth.write_offered,
                redirect_uri=auth.redirect_uri,
            ),
            redirect_uri=auth.redirect_uri,
        )

    async def _allow(
        self,
        auth: AuthorizationRequest,
        user_id: str,
        form: Mapping[str, str],
        site: ResourceServer,
    ) -> Response:
        space_id = form.get("space", "")
        member_of = {s.space.id for s in await self.accounts.spaces_of(user_id)}
        scopes = granted_scopes(form.get("access"), auth)
        if space_id not in member_of or scopes is None:
            return page_response(
                error_page("Invalid choice", "Choose one of your spaces and an offered access."),
                status=400,
                redirect_uri=auth.redirect_uri,
            )
        code = new_secret()
        await self.store.create_code(
            code,
            CodeRecord(
                client_id=auth.client.client_id,
                user_id=user_id,
                space_id=space_id,
                scopes=scopes,
                redirect_uri=auth.redirect_uri,
                code_challenge=auth.code_challenge,
                resource=auth.resource,
                expires_at=self._clock() + CODE_TTL,
                gid=None,
            ),
        )
        log.info(
            "authorization granted",
            client_id=auth.client.client_id,
            user=user_id,
            space=space_id,
            scope=scopes_text(scopes),
        )
        params = [("code", code)]
        if auth.state is not None:
            params.append(("state", auth.state))
        params.append(("iss", site.base_url))
        return self._redirect(add_params_to_uri(auth.redirect_uri, params))

    @staticmethod
    def _redirect_error(error: OAuth2Error, site: ResourceServer) -> Response:
        """An error of a validated request, back to the client's redirect URI (RFC 6749
        §4.1.2.1) with `iss` (RFC 9207): the issuer `site` names."""
        params = [*error.get_body(), ("iss", site.base_url)]
        return AuthorizationServer._redirect(add_params_to_uri(error.redirect_uri, params))

    @staticmethod
    def _redirect(location: str) -> Response:
        return RedirectResponse(location, status_code=302, headers=NO_STORE)

    def _client_view(self, auth: AuthorizationRequest) -> ClientView:
        parts = urlsplit(auth.redirect_uri)
        host = parts.netloc.rpartition("@")[2] or f"{parts.scheme}:"
        return ClientView(auth.client.name, auth.client.client_id, host)

    def _set_cookie(self, response: Response, value: str, ttl: float) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=int(ttl),
            path=self.cookie_path,
            secure=self.secure_cookie,
            httponly=True,
            samesite="lax",
        )

    async def _form(self, request: Request) -> list[tuple[str, str]]:
        """The form fields of a POST (`ValueError` when it is not a well-formed form)."""
        if _media_type(request) != FORM:
            raise ValueError("not a form")
        body = await _body(request)
        pairs: list[tuple[str, str]] = url_decode(body.decode("utf-8"))
        return pairs

    # -- client endpoints ------------------------------------------------------------------

    async def _client_request(
        self, request: Request
    ) -> tuple[Client, dict[str, str]] | JSONResponse:
        """The form of a token or revocation request and its authenticated client, or the
        error response."""
        try:
            pairs = await self._form(request)
        except _BodyTooLarge:
            return _error_response(InvalidRequestError("the request body is too large"))
        except ValueError:
            return _error_response(InvalidRequestError(f"send a {FORM} body"))
        params: dict[str, str] = {}
        for name, value in pairs:
            if name in params:
                return _error_response(InvalidRequestError("a parameter is repeated"))
            if value != "":
                params[name] = value
        basic = extract_basic_authorization(request.headers)
        try:
            client = await self.clients.authenticate(
                params.get("client_id"),
                params.get("client_secret"),
                (basic[0], basic[1] or "") if basic[0] is not None else None,
            )
        except ClientError as exc:
            error = InvalidClientError(_describable(exc.description), status_code=401)
            response = _error_response(error)
            if basic[0] is None:
                del response.headers["www-authenticate"]
            return response
        return client, params

    async def token(self, request: Request) -> Response:
        found = await self._client_request(request)
        if isinstance(found, JSONResponse):
            return found
        client, params = found
        grant_type = params.get("grant_type")
        site = self._site(request)
        try:
            if grant_type == "authorization_code":
                body = await self._code_grant(client, params, site)
            elif grant_type == "refresh_token":
                body = await self._refresh_grant(client, params, site)
            elif grant_type is None:
                raise InvalidRequestError("grant_type is missing")
            else:
                raise UnsupportedGrantTypeError(grant_type)
        except OAuth2Error as exc:
            return _error_response(exc)
        return JSONResponse(body, headers=NO_STORE)

    def _target(self, params: Mapping[str, str], site: ResourceServer) -> str | None:
        """The resource a token request's `resource` parameter names (canonical), None without
        one; `invalid_target` when it names none of this server's."""
        target = params.get("resource")
        if target is None:
            return None
        named = named_resource(target, self.resource.resources)
        if named is None:
            raise invalid_target(f"this server issues tokens for {site.resource} only")
        return named

    async def _code_grant(
        self, client: Client, params: Mapping[str, str], site: ResourceServer
    ) -> dict[str, Any]:
        """The code's tokens, for the resource the code was issued for (the token request may
        name it again, not another one)."""
        code = params.get("code")
        verifier = params.get("code_verifier")
        if code is None:
            raise InvalidRequestError("code is missing")
        if verifier is None:
            raise InvalidRequestError("code_verifier is missing (PKCE)")
        target = self._target(params, site)
        redeemed = await self.store.redeem_code(code, client.client_id)
        if redeemed is None:
            raise InvalidGrantError("the code is unknown, expired or was issued to another client")
        if redeemed.replayed:
            log.warning("authorization code replayed", client_id=client.client_id)
            raise InvalidGrantError("the code was used before; its connection is revoked")
        record = redeemed.code
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is not None and redirect_uri != record.redirect_uri:
            raise InvalidGrantError("redirect_uri differs from the authorization request")
        # the server's public URL changed meanwhile, or the request names another of its names
        if record.resource not in self.resource.resources or target not in (None, record.resource):
            raise invalid_target("the code was issued for another resource")
        # the code is spent either way: a wrong verifier burns it
        if not CODE_VERIFIER_PATTERN.fullmatch(verifier) or not hmac.compare_digest(
            create_s256_code_challenge(verifier).encode(), record.code_challenge.encode()
        ):
            raise InvalidGrantError("code_verifier does not match the code_challenge")
        user = await self.accounts.user_by_id(record.user_id)
        if user is None:
            raise InvalidGrantError("the user of this code no longer exists")
        connection, refresh = await self.store.create_connection(
            code, record.user_id, client.client_id, client.name, record.space_id, record.scopes
        )
        if connection.revoked_at is not None:
            raise InvalidGrantError("the code was used before; its connection is revoked")
        return self._tokens(
            user.id,
            user.email,
            client,
            connection.gid,
            record.space_id,
            record.scopes,
            refresh,
            audience=record.resource,
        )

    async def _refresh_grant(
        self, client: Client, params: Mapping[str, str], site: ResourceServer
    ) -> dict[str, Any]:
        """A rotated refresh token and an access token for the resource the request names, or
        the one it reached (`site`)."""
        token = params.get("refresh_token")
        if token is None:
            raise InvalidRequestError("refresh_token is missing")
        asked: set[str] | None = None
        if "scope" in params:
            asked = set(scope_to_list(params["scope"])) or None
        if asked is not None and not asked <= set(self.scopes):
            # decided before the token is looked at (a rotated token still meets the reuse
            # check below, whatever scope comes with it)
            raise InvalidScopeError(f"only these scopes are offered: {' '.join(self.scopes)}")
        audience = self._target(params, site) or site.resource
        try:
            rotated = await self.store.rotate_refresh(token, client.client_id)
        except RefreshReused:
            log.warning("refresh token reused; connection revoked", client_id=client.client_id)
            raise InvalidGrantError(
                "the refresh token was used before; its connection is revoked"
            ) from None
        if rotated is None:
            raise InvalidGrantError("the refresh token is unknown, expired or revoked")
        connection = rotated.connection
        user = await self.accounts.user_by_id(connection.user_id)
        if user is None:
            await self.store.revoke_connection(connection.gid)
            raise InvalidGrantError("the user of this connection no longer exists")
        # a refresh may narrow the granted scope, never widen it: what was asked beyond the
        # grant is left out (the answer's `scope` says what the token carries, RFC 6749 §5.1)
        scopes = connection.scopes
        if asked is not None:
            scopes = tuple(s for s in connection.scopes if s in asked) or connection.scopes
        return self._tokens(
            user.id,
            user.email,
            client,
            connection.gid,
            connection.space_id,
            scopes,
            rotated.refresh_token,
            audience=audience,
        )

    def _tokens(
        self,
        user_id: str,
        email: str,
        client: Client,
        gid: str,
        space_id: str,
        scopes: tuple[str, ...],
        refresh: str,
        *,
        audience: str,
    ) -> dict[str, Any]:
        scope = scopes_text(scopes)
        issued = self.issuer.issue(
            user_id,
            email=email,
            ttl=ACCESS_TOKEN_TTL,
            audience=audience,
            claims={"scope": scope, "space": space_id, "client_id": client.client_id, "gid": gid},
        )
        return {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": int(ACCESS_TOKEN_TTL.total_seconds()),
            "refresh_token": refresh,
            "scope": scope,
        }

    async def revoke(self, request: Request) -> Response:
        """RFC 7009: the connection a refresh token or access token of this client belongs to
        is revoked; an unknown token, or another client's, is answered 200 all the same."""
        found = await self._client_request(request)
        if isinstance(found, JSONResponse):
            return found
        client, params = found
        token = params.get("token")
        if token is None:
            return _error_response(InvalidRequestError("token is missing"))
        gid: str | None = None
        connection = await self.store.connection_of_refresh(token)
        if connection is not None:
            gid = connection.gid if connection.client_id == client.client_id else None
        else:
            gid = await self._access_token_grant(token, client)
        if gid is not None and await self.store.revoke_connection(gid):
            log.info("connection revoked by its client", client_id=client.client_id, gid=gid)
        return Response(status_code=200, headers=NO_STORE)

    async def _access_token_grant(self, token: str, client: Client) -> str | None:
        """The connection id of one of our access tokens issued to `client` (signature and
        audience checked, expiry not: an expired token may still be revoked), else None."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        key = await self.keys.find(kid) if isinstance(kid, str) else None
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=list(self.resource.resources),
                issuer=self.issuer.issuer,
                options={"verify_exp": False, "require": ["sub", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        gid = claims.get("gid")
        if claims.get("client_id") != client.client_id or not isinstance(gid, str):
            return None
        connection = await self.store.connection(gid)
        if connection is None or connection.client_id != client.client_id:
            return None
        if connection.user_id != claims.get("sub"):
            return None
        return gid

    async def register(self, request: Request) -> Response:
        """RFC 7591 dynamic registration (JSON body)."""
        if _media_type(request) != "application/json":
            return self._registration_error("invalid_client_metadata", "send a JSON body")
        try:
            body = await _body(request)
        except _BodyTooLarge:
            return self._registration_error("invalid_client_metadata", "the body is too large")
        try:
            metadata = loads_json(body)
        except JsonInputError:
            return self._registration_error("invalid_client_metadata", "the body is not JSON")
        if not isinstance(metadata, dict):
            return self._registration_error(
                "invalid_client_metadata", "the body must be a JSON object"
            )
        try:
            registered = await self.clients.register(metadata)
        except ClientError as exc:
            return self._registration_error(exc.error, exc.description)
        log.info("client registered", client_id=registered.get("client_id"))
        return JSONResponse(registered, status_code=201, headers=NO_STORE)

    @staticmethod
    def _registration_error(error: str, description: str) -> JSONResponse:
        return JSONResponse(
            {"error": error, "error_description": description}, status_code=400, headers=NO_STORE
        )


def _unavailable(
    endpoint: Callable[[Request], Awaitable[Response]], *, page: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint`, answering 503 (`Retry-After: 1`) when the database is out of reach: a page
    for the browser, else OAuth's `temporarily_unavailable` as JSON. Nothing was granted."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except DatabaseUnavailable as exc:
            log.warning("oauth request failed: database unavailable", path=request.url.path)
            retry = {"retry-after": "1"}
            if page:
                message = "The server cannot reach its database right now. Try again shortly."
                return page_response(
                    error_page("Temporarily unavailable", message), status=503, headers=retry
                )
            return JSONResponse(
                {"error": "temporarily_unavailable", "error_description": exc.message},
                status_code=503,
                headers={**NO_STORE, **retry},
            )

    return guarded


def _describable(text: str) -> str:
    """`text` without the characters an OAuth error description may not hold."""
    return "".join(c for c in text if 0x20 <= ord(c) <= 0x7E and c not in '"\\')


__all__ = ["SESSION_COOKIE", "AuthorizationServer"]
