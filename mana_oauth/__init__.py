"""The built-in OAuth 2.1 authorization server for remote MCP clients: client registration
(Client ID Metadata Documents and RFC 7591), sign-in and consent pages, codes, tokens, refresh
rotation and revocation, and the connections a user granted.

Modules, from the database up:
    schema, store   the `oauth` tables and `OAuthStore` (every secret stored as a hash)
    connections     `GrantCheck`: is an access token's connection still live (for the guard)
    cimd, clients   client metadata documents, registration, client authentication
    metadata        the RFC 8414 document
    authorization   validation of an authorization request (what may redirect, what may not)
    pages           the sign-in, consent and error pages
    server          `AuthorizationServer`: the endpoints, mounted by `mana_http.app`
"""
