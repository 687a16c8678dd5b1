"""One membership rule for every surface, and no existence oracle: a caller who is not a member
of a space gets the same answer whether the space does not exist or belongs to others (modulo
the reference the caller sent, which is echoed back). The owner/admin rule answers alike too.

Surfaces: the pipeline (every invoker), HTTP (a real server process, both protocol eras), the
CLI (`mana call`, missions, agents, proposals, policy, spaces, `agent run`, `serve --stdio`), the
destructive allowlist, proposals and missions."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from mana_cli.demo import DEMO_EMAIL
from mana_cli.main import main
from mana_cli.runtime import Runtime, open_runtime
from missions.proposals import ProposalService
from missions.view import MISSIONS
from policy.allowlist import DestructiveAllowlist
from tests.mcp.support import (
    MODERN_HEADERS,
    REPO,
    ServerProcess,
    World,
    headers,
    mana_argv,
    modern_tools_list,
    raw_post,
    seeded_world,
    settings_for,
)
from tool_registry.context import CallContext, Invoker
from tool_registry.errors import ManaError
from tool_registry.membership import require_manager

UNKNOWN_SLUG = "no-such-space"
UNKNOWN_ID = "spc_00000000000000000000000000"
FOREIGN_SLUG = "bob-s-team"  # Bob's team space; demo is not a member
HIDDEN = "<ref>"


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, database_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One seeded world per backend for the module's surfaces."""
    with seeded_world(request, database_backend, tmp_path_factory.mktemp("membership")) as seeded:
        yield seeded


def pairs(world: World) -> list[tuple[str, str]]:
    """(unknown, foreign) references, by slug and by id."""
    return [(UNKNOWN_SLUG, FOREIGN_SLUG), (UNKNOWN_ID, world.bob_space_id)]


def masked(value: Any, ref: str) -> Any:
    """`value` with the caller's own reference and per-request ids replaced."""
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    text = text.replace(ref, HIDDEN)
    text = re.sub(r"req_[0-9a-z]{26}", "req_<id>", text)
    return text


def assert_alike(answers: dict[str, Any]) -> None:
    """`answers` maps each reference to the answer it got; all must match once masked."""
    shown = {ref: masked(answer, ref) for ref, answer in answers.items()}
    first = next(iter(shown.values()))
    assert all(s == first for s in shown.values()), shown
    assert "not a member of space" in first or "not-a-member" in first, first


async def refusal(action: Awaitable[Any]) -> dict[str, str]:
    with pytest.raises(ManaError) as info:
        await action
    return {
        "type": type(info.value).__name__,
        "reason": info.value.reason,
        "message": info.value.message,
    }


def run(world: World, body: Callable[[Runtime, str], Awaitable[None]]) -> None:
    async def go() -> None:
        async with open_runtime(settings_for(world.installation)) as rt:
            await body(rt, world.demo_id)

    asyncio.run(go())


# -- pipeline ----------------------------------------------------------------------------------


def test_pipeline_answers_alike_for_every_invoker(world: World) -> None:
    async def body(rt: Runtime, demo: str) -> None:
        invokers: tuple[Invoker, ...] = ("mcp", "mission-runner", "persona-runner", "cli", "user")
        for invoker in invokers:
            for tool, args in (
                ("notes.search", {"query": "x"}),
                ("notes.create", {"title": "x", "body": "y"}),
            ):
                for pair in pairs(world):
                    answers = {}
                    for ref in pair:
                        call = CallContext(user_id=demo, space=ref, invoker=invoker)
                        outcome = await rt.pipeline.invoke(tool, args, call)
                        assert outcome.status == "denied", (invoker, outcome.public())
                        answers[ref] = outcome.public()
                    assert_alike(answers)
            with pytest.raises(ManaError) as missing:
                await rt.pipeline.resolve(CallContext(user_id=demo, space=UNKNOWN_SLUG))
            assert missing.value.message == f"not a member of space {UNKNOWN_SLUG!r}"

    run(world, body)


# -- HTTP ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[ServerProcess]:
    with ServerProcess(world.installation) as proc:
        yield proc


async def _http_answer(server: ServerProcess, token: str, ref: str, era: str) -> dict[str, Any]:
    if era == "2026-07-28":
        resp = await raw_post(
            server.mcp_url, modern_tools_list(), {**headers(token, ref), **MODERN_HEADERS}
        )
    else:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "membership-test", "version": "1"},
            },
        }
        resp = await raw_post(server.mcp_url, init, headers(token, ref))
    kept = ("content-type", "www-authenticate", "mcp-session-id")
    return {
        "status": resp.status_code,
        "headers": {k: resp.headers.get(k) for k in kept},
        "body": resp.json(),
    }


def test_http_answers_alike_with_403(world: World, server: ServerProcess) -> None:
    token = world.token(world.demo_id)

    async def go() -> None:
        for era in ("2026-07-28", "2025-11-25"):
            for pair in pairs(world):
                answers = {ref: await _http_answer(server, token, ref, era) for ref in pair}
                assert all(a["status"] == 403 for a in answers.values()), answers
                assert_alike(answers)

    asyncio.run(go())


# -- CLI ----------------------------------------------------------------------------------------


def _cli(world: World, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    code = main([*world.installation.flags(), *argv])
    out, err = capsys.readouterr()
    return {"code": code, "out": out, "err": err}


CLI_COMMANDS: list[tuple[str, ...]] = [
    ("call", "habits.list", "--as", DEMO_EMAIL),
    ("call", "notes.create", "--as", DEMO_EMAIL, "--args", '{"title": "x", "body": "y"}'),
    ("missions", "list", "--as", DEMO_EMAIL),
    ("agents", "list", "--as", DEMO_EMAIL),
    ("proposals", "list", "--as", DEMO_EMAIL),
    ("proposals", "approve", "prp_00000000000000000000000000", "--as", DEMO_EMAIL),
    ("policy", "show", "--as", DEMO_EMAIL),
    ("policy", "allow", "notes.delete", "--acknowledge", "--as", DEMO_EMAIL),
    ("policy", "revoke", "notes.delete", "--as", DEMO_EMAIL),
    ("policy", "audit", "--as", DEMO_EMAIL),
    ("spaces", "add-member", "--email", DEMO_EMAIL, "--as", DEMO_EMAIL),
    (
        "agent",
        "run",
        "--prompt",
        "hi",
        "--llm",
        f"scripted:{REPO / 'examples' / 'agent-demo.json'}",
        "--as",
        DEMO_EMAIL,
    ),
]


@pytest.mark.parametrize("argv", CLI_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_cli_answers_alike(
    world: World, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    for pair in pairs(world):
        answers = {ref: _cli(world, capsys, *argv, "--space", ref) for ref in pair}
        assert all(a["code"] == 1 for a in answers.values()), answers
        assert_alike(answers)


def test_serve_stdio_refuses_alike(world: World) -> None:
    answers = {}
    for ref in (UNKNOWN_SLUG, FOREIGN_SLUG):
        proc = subprocess.run(
            mana_argv(world.data_dir, "serve", "--stdio", "--as", DEMO_EMAIL, "--space", ref),
            cwd=REPO,
            env=world.installation.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = [line for line in proc.stderr.splitlines() if "not a member" in line]
        assert len(lines) == 1, proc.stderr
        answers[ref] = {
            "code": proc.returncode,
            "line": re.sub(r'"timestamp": ?"[^"]*"', "", lines[0]),
        }
    assert_alike(answers)


# -- services -----------------------------------------------------------------------------------


def test_allowlist_proposals_and_missions_answer_alike(world: World) -> None:
    async def body(rt: Runtime, demo: str) -> None:
        allowlist = DestructiveAllowlist(rt.db, rt.registry, accounts=rt.accounts)
        missions = rt.backends.get(MISSIONS)
        proposals = ProposalService(missions.store, rt.accounts, rt.pipeline)
        actions: list[Callable[[str], Awaitable[Any]]] = [
            lambda ref: allowlist.show(demo, ref),
            lambda ref: allowlist.audit(demo, ref),
            lambda ref: allowlist.allow(demo, ref, ["notes.delete"], acknowledge=True),
            lambda ref: allowlist.revoke(demo, ref, ["notes.delete"]),
            lambda ref: proposals.find(demo, "prp_00000000000000000000000000", ref),
            lambda ref: proposals.approve(demo, "prp_00000000000000000000000000", space=ref),
            lambda ref: missions.access(demo, ref),
            lambda ref: missions.list_agents(user_id=demo, space_id=ref),
            lambda ref: missions.list_missions(user_id=demo, space_id=ref),
            lambda ref: missions.create_agent(user_id=demo, space_id=ref, name="Helper"),
            lambda ref: require_manager(rt.accounts, demo, ref, "do this"),
        ]
        for action in actions:
            for pair in pairs(world):
                assert_alike({ref: await refusal(action(ref)) for ref in pair})

    run(world, body)


def test_owner_admin_rule_answers_alike_everywhere(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Demo is a plain member of Bob's family space: every management action gets the one
    owner/admin answer."""
    family = world.family_id

    async def body(rt: Runtime, demo: str) -> None:
        allowlist = DestructiveAllowlist(rt.db, rt.registry, accounts=rt.accounts)
        missions = rt.backends.get(MISSIONS)
        for action, what in (
            (
                allowlist.allow(demo, family, ["notes.delete"], acknowledge=True),
                "change the destructive allowlist",
            ),
            (missions.create_agent(user_id=demo, space_id=family, name="Helper"), "create agents"),
            (require_manager(rt.accounts, demo, family, "add members"), "add members"),
        ):
            got = await refusal(action)
            assert got["reason"] == "permission-denied"
            assert f"only the space's owner or an admin may {what}" in got["message"]

    run(world, body)
    cli = _cli(
        world,
        capsys,
        "spaces",
        "add-member",
        "--email",
        DEMO_EMAIL,
        "--as",
        DEMO_EMAIL,
        "--space",
        family,
    )
    assert cli["code"] == 1
    assert cli["err"] == "mana: error: only the space's owner or an admin may add members\n"


def test_unknown_reference_is_never_resolved_in_the_message(world: World) -> None:
    """A foreign space named by id is refused without its slug or name showing up."""

    async def body(rt: Runtime, demo: str) -> None:
        outcome = await rt.pipeline.invoke(
            "habits.list", {}, CallContext(user_id=demo, space=world.bob_space_id)
        )
        text = json.dumps(outcome.public())
        assert FOREIGN_SLUG not in text and "Bob's team" not in text
        assert world.bob_space_id in text

    run(world, body)
