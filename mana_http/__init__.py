"""HTTP plumbing of the MCP server: the Starlette app with the MCP endpoint behind token and
space checks, sessions bound to users, `/auth/token`, JWKS, `/health`, `/metrics`, and a
graceful uvicorn runner. `mana_http.testing` has the in-process client for tests."""

from mana_http.app import (
    DEFAULT_ALLOWED_ORIGINS,
    AuthSetup,
    HttpConfig,
    ManaHttpApp,
    build_http_app,
)
from mana_http.serve import serve_http

__all__ = [
    "DEFAULT_ALLOWED_ORIGINS",
    "AuthSetup",
    "HttpConfig",
    "ManaHttpApp",
    "build_http_app",
    "serve_http",
]
