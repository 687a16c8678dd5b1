"""The server-rendered pages of `/oauth/authorize`: sign-in, consent and error.

Plain HTML forms that work without JavaScript. Every value a page shows or carries comes from
the request, the client's metadata or the user's data, so all of it goes through `_e` (HTML
escaping, quotes included). Every page is sent by `page_response` with the same protective
headers: a CSP that allows no script, no framing (`frame-ancestors 'none'`, `X-Frame-Options`)
and form posts only to this server and the client's redirect origin (a browser applies
`form-action` to the redirect after the consent form too), `Cache-Control: no-store`.

Referrer policy is `same-origin`, not `no-referrer`: under `no-referrer` Chromium sends
`Origin: null` with a form POST, which the server's Origin check must refuse; `same-origin`
still sends no `Referer` to any other origin (the client's redirect URI included).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")  # RFC 3986 §3.1 (urlsplit lower-cases it)
_STYLE = """
body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}form{display:grid;gap:.8rem}label{display:block}
input[type=email],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}
fieldset{border:1px solid #ccc;border-radius:.4rem}button{padding:.6rem 1rem;font-size:1rem}
.error{color:#a00}.who{color:#555;font-size:.9rem}.buttons{display:flex;gap:.8rem}
code{word-break:break-all}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def form_action_source(redirect_uri: str | None) -> str | None:
    """The CSP source for a redirect URI's origin (`https://host:port`, or `scheme:` for a
    custom-scheme app redirect), or None when it has none worth naming."""
    if not redirect_uri:
        return None
    parts = urlsplit(redirect_uri)
    if parts.scheme in ("http", "https") and parts.netloc:
        host = parts.netloc.rpartition("@")[2]
        return f"{parts.scheme}://{host}"
    if _SCHEME.fullmatch(parts.scheme):
        return f"{parts.scheme}:"
    return None


def security_headers(redirect_uri: str | None = None) -> dict[str, str]:
    """The headers every page carries; `redirect_uri` (already validated for the client) is
    the one other place its forms may lead to."""
    form_action = "'self'"
    source = form_action_source(redirect_uri)
    if source is not None:
        form_action += " " + source
    return {
        "content-security-policy": (
            "default-src 'none'; style-src 'unsafe-inline'; "
            f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        ),
        "x-frame-options": "DENY",
        "cache-control": "no-store",
        "pragma": "no-cache",
        "referrer-policy": "same-origin",
        "x-content-type-options": "nosniff",
    }


def page_response(
    body: str,
    *,
    status: int = 200,
    redirect_uri: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    return HTMLResponse(
        body, status_code=status, headers={**security_headers(redirect_uri), **(headers or {})}
    )


def _document(title: str, content: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{content}</main></body></html>\n"
    )


def _hidden(params: Iterable[tuple[str, str]]) -> str:
    return "".join(
        f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">' for name, value in params
    )


@dataclass(frozen=True)
class ClientView:
    """What a page says about the client asking for access."""

    name: str
    client_id: str
    redirect_host: str


@dataclass(frozen=True)
class SpaceChoice:
    id: str
    name: str
    slug: str
    type: str


def login_page(
    client: ClientView,
    params: Iterable[tuple[str, str]],
    csrf: str,
    *,
    action: str,
    email: str = "",
    error: str | None = None,
) -> str:
    """Sign in (the same password as `mana`'s login) before consenting."""
    problem = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    return _document(
        "Sign in to Mana",
        f"<h1>Sign in to Mana</h1>"
        f"<p><strong>{_e(client.name)}</strong> wants to connect to your Mana data. "
        f"Sign in to continue.</p>{problem}"
        f'<form method="post" action="{_e(action)}">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">{_hidden(params)}'
        f'<label>Email <input type="email" name="email" value="{_e(email)}" '
        f'autocomplete="username" required{"" if email else " autofocus"}></label>'
        '<label>Password <input type="password" name="password" '
        f'autocomplete="current-password" required{" autofocus" if email else ""}></label>'
        '<button type="submit" name="action" value="login">Sign in</button>'
        "</form>",
    )


def consent_page(
    client: ClientView,
    params: Iterable[tuple[str, str]],
    csrf: str,
    *,
    action: str,
    user_email: str,
    spaces: Iterable[SpaceChoice],
    default_space: str,
    write_offered: bool,
    write_default: bool,
    redirect_uri: str,
) -> str:
    """Name the client and where it will be sent, choose the space and the access."""
    space_inputs = "".join(
        f'<label><input type="radio" name="space" value="{_e(s.id)}"'
        f"{' checked' if s.id == default_space else ''}> {_e(s.name)} "
        f'<span class="who">({_e(s.slug)}, {_e(s.type)})</span></label>'
        for s in spaces
    )
    write = (
        '<label><input type="radio" name="access" value="write"'
        f"{' checked' if write_default else ''}> Read and write "
        '<span class="who">(mana:read mana:write)</span></label>'
        if write_offered
        else ""
    )
    return _document(
        "Connect to Mana",
        f"<h1>Connect {_e(client.name)} to Mana</h1>"
        f'<p class="who">Signed in as {_e(user_email)}</p>'
        f"<p><strong>{_e(client.name)}</strong> will act as you in the space you choose. "
        f"After you allow it, you are sent to <strong>{_e(client.redirect_host)}</strong>.</p>"
        f'<p class="who">Client: <code>{_e(client.client_id)}</code><br>'
        f"Redirect: <code>{_e(redirect_uri)}</code></p>"
        f'<form method="post" action="{_e(action)}">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">{_hidden(params)}'
        f"<fieldset><legend>Space</legend>{space_inputs}</fieldset>"
        "<fieldset><legend>Access</legend>"
        '<label><input type="radio" name="access" value="read"'
        f"{'' if write_default else ' checked'}> Read only "
        '<span class="who">(mana:read)</span></label>'
        f"{write}</fieldset>"
        '<div class="buttons">'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></div>'
        "</form>",
    )


def error_page(title: str, message: str) -> str:
    """A request the server cannot send back to the client (unknown client, a redirect URI
    it did not register, an expired form): said here, never redirected anywhere."""
    return _document(title, f"<h1>{_e(title)}</h1><p>{_e(message)}</p>")


__all__ = [
    "ClientView",
    "SpaceChoice",
    "consent_page",
    "error_page",
    "form_action_source",
    "login_page",
    "page_response",
    "security_headers",
]
