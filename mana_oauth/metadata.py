"""The built-in authorization server's RFC 8414 metadata document: what a remote MCP client
reads (at `/.well-known/oauth-authorization-server`, or the OpenID discovery path) to find the
endpoints and the supported methods before it registers or signs a user in."""

from __future__ import annotations

from typing import Any

from mana_auth.keys import ALGORITHM

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret
REVOKE_PATH = "/oauth/revoke"
REGISTER_PATH = "/oauth/register"
JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATHS = (
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
)
CLIENT_AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")
GRANT_TYPES = ("authorization_code", "refresh_token")


def authorization_server_metadata(issuer: str, scopes: tuple[str, ...]) -> dict[str, Any]:
    """The document for the issuer `issuer` (the server's public base URL, without a trailing
    slash: every endpoint is below it, so the URLs a client is told are the ones it reaches)."""
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + AUTHORIZE_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "revocation_endpoint": issuer + REVOKE_PATH,
        "registration_endpoint": issuer + REGISTER_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "scopes_supported": list(scopes),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "client_id_metadata_document_supported": True,
        "authorization_response_iss_parameter_supported": True,
        # Required of a document at the OpenID discovery path (OpenID Connect Discovery §3),
        # which is the one discovery URL a client finds below a public URL with a path (the
        # RFC 8414 form inserts the path after the host's /.well-known/): the TypeScript SDK
        # refuses the document there without them. Tokens are signed with the JWKS's
        # EdDSA keys; no ID token is issued (`openid` is not an offered scope).
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
    }


__all__ = [
    "AUTHORIZE_PATH",
    "JWKS_PATH",
    "METADATA_PATHS",
    "REGISTER_PATH",
    "REVOKE_PATH",
    "TOKEN_PATH",
    "authorization_server_metadata",
]
