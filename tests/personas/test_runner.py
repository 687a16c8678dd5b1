"""The persona runner against the real HTTP app (in-process): actions, ratings, spaces, due logic,
timeouts and failures, and the rule that missions/proposals are never offered to a persona."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent_loop import (
    FunctionTool,
    FunctionTools,
    LLMClient,
    LLMRequest,
    LLMResponse,
    ScriptedClient,
    ToolCall,
)
from personas.llm import scripted_factory
from personas.passwords import PersonaSecret
from personas.runner import (
    NoCallTools,
    PersonaRunner,
    TickTools,
    parse_ratings,
    persona_tools,
    plan_tick,
)
from personas.seed import Seeder
from personas.store import FAILED_RATING, PersonaRow, PersonaStore, action_id
from tests.personas.conftest import small_catalog
from tests.personas.helpers import dump
from tests.personas.inprocess import serving
from tests.personas.world import EXAMPLES, TRIO, World, script
from tool_registry.clock import FixedClock
from tool_registry.context import Backends
from tool_registry.pipeline import Pipeline, input_hash
from tool_registry.space_types import SpaceTypeCatalog
from tool_registry.store import Accounts, Database, open_database


def by_email(scripts: dict[str, list[dict[str, Any]]]) -> Any:
    def factory(persona: PersonaRow) -> LLMClient | None:
        turns = scripts.get(persona.email)
        return None if turns is None else ScriptedClient(turns)

    return factory


async def records_in(db: Database, space_id: str) -> list[dict[str, Any]]:
    rows = await db.read(
        lambda c: c.execute(
            "SELECT collection, author_id, data FROM records WHERE space_id = ? ORDER BY created_at",
            (space_id,),
        ).fetchall()
    )
    return [dict(r) for r in rows]


async def test_one_tick_per_persona_lands_in_the_right_spaces(world: World) -> None:
    runner = world.runner(scripted_factory(EXAMPLES))
    results = await runner.run_once()
    assert {r.email: r.status for r in results} == dict.fromkeys(TRIO, "ok")
    spaces = {r.email: r.space for r in results}
    assert spaces == {
        "maya.chen@mana.test": "maya-chen-personal",
        "jonas.weber@mana.test": "jonas-weber-personal",
        "lena.weber@mana.test": "weber-family",
    }
    family = await world.accounts.require_space("weber-family")
    lena = await world.persona("lena.weber@mana.test")
    landed = await records_in(world.db, family.id)
    assert sorted(r["collection"] for r in landed) == [
        "calendar_events",
        "calendar_events",
        "contacts",
        "notes",
    ]
    assert {r["author_id"] for r in landed} == {lena.user_id}
    jonas = await world.persona("jonas.weber@mana.test")
    personal = await world.accounts.personal_space(jonas.user_id)
    assert sorted(r["collection"] for r in await records_in(world.db, personal.id)) == [
        "notes",
        "todos",
        "todos",
    ]
    assert await records_in(world.db, family.id) == landed  # nothing of Jonas's went there


async def test_action_rows_match_the_calls(world: World) -> None:
    runner = world.runner(scripted_factory(EXAMPLES))
    await runner.run_once(["maya.chen@mana.test"])
    maya = await world.persona("maya.chen@mana.test")
    actions = await world.store.tick_actions("2026-11-23", maya.user_id)
    calls = [c for turn in script("persona-maya-chen.json") for c in turn["tool_calls"]]
    assert [a.tool for a in actions] == [c["name"] for c in calls]
    assert [a.input_hash for a in actions] == [input_hash(c["arguments"]) for c in calls]
    assert [a.call_index for a in actions] == list(range(len(calls)))
    assert [a.result for a in actions] == ["ok", "ok", "ok", "ok", "ok", "error", "ok"]
    failed = actions[5]
    assert failed.tool == "habits.log" and failed.error_message
    personal = await world.accounts.personal_space(maya.user_id)
    assert {a.space_id for a in actions} == {personal.id}
    ids = await world.db.read(
        lambda c: c.execute(
            "SELECT id FROM persona_actions WHERE persona_id = ? ORDER BY call_index",
            (maya.user_id,),
        ).fetchall()
    )
    assert [r["id"] for r in ids] == [
        action_id("2026-11-23", maya.email, i) for i in range(len(calls))
    ]
    # the server saw the same calls: its audit rows carry the same input hashes
    await world.pipeline.audit.flush()
    audit = await world.db.read(
        lambda c: c.execute(
            "SELECT tool, input_hash FROM audit_log WHERE user_id = ? ORDER BY id",
            (maya.user_id,),
        ).fetchall()
    )
    assert sorted((r["tool"], r["input_hash"]) for r in audit) == sorted(
        (a.tool, a.input_hash) for a in actions
    )


async def test_feedback_rows_match_the_ratings(world: World) -> None:
    runner = world.runner(scripted_factory(EXAMPLES))
    results = {r.email: r for r in await runner.run_once()}
    expected = {
        "maya.chen@mana.test": {"habits": 3, "todo": 5, "mood": 4},
        "jonas.weber@mana.test": {"todo": 4, "notes": 3},
        "lena.weber@mana.test": {"calendar": 4, "notes": 5, "contacts": 4},
    }
    for email, ratings in expected.items():
        persona = await world.persona(email)
        rows = await world.store.feedback(persona.user_id, "2026-11-23")
        assert {f.module: f.rating for f in rows} == ratings
        assert {m: r for m, (r, _) in results[email].ratings.items()} == ratings
    lena = await world.persona("lena.weber@mana.test")
    notes = {f.module: f.notes for f in await world.store.feedback(lena.user_id)}
    assert notes["notes"] == "Lovely and quick for lists."


async def test_a_second_run_the_same_day_does_nothing(world: World) -> None:
    runner = world.runner(scripted_factory(EXAMPLES))
    await runner.run_once()
    before = await dump(world.db)
    world.clock.advance(hours=5)
    again = await runner.run_once()
    assert {r.status for r in again} == {"not-due"}
    assert all("already active today" in r.detail for r in again)
    after = await dump(world.db)
    for table in ("persona_actions", "persona_feedback", "persona_ticks", "records", "personas"):
        assert after[table] == before[table], table
    world.clock.advance(days=1)
    assert all(d.due for _, d in await runner.due())


async def test_rerunning_a_tick_rewrites_the_same_rows(world: World) -> None:
    runner = world.runner(scripted_factory(EXAMPLES))
    jonas = await world.persona("jonas.weber@mana.test")
    await runner.run_tick(jonas, "2026-11-23")
    first = await dump(world.db)
    await runner.run_tick(jonas, "2026-11-23")
    second = await dump(world.db)
    assert [r[0] for r in second["persona_actions"]] == [r[0] for r in first["persona_actions"]]
    assert len(second["persona_feedback"]) == len(first["persona_feedback"]) == 2
    assert len(second["persona_ticks"]) == 1
    # the server did not repeat the writes: its records and idempotency keys are unchanged (two
    # todos and a note), and the re-run's calls all succeeded (replayed)
    assert second["records"] == first["records"]
    assert len(first["records"]) == 3
    assert second["idempotency_keys"] == first["idempotency_keys"]
    assert len(first["idempotency_keys"]) == 3
    actions = await world.store.tick_actions("2026-11-23", jonas.user_id)
    assert [a.result for a in actions] == ["ok"] * 4


async def test_tick_tools_keys_are_deterministic_per_tick_and_content() -> None:
    def keys(tick: str, email: str, calls: list[ToolCall]) -> list[str | None]:
        tools = TickTools(None, tick=tick, persona_email=email)  # type: ignore[arg-type]
        return [tools.idempotency_key(c) for c in calls]

    calls = [
        ToolCall("a", "todo.create", {"title": "x", "priority": "low"}),
        ToolCall("b", "todo.create", {"priority": "low", "title": "x"}),  # the same call again
        ToolCall("c", "notes.create", {"title": "x"}),
    ]
    first = keys("2026-11-23", "jonas.weber@mana.test", calls)
    assert all(k is not None and k.startswith("persona:2026-11-23:") for k in first)
    assert first[0] is not None and first[0].endswith(":1")
    assert first[1] is not None and first[1].endswith(":2")
    assert first[0].rsplit(":", 1)[0] == first[1].rsplit(":", 1)[0]
    assert len(set(first)) == 3 and all(len(k or "") <= 200 for k in first)
    # fresh call ids (a real model's), the same content: the same keys
    renamed = [ToolCall(f"toolu_{i}", c.name, c.arguments) for i, c in enumerate(calls)]
    assert keys("2026-11-23", "Jonas.Weber@mana.test", renamed) == first
    assert not set(keys("2026-11-24", "jonas.weber@mana.test", calls)) & set(first)
    assert not set(keys("2026-11-23", "maya.chen@mana.test", calls)) & set(first)


async def test_unparsable_ratings_give_one_failed_rating_row(world: World) -> None:
    turns = script("persona-jonas-weber.json")
    turns[-1] = {"text": "idk, it was fine I guess", "tool_calls": []}
    runner = world.runner(by_email({"jonas.weber@mana.test": turns}))
    (result,) = [r for r in await runner.run_once() if r.email == "jonas.weber@mana.test"]
    assert result.status == "ok"
    jonas = await world.persona("jonas.weber@mana.test")
    rows = await world.store.feedback(jonas.user_id)
    assert [(f.module, f.rating) for f in rows] == [(FAILED_RATING, None)]
    assert rows[0].notes is not None and "not JSON" in rows[0].notes


async def test_missions_and_proposals_are_refused_and_recorded(world: World) -> None:
    turns: list[dict[str, Any]] = [
        {
            "text": "let me get an agent to do my homework",
            "tool_calls": [
                {"name": "missions.create", "arguments": {"objective": "do my homework"}},
                {"name": "proposals.approve", "arguments": {"id": "p_1"}},
                {"name": "todo.create", "arguments": {"title": "fine, do it myself"}},
            ],
        },
        {"text": "ugh", "tool_calls": []},
        {"text": '{"ratings": [{"module": "todo", "rating": 2}]}', "tool_calls": []},
    ]
    client = ScriptedClient(turns)
    runner = world.runner(lambda p: client if p.email == "jonas.weber@mana.test" else None)
    jonas = await world.persona("jonas.weber@mana.test")
    result = await runner.run_tick(jonas, "2026-11-23")
    assert result.status == "ok" and result.calls == 3 and result.errors == 2
    offered = {t.name for t in client.requests[0].tools}
    assert offered and not {n for n in offered if n.split(".")[0] in ("missions", "proposals")}
    actions = await world.store.tick_actions("2026-11-23", jonas.user_id)
    assert [(a.tool, a.result) for a in actions] == [
        ("missions.create", "error"),
        ("proposals.approve", "error"),
        ("todo.create", "ok"),
    ]
    assert "never available to personas" in (actions[0].error_message or "")
    assert {f.module for f in await world.store.feedback(jonas.user_id)} == {"todo"}


async def test_persona_tools_filter_and_refuse_forbidden_modules() -> None:
    async def echo(args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    inner = FunctionTools(
        FunctionTool(name, "x", echo)
        for name in ("missions.create", "proposals.list", "notes.create", "habits.list")
    )
    tools = persona_tools(inner, ["notes", "missions", "proposals"])
    assert [t.name for t in await tools.list_tools()] == ["notes.create"]
    for name in ("missions.create", "proposals.list"):
        outcome = await tools.call(ToolCall("c1", name, {}))
        assert outcome.status == "denied" and outcome.reason == "not-offered"
    off_mix = await tools.call(ToolCall("c2", "habits.list", {}))
    assert off_mix.status == "denied"
    assert (await tools.call(ToolCall("c3", "notes.create", {}))).ok
    rating = NoCallTools(tools)
    assert [t.name for t in await rating.list_tools()] == ["notes.create"]
    assert not (await rating.call(ToolCall("c4", "notes.create", {}))).ok


class SlowClient:
    """A model that never answers in time."""

    model = "slow"

    async def complete(self, request: LLMRequest) -> LLMResponse:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")


async def test_timeout_and_failure_are_recorded_and_the_others_go_on(world: World) -> None:
    scripted = scripted_factory(EXAMPLES)

    def factory(persona: PersonaRow) -> LLMClient | None:
        if persona.email == "maya.chen@mana.test":
            return SlowClient()
        return scripted(persona)

    # Long enough that a scripted tick never reaches it on a loaded machine or on PostgreSQL;
    # the slow model never answers at all.
    runner = world.runner(factory, tick_timeout=5.0, concurrency=3)
    wrong = PersonaSecret(b"another-secret", "test")
    lena = await world.persona("lena.weber@mana.test")
    # Lena logs in with a password derived from another secret: a login failure.
    original = runner.secret
    runner.secret = wrong
    failed = await runner.run_tick(lena, "2026-11-23")
    runner.secret = original
    assert failed.status == "failed" and "login failed" in failed.detail
    assert "another-secret" not in failed.detail

    results = {r.email: r for r in await runner.run_once()}
    assert results["maya.chen@mana.test"].status == "timeout"
    assert results["jonas.weber@mana.test"].status == "ok"
    assert results["lena.weber@mana.test"].status == "ok"  # retried: it was not marked active
    maya = await world.persona("maya.chen@mana.test")
    assert maya.last_active_at is None
    (tick,) = await world.store.ticks(maya.user_id)
    assert tick["status"] == "timeout" and "timeout" in tick["error"]
    (lena_tick,) = await world.store.ticks(lena.user_id)
    assert lena_tick["status"] == "ok"


async def test_plans_are_deterministic(world: World) -> None:
    types = SpaceTypeCatalog.load()
    lena = await world.persona("lena.weber@mana.test")
    a = await plan_tick(lena, "2026-11-23", world.accounts, types)
    b = await plan_tick(lena, "2026-11-23", world.accounts, types)
    assert a == b
    assert a.space.slug == "weber-family" and a.focus == "calendar"
    assert a.modules == ("calendar", "contacts", "notes")  # journal, mood, todo stay personal
    assert a.companions == ("Jonas Weber",)
    days = [f"2026-11-{d:02d}" for d in range(1, 29)]
    plans = [await plan_tick(lena, d, world.accounts, types) for d in days]
    assert {p.space.type for p in plans} == {"personal", "family"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"ratings": [{"module": "notes", "rating": 4, "notes": "ok"}]}', {"notes": (4, "ok")}),
        (
            'Sure!\n```json\n{"ratings": {"notes": 5, "todo": {"rating": "2"}}}\n```',
            {
                "notes": (5, None),
                "todo": (2, None),
            },
        ),
        ('{"notes": 4.0, "habits": 3}', {"notes": (4, None)}),  # habits not used: ignored
        ('{"ratings": [{"module": "notes", "rating": 9}]}', None),
        ("five stars", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_ratings(text: str | None, expected: dict[str, Any] | None) -> None:
    parsed = parse_ratings(text, {"notes", "todo"})
    if expected is None:
        assert list(parsed) == [FAILED_RATING]
        assert parsed[FAILED_RATING][0] is None
    else:
        assert parsed == expected


def test_rating_notes_never_exceed_limits() -> None:
    parsed = parse_ratings("x" * 5000, {"notes"})
    note = parsed[FAILED_RATING][1]
    assert note is not None and len(note) < 400


# -- the server offers missions tools; a persona never gets them -------------------------------------


def test_forbidden_modules_match_the_missions_rule() -> None:
    from personas.catalog import FORBIDDEN_MODULES
    from policy.agent_policy import AGENT_EXCLUDED_MODULES

    assert FORBIDDEN_MODULES == AGENT_EXCLUDED_MODULES


async def test_server_offers_missions_but_a_persona_tick_never_sees_them(
    tmp_path: Path, raw_catalog: dict[str, Any], secret: PersonaSecret, clock: FixedClock
) -> None:
    from mana_cli.config import Settings
    from mana_cli.runtime import EXTRA_MIGRATIONS, build_runtime_registry, configure_missions

    db = await open_database(tmp_path / "m.db", EXTRA_MIGRATIONS)
    registry = build_runtime_registry({})
    accounts = Accounts(db, clock)
    backends = Backends()
    configure_missions(Settings.load({}, environ={}), backends, db, accounts, clock)
    pipeline = Pipeline(registry, db, accounts=accounts, backends=backends, clock=clock)
    rosa = "rosa.delgado@mana.test"
    await Seeder(db, accounts, secret, clock).seed(small_catalog(raw_catalog, registry, [rosa]))
    store = PersonaStore(db, clock)
    try:
        async with serving(pipeline, tmp_path) as connector:
            token = await connector.login(rosa, secret.password(rosa))
            studio = await accounts.require_space("rosa-delgado-studio")
            async with connector.session(token, studio.id) as client:
                served = {t.name for t in (await client.list_tools()).tools}
            assert {"missions.create", "proposals.list"} <= served  # the server does offer them
            script = ScriptedClient(
                [
                    {
                        "text": "let an agent chase my invoices",
                        "tool_calls": [
                            {"name": "missions.create", "arguments": {"objective": "x"}},
                            {"name": "proposals.list", "arguments": {}},
                            {"name": "notes.create", "arguments": {"title": "Chase invoices"}},
                        ],
                    },
                    {"text": "done", "tool_calls": []},
                    {"text": '{"ratings": {"notes": 4}}', "tool_calls": []},
                ]
            )
            runner = PersonaRunner(
                accounts=accounts,
                store=store,
                space_types=SpaceTypeCatalog.load(),
                secret=secret,
                connector=connector,
                llm=lambda p: script,
                clock=clock,
            )
            persona = await store.persona(rosa)
            assert persona is not None
            result = await runner.run_tick(persona, "2026-11-23")
            assert result.status == "ok", result.summary()
            offered = {t.name for t in script.requests[0].tools}
            assert "notes.create" in offered
            assert not {n for n in offered if n.split(".")[0] in ("missions", "proposals")}
            actions = await store.tick_actions("2026-11-23", persona.user_id)
            assert [(a.tool, a.result) for a in actions] == [
                ("missions.create", "error"),
                ("proposals.list", "error"),
                ("notes.create", "ok"),
            ]
            missions = await db.read(
                lambda c: c.execute("SELECT count(*) FROM missions").fetchone()[0]
            )
            assert missions == 0
    finally:
        await pipeline.aclose()
        await db.close()


async def test_a_shorter_rerun_of_a_tick_leaves_no_stale_rows(world: World) -> None:
    jonas = await world.persona("jonas.weber@mana.test")
    long = world.runner(scripted_factory(EXAMPLES))
    await long.run_tick(jonas, "2026-11-23")
    assert len(await world.store.tick_actions("2026-11-23", jonas.user_id)) == 4
    short = ScriptedClient(
        [
            {"text": "meh", "tool_calls": [{"name": "todo.list", "arguments": {}}]},
            {"text": "bye", "tool_calls": []},
            {"text": "not json", "tool_calls": []},
        ]
    )
    await world.runner(lambda p: short).run_tick(jonas, "2026-11-23")
    actions = await world.store.tick_actions("2026-11-23", jonas.user_id)
    assert [(a.call_index, a.tool) for a in actions] == [(0, "todo.list")]
    feedback = await world.store.feedback(jonas.user_id, "2026-11-23")
    assert [f.module for f in feedback] == [FAILED_RATING]
