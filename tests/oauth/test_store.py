"""The authorization server's store on both backends: clients, single-use codes (replay revokes),
connections, refresh rotation (reuse revokes the family), browser sessions, secrets stored only
as hashes, expired rows purged, and single use under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from mana_oauth.store import (
    BROWSER_TTL_ANONYMOUS,
    CODE_RETENTION,
    CODE_TTL,
    REFRESH_TTL,
    ClientRecord,
    OAuthStore,
    RefreshReused,
    Rotated,
    secret_hash,
)
from tests.oauth.helpers import (
    CLIENT,
    READ_WRITE,
    BarrierDatabase,
    SetClock,
    code_record,
    connect_with_code,
    oauth_database,
)
from tool_registry.store import Database


@pytest_asyncio.fixture
async def db(database_target: str) -> AsyncIterator[Database]:
    async with oauth_database(database_target) as database:
        yield database


@pytest.fixture
def clock() -> SetClock:
    return SetClock()


@pytest.fixture
def store(db: Database, clock: SetClock) -> OAuthStore:
    return OAuthStore(db, clock)


async def _count(db: Database, table: str) -> int:
    return int(
        await db.read(lambda c: c.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
    )


async def test_clients_are_saved_replaced_and_read_back(store: OAuthStore, clock: SetClock) -> None:
    dcr = ClientRecord(
        "mana-dcr-1",
        "dcr",
        {"client_name": "Inspector", "redirect_uris": ["http://127.0.0.1:6274/cb"]},
        secret_hash("s3cret"),
        clock(),
        None,
    )
    await store.save_client(dcr)
    assert await store.get_client("mana-dcr-1") == dcr
    assert await store.get_client("nobody") is None

    cimd = ClientRecord(CLIENT, "cimd", {"client_name": "Old"}, None, clock(), clock() + 300)
    await store.save_client(cimd)
    newer = ClientRecord(CLIENT, "cimd", {"client_name": "New"}, None, clock(), clock() + 600)
    await store.save_client(newer)
    assert await store.get_client(CLIENT) == newer


async def test_an_expired_cimd_row_is_purged_when_another_client_is_saved(
    store: OAuthStore, db: Database, clock: SetClock
) -> None:
    await store.save_client(ClientRecord(CLIENT, "cimd", {}, None, clock(), clock() + 300))
    await store.save_client(ClientRecord("dcr-a", "dcr", {}, None, clock(), None))
    clock.advance(301)
    assert await store.get_client(CLIENT) is not None  # expired but not yet purged: caller decides
    await store.save_client(ClientRecord("dcr-b", "dcr", {}, None, clock(), None))
    assert await store.get_client(CLIENT) is None
    assert await store.get_client("dcr-a") is not None  # registered clients never expire
    assert await _count(db, "oauth_clients") == 2


async def test_a_code_is_used_once_and_its_replay_revokes_the_connection(
    store: OAuthStore, db: Database, clock: SetClock
) -> None:
    record = code_record(clock)
    gid, refresh = await connect_with_code(store, "the-code", record)
    connection = await store.connection(gid)
    assert connection is not None and connection.active
    assert connection.scopes == READ_WRITE and connection.space_id == "spc_brand"

    again = await store.redeem_code("the-code", CLIENT)
    assert again is not None and again.replayed and again.code.gid == gid
    revoked = await store.connection(gid)
    assert revoked is not None and revoked.revoked_at == clock()
    assert await store.rotate_refresh(refresh, CLIENT) is None
    assert await _count(db, "oauth_refresh_tokens") == 0


async def test_unknown_expired_and_foreign_codes_are_refused(
    store: OAuthStore, clock: SetClock
) -> None:
    assert await store.redeem_code("never-issued", CLIENT) is None
    await store.create_code("c1", code_record(clock))
    assert await store.redeem_code("c1", "https://other.example/client.json") is None
    redeemed = await store.redeem_code("c1", CLIENT)  # another client's try did not use it up
    assert redeemed is not None and not redeemed.replayed

    await store.create_code("c2", code_record(clock))
    clock.advance(CODE_TTL)
    assert await store.redeem_code("c2", CLIENT) is None


async def test_a_replay_after_the_code_expired_still_revokes_its_connection(
    store: OAuthStore, clock: SetClock
) -> None:
    gid, _ = await connect_with_code(store, "late", code_record(clock))
    clock.advance(CODE_TTL + CODE_RETENTION / 2)
    replay = await store.redeem_code("late", CLIENT)
    assert replay is not None and replay.replayed
    connection = await store.connection(gid)
    assert connection is not None and not connection.active


async def test_codes_and_other_secrets_are_stored_only_as_hashes(
    store: OAuthStore, db: Database, clock: SetClock
) -> None:
    _gid, refresh = await connect_with_code(store, "plain-code-value", code_record(clock))
    session_id, _csrf = await store.open_browser_session(None, BROWSER_TTL_ANONYMOUS)

    def dump(conn: object) -> str:
        rows: list[str] = []
        for table in ("oauth_codes", "oauth_refresh_tokens", "oauth_browser_sessions"):
            rows += [repr(tuple(r)) for r in conn.execute(f"SELECT * FROM {table}").fetchall()]  # type: ignore[attr-defined]  # noqa: S608
        return "\n".join(rows)

    stored = await db.read(dump)
    for secret in ("plain-code-value", refresh, session_id):
        assert secret not in stored
        assert secret_hash(secret) in stored


async def test_a_replay_before_the_exchange_finished_leaves_the_connection_born_revoked(
    store: OAuthStore, clock: SetClock
) -> None:
    record = code_record(clock)
    await store.create_code("raced", record)
    first = await store.redeem_code("raced", CLIENT)
    second = await store.redeem_code("raced", CLIENT)
    assert first is not None and not first.replayed
    assert second is not None and second.replayed
    connection, refresh = await store.create_connection(
        "raced", record.user_id, CLIENT, "Claude", record.space_id, record.scopes
    )
    assert not connection.active
    assert await store.rotate_refresh(refresh, CLIENT) is None


async def test_create_connection_refuses_a_code_that_was_not_redeemed(
    store: OAuthStore, clock: SetClock
) -> None:
    record = code_record(clock)
    await store.create_code("fresh", record)
    with pytest.raises(ValueError, match="redeemed"):
        await store.create_connection("fresh", "usr_ann", CLIENT, "Claude", "spc", READ_WRITE)
    gid, _ = await connect_with_code(store, "used", record)
    with pytest.raises(ValueError, match="redeemed"):  # one connection per code
        await store.create_connection("used", "usr_ann", CLIENT, "Claude", "spc", READ_WRITE)
    assert (await store.connection(gid)) is not None


async def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_family(
    store: OAuthStore, clock: SetClock
) -> None:
    gid, first = await connect_with_code(store, "code", code_record(clock))
    clock.advance(10)
    rotated = await store.rotate_refresh(first, CLIENT)
    assert rotated is not None and rotated.refresh_token != first
    assert rotated.connection.gid == gid and rotated.connection.last_used_at == clock()
    second = rotated.refresh_token
    third = await store.rotate_refresh(second, CLIENT)
    assert third is not None

    with pytest.raises(RefreshReused) as reused:
        await store.rotate_refresh(first, CLIENT)
    assert reused.value.gid == gid
    connection = await store.connection(gid)
    assert connection is not None and not connection.active
    assert await store.rotate_refresh(third.refresh_token, CLIENT) is None


async def test_refresh_tokens_of_another_client_expired_or_unknown_are_refused(
    store: OAuthStore, clock: SetClock
) -> None:
    gid, refresh = await connect_with_code(store, "code", code_record(clock))
    assert await store.rotate_refresh("not-a-token", CLIENT) is None
    assert await store.rotate_refresh(refresh, "https://evil.example/c.json") is None
    connection = await store.connection(gid)
    assert connection is not None and connection.active  # a foreign client revokes nothing
    clock.advance(REFRESH_TTL)
    assert await store.rotate_refresh(refresh, CLIENT) is None


async def test_revoking_a_connection_ends_its_refresh_tokens(
    store: OAuthStore, clock: SetClock
) -> None:
    gid, refresh = await connect_with_code(store, "code", code_record(clock))
    found = await store.connection_of_refresh(refresh)
    assert found is not None and found.gid == gid
    assert await store.revoke_connection(gid)
    assert not await store.revoke_connection(gid)  # already revoked
    assert not await store.revoke_connection("conn_unknown")
    assert await store.rotate_refresh(refresh, CLIENT) is None
    assert await store.connections_of("usr_ann") == []
    listed = await store.connections_of("usr_ann", include_revoked=True)
    assert [c.gid for c in listed] == [gid]


async def test_connections_of_lists_a_users_own_newest_first_and_touch_moves_forward(
    store: OAuthStore, clock: SetClock
) -> None:
    older, _ = await connect_with_code(store, "a", code_record(clock))
    clock.advance(5)
    newer, _ = await connect_with_code(store, "b", code_record(clock, scopes=("mana:read",)))
    await connect_with_code(store, "c", code_record(clock, user_id="usr_bob"))
    assert [c.gid for c in await store.connections_of("usr_ann")] == [newer, older]

    await store.touch(older, clock() + 100)
    await store.touch(older, clock() + 50)  # never back
    touched = await store.connection(older)
    assert touched is not None and touched.last_used_at == clock() + 100

    revoked = await store.revoke_connections_of("usr_ann")
    assert {c.gid for c in revoked} == {older, newer}
    assert await store.connections_of("usr_ann") == []
    assert len(await store.connections_of("usr_bob")) == 1


async def test_expired_codes_refresh_tokens_and_old_revocations_are_purged(
    store: OAuthStore, db: Database, clock: SetClock
) -> None:
    gid, _ = await connect_with_code(store, "old", code_record(clock))
    await store.create_code("never-used", code_record(clock))
    await store.revoke_connection(gid)
    clock.advance(CODE_TTL + CODE_RETENTION + 1)
    await store.create_code("new", code_record(clock))
    assert await _count(db, "oauth_codes") == 1

    other, refresh = await connect_with_code(store, "next", code_record(clock))
    clock.advance(REFRESH_TTL + 1)
    await connect_with_code(store, "later", code_record(clock))
    assert await store.connection(gid) is None  # revoked more than 30 days ago: gone
    assert await store.connection(other) is not None  # expired, not revoked: still listed
    assert await store.connection_of_refresh(refresh) is None
    assert await _count(db, "oauth_refresh_tokens") == 1


async def test_rotated_refresh_tokens_are_purged_once_expired_by_later_rotations(
    store: OAuthStore, db: Database, clock: SetClock
) -> None:
    """A client refreshing every hour for months leaves only the last 30 days of rotated
    tokens (kept to recognise their reuse), not every token it ever had."""
    _gid, refresh = await connect_with_code(store, "code", code_record(clock))
    for _ in range(3):
        clock.advance(REFRESH_TTL / 2)
        rotated = await store.rotate_refresh(refresh, CLIENT)
        assert rotated is not None
        refresh = rotated.refresh_token
    # rows left: the tokens issued in the last 30 days (two rotated ones and the current)
    assert await _count(db, "oauth_refresh_tokens") == 3


async def test_browser_sessions_expire_sign_in_rotates_the_id_and_end_forgets(
    store: OAuthStore, clock: SetClock
) -> None:
    anonymous, csrf = await store.open_browser_session(None, BROWSER_TTL_ANONYMOUS)
    assert await store.browser_session(anonymous) == (None, csrf)
    signed_in, csrf2 = await store.sign_in_browser_session(anonymous, "usr_ann", 1800)
    assert signed_in != anonymous and csrf2 != csrf
    assert await store.browser_session(anonymous) is None
    assert await store.browser_session(signed_in) == ("usr_ann", csrf2)
    clock.advance(1800)
    assert await store.browser_session(signed_in) is None

    again, _ = await store.open_browser_session("usr_ann", 60)
    await store.end_browser_session(again)
    assert await store.browser_session(again) is None


async def test_expired_browser_sessions_are_purged_when_one_is_opened(
    store: OAuthStore, db: Database, clock: SetClock
) -> None:
    for _ in range(3):
        await store.open_browser_session(None, BROWSER_TTL_ANONYMOUS)
    clock.advance(BROWSER_TTL_ANONYMOUS)
    live, _ = await store.open_browser_session(None, BROWSER_TTL_ANONYMOUS)
    assert await _count(db, "oauth_browser_sessions") == 1
    assert await store.browser_session(live) is not None


async def test_two_concurrent_redemptions_one_wins_the_other_is_a_replay(
    store: OAuthStore, db: Database, database_target: str, clock: SetClock
) -> None:
    """Two stores on two database handles (as two replicas) redeem one code at the same moment."""
    record = code_record(clock)
    await store.create_code("contested", record)
    async with oauth_database(database_target) as other_db:
        first, second = BarrierDatabase.pair(db, other_db)
        results = await asyncio.gather(
            OAuthStore(first, clock).redeem_code("contested", CLIENT),
            OAuthStore(second, clock).redeem_code("contested", CLIENT),
        )
    assert all(r is not None for r in results)
    assert sorted(r.replayed for r in results if r is not None) == [False, True]
    connection, _ = await store.create_connection(
        "contested", record.user_id, CLIENT, "Claude", record.space_id, record.scopes
    )
    assert not connection.active


async def test_two_concurrent_rotations_one_wins_the_other_is_a_reuse(
    store: OAuthStore, db: Database, database_target: str, clock: SetClock
) -> None:
    """Two replicas rotate one refresh token at the same moment: one new token, and the
    other attempt is a reuse that revokes the connection (with the token just issued)."""
    gid, refresh = await connect_with_code(store, "code", code_record(clock))
    async with oauth_database(database_target) as other_db:
        first, second = BarrierDatabase.pair(db, other_db)
        results = await asyncio.gather(
            OAuthStore(first, clock).rotate_refresh(refresh, CLIENT),
            OAuthStore(second, clock).rotate_refresh(refresh, CLIENT),
            return_exceptions=True,
        )
    kinds = sorted(type(r).__name__ for r in results)
    assert kinds == ["RefreshReused", "Rotated"]
    connection = await store.connection(gid)
    assert connection is not None and not connection.active
    (winner,) = (r for r in results if isinstance(r, Rotated))
    assert await store.rotate_refresh(winner.refresh_token, CLIENT) is None
