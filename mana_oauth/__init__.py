"""The built-in OAuth 2.1 authorization server for remote MCP clients: client registration
(Client ID Metadata Documents and RFC 7591), sign-in and consent pages, codes, tokens, refresh
rotation and revocation, and the connections a user granted."""
