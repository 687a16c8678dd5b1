"""The authorization server's state in the database (`mana_oauth.schema`), on either backend.

Every operation is one write unit (`Database.write`, serialised across every process on the
database) or one read, so replicas behind a round-robin proxy share clients, codes, connections,
refresh tokens and browser sign-ins. Secrets (codes, refresh tokens, browser-session ids) are
stored only as sha256 hex hashes (`secret_hash`): a leaked table holds nothing to present.

Single use is decided inside one unit: a code is marked used by the unit that reads it unused,
and a refresh token is marked rotated by the unit that reads it unrotated, so of two concurrent
redemptions (or rotations) exactly one wins and the other is seen as a replay (or reuse), which
revokes the connection. Expired rows are purged by the units that add rows of the same kind.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from tool_registry.store.connection import Conn
from tool_registry.store.database import Database

CODE_TTL = 60.0
"""Seconds an authorization code can be exchanged."""
CODE_RETENTION = 600.0
"""Seconds a code row outlives its expiry, so a late replay still revokes its connection."""
REFRESH_TTL = 30 * 86400.0
"""Seconds a refresh token (each one of a rotation) stays valid."""
BROWSER_TTL_ANONYMOUS = 15 * 60.0
"""Seconds a not-yet-signed-in browser session (login form) lives."""
BROWSER_TTL_SIGNED_IN = 30 * 60.0
"""Seconds a signed-in browser session (consent) lives."""
REVOKED_RETENTION = 30 * 86400.0
"""Seconds a revoked connection stays listed (`mana connections list --all`) before purge."""

CONNECTION_PREFIX = "conn_"


def secret_hash(secret: str) -> str:
    """The stored form of a secret: its sha256, hex. Compare hashes with `hmac.compare_digest`."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh unguessable secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def scopes_text(scopes: Sequence[str]) -> str:
    return " ".join(scopes)


def scopes_of(text: str) -> tuple[str, ...]:
    return tuple(s for s in text.split(" ") if s)


@dataclass(frozen=True)
class ClientRecord:
    """A registered (DCR) or fetched (CIMD) client."""

    client_id: str
    kind: Literal["cimd", "dcr"]
    metadata: dict[str, Any]  # the validated client metadata (RFC 7591 names)
    secret_hash: str | None  # DCR confidential clients only
    created_at: float
    expires_at: float | None  # CIMD cache expiry; None for DCR


@dataclass(frozen=True)
class CodeRecord:
    """What an authorization code stands for."""

    client_id: str
    user_id: str
    space_id: str
    scopes: tuple[str, ...]
    redirect_uri: str
    code_challenge: str
    resource: str
    expires_at: float
    gid: str | None = None  # the connection its exchange created, once it did


@dataclass(frozen=True)
class Connection:
    """One user's consent to one client (a grant); its refresh tokens are one family."""

    gid: str
    user_id: str
    client_id: str
    client_name: str
    space_id: str
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Redeemed:
    """The result of `redeem_code`. `replayed`: the code was used before, and the connection its
    first exchange created is revoked now (refuse the exchange)."""

    code: CodeRecord
    replayed: bool


@dataclass(frozen=True)
class Rotated:
    """The result of `rotate_refresh`: the connection and its new refresh token (plaintext,
    returned once)."""

    connection: Connection
    refresh_token: str


class RefreshReused(Exception):
    """A refresh token that was already rotated was presented again: its whole connection is
    revoked (it may have been stolen)."""

    def __init__(self, gid: str) -> None:
        super().__init__(f"refresh token reused; connection {gid} revoked")
        self.gid = gid


# -- SQL of one connection ----------------------------------------------------------------------

_CLIENT_COLUMNS = "client_id, kind, metadata, secret_hash, created_at, expires_at"
_CODE_COLUMNS = (
    "client_id, user_id, space_id, scopes, redirect_uri, code_challenge, resource, expires_at, gid"
)
_CONNECTION_COLUMNS = (
    "gid, user_id, client_id, client_name, space_id, scopes, created_at, last_used_at, revoked_at"
)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _client(raw: Any) -> ClientRecord:
    kind = str(raw["kind"])
    if kind not in ("cimd", "dcr"):
        raise ValueError(f"unknown client kind in oauth_clients: {kind!r}")
    metadata = json.loads(raw["metadata"])
    return ClientRecord(
        client_id=str(raw["client_id"]),
        kind="cimd" if kind == "cimd" else "dcr",
        metadata=dict(metadata),
        secret_hash=raw["secret_hash"],
        created_at=float(raw["created_at"]),
        expires_at=_optional_float(raw["expires_at"]),
    )


def _code(raw: Any) -> CodeRecord:
    return CodeRecord(
        client_id=str(raw["client_id"]),
        user_id=str(raw["user_id"]),
        space_id=str(raw["space_id"]),
        scopes=scopes_of(str(raw["scopes"])),
        redirect_uri=str(raw["redirect_uri"]),
        code_challenge=str(raw["code_challenge"]),
        resource=str(raw["resource"]),
        expires_at=float(raw["expires_at"]),
        gid=raw["gid"],
    )


def _connection(raw: Any) -> Connection:
    return Connection(
        gid=str(raw["gid"]),
        user_id=str(raw["user_id"]),
        client_id=str(raw["client_id"]),
        client_name=str(raw["client_name"]),
        space_id=str(raw["space_id"]),
        scopes=scopes_of(str(raw["scopes"])),
        created_at=float(raw["created_at"]),
        last_used_at=_optional_float(raw["last_used_at"]),
        revoked_at=_optional_float(raw["revoked_at"]),
    )


def upsert_client(conn: Conn, record: ClientRecord) -> None:
    conn.execute(
        f"INSERT INTO oauth_clients ({_CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "  # noqa: S608
        "ON CONFLICT (client_id) DO UPDATE SET kind = excluded.kind, "
        "metadata = excluded.metadata, secret_hash = excluded.secret_hash, "
        "created_at = excluded.created_at, expires_at = excluded.expires_at",
        (
            record.client_id,
            record.kind,
            json.dumps(record.metadata, sort_keys=True, separators=(",", ":")),
            record.secret_hash,
            record.created_at,
            record.expires_at,
        ),
    )


def select_client(conn: Conn, client_id: str) -> ClientRecord | None:
    raw = conn.execute(
        f"SELECT {_CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = ?",  # noqa: S608
        (client_id,),
    ).fetchone()
    return None if raw is None else _client(raw)


def purge_clients(conn: Conn, now: float) -> None:
    """Drop fetched (CIMD) clients whose cache has expired; registered ones stay."""
    conn.execute(
        "DELETE FROM oauth_clients WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)
    )


def insert_code(conn: Conn, code_hash: str, record: CodeRecord) -> None:
    conn.execute(
        f"INSERT INTO oauth_codes (code_hash, {_CODE_COLUMNS}) "  # noqa: S608 - fixed columns
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            code_hash,
            record.client_id,
            record.user_id,
            record.space_id,
            scopes_text(record.scopes),
            record.redirect_uri,
            record.code_challenge,
            record.resource,
            record.expires_at,
            record.gid,
        ),
    )


def select_code(conn: Conn, code_hash: str) -> tuple[CodeRecord, float | None, bool] | None:
    """The code's record, when it was used (or None) and whether a replay was seen."""
    raw = conn.execute(
        f"SELECT {_CODE_COLUMNS}, used_at, replayed FROM oauth_codes "  # noqa: S608
        "WHERE code_hash = ?",
        (code_hash,),
    ).fetchone()
    if raw is None:
        return None
    return _code(raw), _optional_float(raw["used_at"]), bool(raw["replayed"])


def mark_code_used(conn: Conn, code_hash: str, at: float) -> bool:
    """Mark an unused code used; False when it already was (someone else won)."""
    cur = conn.execute(
        "UPDATE oauth_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL",
        (at, code_hash),
    )
    return int(cur.rowcount) == 1


def mark_code_replayed(conn: Conn, code_hash: str) -> None:
    conn.execute("UPDATE oauth_codes SET replayed = 1 WHERE code_hash = ?", (code_hash,))


def set_code_connection(conn: Conn, code_hash: str, gid: str) -> None:
    conn.execute("UPDATE oauth_codes SET gid = ? WHERE code_hash = ?", (gid, code_hash))


def purge_codes(conn: Conn, cutoff: float) -> None:
    conn.execute("DELETE FROM oauth_codes WHERE expires_at < ?", (cutoff,))


def insert_connection(conn: Conn, connection: Connection) -> None:
    conn.execute(
        f"INSERT INTO oauth_connections ({_CONNECTION_COLUMNS}) "  # noqa: S608 - fixed columns
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            connection.gid,
            connection.user_id,
            connection.client_id,
            connection.client_name,
            connection.space_id,
            scopes_text(connection.scopes),
            connection.created_at,
            connection.last_used_at,
            connection.revoked_at,
        ),
    )


def select_connection(conn: Conn, gid: str) -> Connection | None:
    raw = conn.execute(
        f"SELECT {_CONNECTION_COLUMNS} FROM oauth_connections WHERE gid = ?",  # noqa: S608
        (gid,),
    ).fetchone()
    return None if raw is None else _connection(raw)


def select_connections_of(conn: Conn, user_id: str, include_revoked: bool) -> list[Connection]:
    """The user's connections, newest first."""
    live = "" if include_revoked else " AND revoked_at IS NULL"
    rows = conn.execute(
        f"SELECT {_CONNECTION_COLUMNS} FROM oauth_connections "  # noqa: S608 - fixed text
        f"WHERE user_id = ?{live} ORDER BY created_at DESC, gid",
        (user_id,),
    ).fetchall()
    return [_connection(r) for r in rows]


def revoke(conn: Conn, gid: str, at: float) -> bool:
    """Revoke a live connection and end its refresh tokens; False when none was live."""
    cur = conn.execute(
        "UPDATE oauth_connections SET revoked_at = ? WHERE gid = ? AND revoked_at IS NULL",
        (at, gid),
    )
    conn.execute("DELETE FROM oauth_refresh_tokens WHERE gid = ?", (gid,))
    return int(cur.rowcount) == 1


def touch_connection(conn: Conn, gid: str, at: float) -> None:
    """Move `last_used_at` forward to `at` (never back)."""
    conn.execute(
        "UPDATE oauth_connections SET last_used_at = ? "
        "WHERE gid = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        (at, gid, at),
    )


def purge_connections(conn: Conn, cutoff: float) -> None:
    """Forget connections revoked before `cutoff` (and any refresh rows left of them)."""
    conn.execute(
        "DELETE FROM oauth_refresh_tokens WHERE gid IN "
        "(SELECT gid FROM oauth_connections WHERE revoked_at < ?)",
        (cutoff,),
    )
    conn.execute("DELETE FROM oauth_connections WHERE revoked_at < ?", (cutoff,))


def insert_refresh(conn: Conn, token_hash: str, gid: str, client_id: str, now: float) -> None:
    conn.execute(
        "INSERT INTO oauth_refresh_tokens (token_hash, gid, client_id, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (token_hash, gid, client_id, now, now + REFRESH_TTL),
    )


def select_refresh(conn: Conn, token_hash: str) -> Any:
    return conn.execute(
        "SELECT gid, client_id, expires_at, rotated_at FROM oauth_refresh_tokens "
        "WHERE token_hash = ?",
        (token_hash,),
    ).fetchone()


def mark_rotated(conn: Conn, token_hash: str, at: float) -> bool:
    """Mark an unrotated refresh token rotated; False when it already was."""
    cur = conn.execute(
        "UPDATE oauth_refresh_tokens SET rotated_at = ? WHERE token_hash = ? AND rotated_at IS NULL",
        (at, token_hash),
    )
    return int(cur.rowcount) == 1


def purge_refresh(conn: Conn, now: float) -> None:
    conn.execute("DELETE FROM oauth_refresh_tokens WHERE expires_at < ?", (now,))


def insert_browser_session(
    conn: Conn, id_hash: str, user_id: str | None, csrf: str, expires_at: float
) -> None:
    conn.execute(
        "INSERT INTO oauth_browser_sessions (id_hash, user_id, csrf, expires_at) "
        "VALUES (?, ?, ?, ?)",
        (id_hash, user_id, csrf, expires_at),
    )


def select_browser_session(conn: Conn, id_hash: str, now: float) -> tuple[str | None, str] | None:
    raw = conn.execute(
        "SELECT user_id, csrf FROM oauth_browser_sessions WHERE id_hash = ? AND expires_at > ?",
        (id_hash, now),
    ).fetchone()
    return None if raw is None else (raw["user_id"], str(raw["csrf"]))


def delete_browser_session(conn: Conn, id_hash: str) -> None:
    conn.execute("DELETE FROM oauth_browser_sessions WHERE id_hash = ?", (id_hash,))


def purge_browser_sessions(conn: Conn, now: float) -> None:
    conn.execute("DELETE FROM oauth_browser_sessions WHERE expires_at <= ?", (now,))


# -- the store ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reused:
    gid: str


class OAuthStore:
    """The authorization server's clients, codes, connections, refresh tokens and browser
    sessions; one database unit per operation (see the module docstring)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    # -- clients ---------------------------------------------------------------------------

    async def save_client(self, record: ClientRecord) -> None:
        """Insert or replace the client `record.client_id`; drops expired CIMD cache rows."""
        now = self._clock()

        def unit(conn: Conn) -> None:
            purge_clients(conn, now)
            upsert_client(conn, record)

        await self.db.write(unit)

    async def get_client(self, client_id: str) -> ClientRecord | None:
        """The stored client (a CIMD row even when its cache has expired: the caller decides)."""
        return await self.db.read(lambda c: select_client(c, client_id))

    # -- authorization codes -----------------------------------------------------------------

    async def create_code(self, code: str, record: CodeRecord) -> None:
        """Store a new code (its hash) for `record`; drops codes long past their expiry."""
        now = self._clock()

        def unit(conn: Conn) -> None:
            purge_codes(conn, now - CODE_RETENTION)
            insert_code(conn, secret_hash(code), record)

        await self.db.write(unit)

    async def redeem_code(self, code: str, client_id: str) -> Redeemed | None:
        """Use `code` once for `client_id`. None when it is unknown, expired or another
        client's. A code used before answers `replayed=True` and revokes the connection of its
        first exchange (or, if that exchange has not created it yet, makes it born revoked)."""
        code_hash = secret_hash(code)
        now = self._clock()

        def unit(conn: Conn) -> Redeemed | None:
            found = select_code(conn, code_hash)
            if found is None:
                return None
            record, used_at, _replayed = found
            if record.client_id != client_id:
                return None
            if used_at is not None:
                mark_code_replayed(conn, code_hash)
                if record.gid is not None:
                    revoke(conn, record.gid, now)
                return Redeemed(record, replayed=True)
            if record.expires_at <= now or not mark_code_used(conn, code_hash, now):
                return None
            return Redeemed(record, replayed=False)

        return await self.db.write(unit)

    # -- connections -----------------------------------------------------------------------

    async def create_connection(
        self,
        code: str | None,
        user_id: str,
        client_id: str,
        client_name: str,
        space_id: str,
        scopes: Sequence[str],
    ) -> tuple[Connection, str]:
        """A new connection and its first refresh token (plaintext). `code` is the plaintext
        authorization code being exchanged (already redeemed with `redeem_code`): the
        connection is recorded on it, so a replay of the code revokes it. If a replay was seen
        in between, the connection is created revoked (check `connection.active`). A code that
        was not redeemed, or that already has a connection, is a programming error
        (`ValueError`)."""
        now = self._clock()
        gid = CONNECTION_PREFIX + secrets.token_urlsafe(16)
        refresh = new_secret()

        def unit(conn: Conn) -> Connection:
            revoked_at: float | None = None
            if code is not None:
                code_hash = secret_hash(code)
                found = select_code(conn, code_hash)
                if found is None or found[1] is None or found[0].gid is not None:
                    raise ValueError("create_connection needs a redeemed code without connection")
                if found[2]:
                    revoked_at = now
                set_code_connection(conn, code_hash, gid)
            connection = Connection(
                gid=gid,
                user_id=user_id,
                client_id=client_id,
                client_name=client_name,
                space_id=space_id,
                scopes=tuple(scopes),
                created_at=now,
                last_used_at=None,
                revoked_at=revoked_at,
            )
            purge_refresh(conn, now)
            purge_connections(conn, now - REVOKED_RETENTION)
            insert_connection(conn, connection)
            if revoked_at is None:
                insert_refresh(conn, secret_hash(refresh), gid, client_id, now)
            return connection

        return await self.db.write(unit), refresh

    async def rotate_refresh(self, refresh_token: str, client_id: str) -> Rotated | None:
        """Exchange a refresh token for a new one of the same connection. None when it is
        unknown, expired, another client's or its connection is revoked. A token rotated
        before revokes its whole connection and raises `RefreshReused`."""
        token_hash = secret_hash(refresh_token)
        now = self._clock()
        fresh = new_secret()

        def unit(conn: Conn) -> Rotated | _Reused | None:
            row = select_refresh(conn, token_hash)
            if row is None or str(row["client_id"]) != client_id:
                return None
            gid = str(row["gid"])
            connection = select_connection(conn, gid)
            if connection is None or not connection.active:
                return None
            if row["rotated_at"] is not None:
                revoke(conn, gid, now)
                return _Reused(gid)
            if float(row["expires_at"]) <= now or not mark_rotated(conn, token_hash, now):
                return None
            purge_refresh(conn, now)
            insert_refresh(conn, secret_hash(fresh), gid, client_id, now)
            touch_connection(conn, gid, now)
            return Rotated(select_connection(conn, gid) or connection, fresh)

        # The reuse is reported after the unit committed: raised inside, it would roll the
        # revocation back.
        result = await self.db.write(unit)
        if isinstance(result, _Reused):
            raise RefreshReused(result.gid)
        return result

    async def connection_of_refresh(self, refresh_token: str) -> Connection | None:
        """The connection a refresh token (current or rotated) belongs to, revoked or not."""
        token_hash = secret_hash(refresh_token)

        def work(conn: Conn) -> Connection | None:
            row = select_refresh(conn, token_hash)
            return None if row is None else select_connection(conn, str(row["gid"]))

        return await self.db.read(work)

    async def revoke_connection(self, gid: str) -> bool:
        """Revoke the connection and end its refresh tokens; False when it was not live."""
        now = self._clock()
        return await self.db.write(lambda c: revoke(c, gid, now))

    async def revoke_connection_of(self, user_id: str, gid: str) -> tuple[Connection, bool] | None:
        """Revoke `gid` if it is `user_id`'s, in one unit: (the connection as it is now, whether
        this call revoked it: False when it was revoked before), or None when the user has no
        such connection (another user's is not revealed)."""
        now = self._clock()

        def unit(conn: Conn) -> tuple[Connection, bool] | None:
            connection = select_connection(conn, gid)
            if connection is None or connection.user_id != user_id:
                return None
            if not revoke(conn, gid, now):
                return connection, False
            return replace(connection, revoked_at=now), True

        return await self.db.write(unit)

    async def revoke_connections_of(self, user_id: str) -> list[Connection]:
        """Revoke every live connection of the user, in one unit; the ones it revoked (as they
        are now)."""
        now = self._clock()

        def unit(conn: Conn) -> list[Connection]:
            live = select_connections_of(conn, user_id, include_revoked=False)
            for connection in live:
                revoke(conn, connection.gid, now)
            return [replace(c, revoked_at=now) for c in live]

        return await self.db.write(unit)

    async def connection(self, gid: str) -> Connection | None:
        return await self.db.read(lambda c: select_connection(c, gid))

    async def connections_of(
        self, user_id: str, *, include_revoked: bool = False
    ) -> list[Connection]:
        """The user's connections, newest first (live ones only unless `include_revoked`)."""
        return await self.db.read(lambda c: select_connections_of(c, user_id, include_revoked))

    async def touch(self, gid: str, at: float) -> None:
        """Record a use of the connection at `at` (only ever moves forward). A one-row update
        that needs no database-wide order, so it does not queue behind other writes."""
        await self.db.write(lambda c: touch_connection(c, gid, at), serialised=False)

    # -- browser sessions at the authorization pages ----------------------------------------

    async def open_browser_session(self, user_id: str | None, ttl: float) -> tuple[str, str]:
        """A new browser session (anonymous when `user_id` is None) living `ttl` seconds:
        (session id for the cookie, CSRF token for its forms)."""
        now = self._clock()
        session_id, csrf = new_secret(), new_secret()

        def unit(conn: Conn) -> None:
            purge_browser_sessions(conn, now)
            insert_browser_session(conn, secret_hash(session_id), user_id, csrf, now + ttl)

        await self.db.write(unit)
        return session_id, csrf

    async def browser_session(self, session_id: str) -> tuple[str | None, str] | None:
        """(user id or None, CSRF token) of a live session; None when unknown or expired."""
        id_hash = secret_hash(session_id)
        now = self._clock()
        return await self.db.read(lambda c: select_browser_session(c, id_hash, now))

    async def sign_in_browser_session(
        self, session_id: str, user_id: str, ttl: float
    ) -> tuple[str, str]:
        """Sign the browser in as `user_id`: the old session ends and a new one (new id, new
        CSRF token) takes its place, so an id planted before sign-in is worthless after."""
        now = self._clock()
        new_id, csrf = new_secret(), new_secret()

        def unit(conn: Conn) -> None:
            delete_browser_session(conn, secret_hash(session_id))
            purge_browser_sessions(conn, now)
            insert_browser_session(conn, secret_hash(new_id), user_id, csrf, now + ttl)

        await self.db.write(unit)
        return new_id, csrf

    async def end_browser_session(self, session_id: str) -> None:
        id_hash = secret_hash(session_id)
        await self.db.write(lambda c: delete_browser_session(c, id_hash))
