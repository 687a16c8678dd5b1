"""`mana connections list|revoke --as EMAIL` on both backends: a user sees and ends only their own
connections (client, space, access, created, last use), unknown ids are a one-line error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mana_cli.main import main
from mana_oauth.store import OAuthStore
from tests.mcp.support import Installation
from tests.oauth.helpers import SetClock, code_record, connect_with_code, oauth_database
from tool_registry.store import Accounts

Run = Callable[..., tuple[int, str, str]]


@dataclass(frozen=True)
class World:
    run: Run
    flags: list[str]
    target: str
    ann_brand: str  # ann's read-only connection acting in her brand space
    ann_personal: str  # ann's read-write connection in her personal space
    bob: str
    ann_refresh: str  # the refresh token of ann_personal
    clock: SetClock


async def _connect(target: str, clock: SetClock) -> tuple[str, str, str, str]:
    async with oauth_database(target) as db:
        accounts = Accounts(db)
        ann = await accounts.require_user("ann@x.test")
        bob = await accounts.require_user("bob@x.test")
        brand = await accounts.require_space("acme")
        store = OAuthStore(db, clock)
        ann_brand, _ = await connect_with_code(
            store,
            "c1",
            code_record(clock, user_id=ann.id, space_id=brand.id, scopes=("mana:read",)),
            client_name="Claude",
        )
        clock.advance(60)
        personal = await accounts.personal_space(ann.id)
        ann_personal, refresh = await connect_with_code(
            store,
            "c2",
            code_record(
                clock,
                client_id="mana-dcr-inspector",
                user_id=ann.id,
                space_id=personal.id,
            ),
            client_name="MCP Inspector",
        )
        await store.touch(ann_personal, clock() + 30)
        bob_personal = await accounts.personal_space(bob.id)
        bob_gid, _ = await connect_with_code(
            store, "c3", code_record(clock, user_id=bob.id, space_id=bob_personal.id)
        )
        return ann_brand, ann_personal, bob_gid, refresh


@pytest.fixture
def world(tmp_path: Path, database_target: str, capsys: pytest.CaptureFixture[str]) -> World:
    flags = Installation(tmp_path / "data", database_target).flags()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*flags, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert run("init")[0] == 0
    for email in ("ann@x.test", "bob@x.test"):
        assert run("users", "create", "--email", email, "--password", "long-enough")[0] == 0
    created = run("spaces", "create", "--as", "ann@x.test", "--type", "brand", "--name", "Acme")
    assert created[0] == 0
    clock = SetClock()
    brand, personal, bob, refresh = asyncio.run(_connect(database_target, clock))
    return World(run, flags, database_target, brand, personal, bob, refresh, clock)


def _rotate(world: World) -> object:
    async def go() -> object:
        async with oauth_database(world.target) as db:
            return await OAuthStore(db, world.clock).rotate_refresh(
                world.ann_refresh, "mana-dcr-inspector"
            )

    return asyncio.run(go())


def test_list_shows_the_users_own_connections_with_client_space_access_and_use(
    world: World,
) -> None:
    code, out, _ = world.run("connections", "list", "--as", "ann@x.test")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "CLIENT", "SPACE", "ACCESS", "CREATED", "LAST", "USED"]
    assert world.ann_personal in lines[1] and world.ann_brand in lines[2]  # newest first
    assert "MCP Inspector (mana-dcr-inspector)" in lines[1]
    assert "mana:read mana:write" in lines[1]
    assert "Claude (https://client.example/metadata.json)" in lines[2]
    assert " acme " in lines[2] and "mana:read " in lines[2] and "mana:write" not in lines[2]
    assert lines[1].rstrip().endswith("UTC") and lines[2].rstrip().endswith("-")  # last use
    assert world.bob not in out

    code, out, _ = world.run("connections", "list", "--as", "ann@x.test", "--json")
    listed = json.loads(out)
    assert code == 0 and [c["id"] for c in listed] == [world.ann_personal, world.ann_brand]
    brand = listed[1]
    assert brand["client_name"] == "Claude" and brand["space"] == "acme"
    assert brand["scopes"] == ["mana:read"] and brand["last_used_at"] is None
    assert brand["created_at"].endswith("Z") and brand["revoked_at"] is None
    assert listed[0]["last_used_at"] is not None


def test_revoke_ends_one_own_connection_and_its_refresh_tokens(world: World) -> None:
    code, out, _ = world.run("connections", "revoke", world.ann_personal, "--as", "ann@x.test")
    assert code == 0 and f"revoked {world.ann_personal}" in out
    assert _rotate(world) is None  # its refresh token is dead

    code, out, _ = world.run("connections", "list", "--as", "ann@x.test", "--json")
    assert [c["id"] for c in json.loads(out)] == [world.ann_brand]
    code, out, _ = world.run("connections", "list", "--as", "ann@x.test", "--all")
    assert "REVOKED" in out.splitlines()[0] and world.ann_personal in out

    code, out, _ = world.run("connections", "revoke", world.ann_personal, "--as", "ann@x.test")
    assert code == 0 and "already revoked" in out


@pytest.mark.parametrize("which", ["bob", "unknown"])
def test_revoking_another_users_or_an_unknown_connection_is_an_error(
    world: World, which: str
) -> None:
    gid = world.bob if which == "bob" else "conn_does_not_exist"
    code, out, err = world.run("connections", "revoke", gid, "--as", "ann@x.test")
    assert code == 1 and out == ""
    assert err == f"mana: error: ann@x.test has no connection {gid!r}\n"
    code, out, _ = world.run("connections", "list", "--as", "bob@x.test", "--json")
    assert [c["id"] for c in json.loads(out)] == [world.bob]  # bob's stays live


def test_revoke_all_ends_every_connection_of_the_user_only(world: World) -> None:
    code, out, _ = world.run("connections", "revoke", "--all", "--as", "ann@x.test")
    assert code == 0 and "2 connection(s) of ann@x.test revoked" in out
    assert world.ann_brand in out and world.ann_personal in out
    code, out, _ = world.run("connections", "list", "--as", "ann@x.test")
    assert code == 0 and out == "no live connections of ann@x.test\n"
    code, out, _ = world.run("connections", "list", "--as", "bob@x.test", "--json")
    assert len(json.loads(out)) == 1


@pytest.mark.parametrize(
    "argv", [["revoke"], ["revoke", "conn_x", "--all"]], ids=["neither", "both"]
)
def test_revoke_needs_exactly_one_id_or_all(world: World, argv: list[str]) -> None:
    code, _, err = world.run("connections", *argv, "--as", "ann@x.test")
    assert code == 1 and "name one connection ID or give --all" in err


def test_global_options_after_the_command_select_the_database(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["connections", "list", "--as", "ann@x.test", "--json", *world.flags])
    out = capsys.readouterr().out
    assert code == 0 and len(json.loads(out)) == 2
