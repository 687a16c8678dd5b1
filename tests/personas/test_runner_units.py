"""Runner pieces without a server: login over HTTP (respx), script loading, concurrency,
the rating turn's failure, and the long-running mode."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import respx

from agent_loop import LLMClient, LLMRequest, LLMResponse, ScriptedClient
from personas.llm import llm_factory, script_names, scripted_factory
from personas.runner import HttpConnector, TickFailed, TickResult, auth_url
from personas.store import FAILED_RATING, PersonaRow
from tests.personas.world import EXAMPLES, World
from tool_registry.errors import ValidationFailed

URL = "http://127.0.0.1:3999/mcp"


def row(email: str) -> PersonaRow:
    return PersonaRow(
        user_id="usr_x",
        email=email,
        name="X",
        archetype="solo-dev",
        system_prompt="x",
        module_mix={"notes": 1.0},
        cadence="daily",
        last_active_at=None,
        created_at="t",
        updated_at="t",
    )


# -- login ------------------------------------------------------------------------------------------


@respx.mock
async def test_login_posts_email_and_password_and_returns_the_token() -> None:
    route = respx.post("http://127.0.0.1:3999/auth/token").mock(
        return_value=httpx.Response(200, json={"access_token": "jwt-1", "token_type": "Bearer"})
    )
    token = await HttpConnector(URL).login("maya.chen@mana.test", "pw-123456789")
    assert token == "jwt-1"
    sent = json.loads(route.calls.last.request.content)
    assert sent == {"email": "maya.chen@mana.test", "password": "pw-123456789"}


@respx.mock
async def test_login_failure_is_clear_and_leaks_no_password() -> None:
    respx.post("http://127.0.0.1:3999/auth/token").mock(
        return_value=httpx.Response(
            401, json={"error": "invalid_grant", "message": "email or password is wrong"}
        )
    )
    with pytest.raises(TickFailed) as info:
        await HttpConnector(URL).login("maya.chen@mana.test", "pw-secret-123")
    assert "401 invalid_grant: email or password is wrong" in info.value.message
    assert "pw-secret-123" not in info.value.message


@respx.mock
async def test_login_without_a_token_or_server() -> None:
    respx.post("http://127.0.0.1:3999/auth/token").mock(return_value=httpx.Response(200, json={}))
    with pytest.raises(TickFailed, match="without an access_token"):
        await HttpConnector(URL).login("a@mana.test", "pw")
    respx.post("http://127.0.0.1:3999/auth/token").mock(side_effect=httpx.ConnectError("no"))
    with pytest.raises(TickFailed, match=r"cannot reach http://127\.0\.0\.1:3999/auth/token"):
        await HttpConnector(URL).login("a@mana.test", "pw")


def test_auth_url() -> None:
    assert auth_url("http://127.0.0.1:3069/mcp") == "http://127.0.0.1:3069/auth/token"
    assert auth_url("https://mana.example/x/mcp") == "https://mana.example/auth/token"
    with pytest.raises(TickFailed):
        auth_url("127.0.0.1:3069/mcp")


# -- scripts ----------------------------------------------------------------------------------------


def test_script_names() -> None:
    assert script_names("maya.chen@mana.test")[0] == "persona-maya-chen.json"


def test_scripted_directory_mapping_and_single_script(tmp_path: Path) -> None:
    from_dir = scripted_factory(EXAMPLES)
    assert isinstance(from_dir(row("maya.chen@mana.test")), ScriptedClient)
    assert from_dir(row("nobody@mana.test")) is None

    mapping = scripted_factory(EXAMPLES / "persona-scripts.json")
    assert isinstance(mapping(row("lena.weber@mana.test")), ScriptedClient)
    assert mapping(row("rosa.delgado@mana.test")) is None

    single = tmp_path / "one.json"
    single.write_text(json.dumps([{"text": "hi", "tool_calls": []}]), encoding="utf-8")
    everyone = scripted_factory(single)
    assert isinstance(everyone(row("anyone@mana.test")), ScriptedClient)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a@mana.test": [{"txt": "typo"}]}), encoding="utf-8")
    with pytest.raises(ValidationFailed, match=r"turn 0"):
        scripted_factory(bad)
    with pytest.raises(ValidationFailed, match="no such file"):
        scripted_factory(tmp_path / "missing.json")


async def test_llm_spec() -> None:
    with pytest.raises(ValidationFailed, match="'anthropic' or 'scripted:PATH'"):
        llm_factory("gpt", {})
    with pytest.raises(ValidationFailed, match="ANTHROPIC_API_KEY"):
        llm_factory("anthropic", {})
    choice = llm_factory("anthropic", {"ANTHROPIC_API_KEY": "sk-test", "MANA_MODEL": "m"})
    assert choice.model == "m" and choice.factory(row("a@mana.test")) is not None
    await choice.aclose()
    scripted = llm_factory(f"scripted:{EXAMPLES}", {})
    assert scripted.model is None and scripted.closer is None


# -- with the in-process server ---------------------------------------------------------------------


class Counting:
    """A model that answers at once without tool calls, counting how many run concurrently."""

    active = 0
    peak = 0

    def __init__(self) -> None:
        self.model = "counting"

    async def complete(self, request: LLMRequest) -> LLMResponse:
        Counting.active += 1
        Counting.peak = max(Counting.peak, Counting.active)
        await asyncio.sleep(0.05)
        Counting.active -= 1
        return LLMResponse(text="nothing to do today")


async def test_concurrency_is_bounded(world: World) -> None:
    Counting.active = Counting.peak = 0
    runner = world.runner(lambda p: Counting(), concurrency=1)
    results = await runner.run_once()
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert Counting.peak == 1
    assert all(r.calls == 0 and r.ratings == {} for r in results)  # nothing used: no rating turn


async def test_a_missing_rating_turn_gives_a_failed_rating(world: World) -> None:
    turns = json.loads((EXAMPLES / "persona-jonas-weber.json").read_text(encoding="utf-8"))[:-1]

    def factory(p: PersonaRow) -> LLMClient | None:
        return ScriptedClient(turns) if p.email == "jonas.weber@mana.test" else None

    runner = world.runner(factory)
    (result,) = [r for r in await runner.run_once() if r.status != "skipped"]
    assert result.status == "ok"
    rating, note = result.ratings[FAILED_RATING]
    assert rating is None and note is not None and "failed to answer the rating turn" in note


async def test_run_forever_runs_passes_until_cancelled(world: World) -> None:
    passes: list[list[TickResult]] = []
    first = asyncio.Event()

    def on_pass(results: list[TickResult]) -> None:
        passes.append(results)
        first.set()

    runner = world.runner(lambda p: Counting())
    task = asyncio.create_task(runner.run_forever(on_pass=on_pass))
    await asyncio.wait_for(first.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [r.status for r in passes[0]] == ["ok", "ok", "ok"]
