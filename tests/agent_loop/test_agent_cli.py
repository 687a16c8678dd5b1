"""`mana agent run` as a user runs it, offline with the shipped example script."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mana_cli.main import main
from tests.mcp.support import Installation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent-demo.json"
PROMPT = "Look at my habits and add a todo that helps with the first one."

Mana = Callable[..., tuple[int, str, str]]


@pytest.fixture
def mana(tmp_path: Path, database_target: str, capsys: pytest.CaptureFixture[str]) -> Mana:
    """`mana` on this test's database (SQLite file or PostgreSQL URL), after `mana init`."""
    flags = Installation(tmp_path / "data", database_target).flags()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*flags, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert run("init")[0] == 0
    return run


def agent(mana: Mana, *extra: str) -> tuple[int, str, str]:
    return mana(
        "agent",
        "run",
        "--as",
        "demo@mana.test",
        "--prompt",
        PROMPT,
        "--llm",
        f"scripted:{EXAMPLE}",
        *extra,
    )


def test_demo_run_prints_calls_and_the_answer(mana: Mana) -> None:
    assert mana("seed", "demo")[0] == 0
    code, out, err = agent(mana)
    assert code == 0, err
    lines = out.splitlines()
    assert "→ habits.list {}" in lines and '→ todo.list {"status": "open"}' in lines
    assert any(line.strip().startswith("✓ todo.create ok") for line in lines)
    assert "I added the todo" in out
    assert "[assistant-stop · 3 round(s) · 3 tool call(s)" in out
    code, out, _ = mana("call", "todo.list", "--as", "demo@mana.test")
    assert "Buy a 1-litre water bottle for the desk" in out


def test_demo_run_as_json(mana: Mana) -> None:
    assert mana("seed", "demo")[0] == 0
    code, out, _ = agent(mana, "--json", "--space", "demo-user-personal")
    assert code == 0
    result = json.loads(out)
    assert result["stop_reason"] == "assistant-stop" and result["rounds"] == 3
    assert [c["call"]["name"] for c in result["calls"]] == [
        "habits.list",
        "todo.list",
        "todo.create",
    ]
    assert result["usage"] == {
        "input_tokens": 8900,
        "output_tokens": 210,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
    }
    assert result["final_text"].startswith("You track two habits")
    assert "system-reminder" not in out


def test_max_rounds_flag(mana: Mana, capsys: pytest.CaptureFixture[str]) -> None:
    assert mana("seed", "demo")[0] == 0
    code, out, _ = agent(mana, "--json", "--max-rounds", "1")
    assert code == 0 and json.loads(out)["stop_reason"] == "max-rounds"
    with pytest.raises(SystemExit) as exited:
        agent(mana, "--max-rounds", "0")
    assert exited.value.code == 2
    assert "--max-rounds: must be between 1 and 100" in capsys.readouterr().err


def test_wrong_space_and_missing_key_are_clear_errors(
    mana: Mana, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert mana("seed", "demo")[0] == 0
    code, _, err = agent(mana, "--space", "nowhere")
    assert code == 1 and "not a member of space 'nowhere'" in err
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code, _, err = mana("agent", "run", "--as", "demo@mana.test", "--prompt", "hi")
    assert code == 1 and "ANTHROPIC_API_KEY is not set" in err
    code, _, err = mana("agent", "run", "--as", "demo@mana.test", "--prompt", "hi", "--llm", "gpt")
    assert code == 1 and "--llm must be 'anthropic' or 'scripted:PATH'" in err


def test_script_running_out_is_an_llm_error(mana: Mana, tmp_path: Path) -> None:
    assert mana("seed", "demo")[0] == 0
    script = tmp_path / "short.json"
    script.write_text(
        json.dumps([{"text": None, "tool_calls": [{"name": "habits.list", "arguments": {}}]}]),
        encoding="utf-8",
    )
    code, out, err = mana(
        "agent", "run", "--as", "demo@mana.test", "--prompt", "x", "--llm", f"scripted:{script}"
    )
    assert code == 1
    assert "→ habits.list {}" in out and "[llm-error" in out
    assert "the script has 1 turns" in err
