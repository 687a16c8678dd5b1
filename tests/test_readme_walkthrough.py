"""What a newcomer copies from the README and from `make run` works as written: the marked shell
walk-throughs run top to bottom on a fresh data directory, the Python script `make run` prints
runs against the live server, the Inspector command names the version that works on the Node
the README names, `make run PORT=...` changes the port, and every shipped persona script runs."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mana_cli.commands.run import INSPECTOR_VERSION, SNIPPET_END, SNIPPET_START, ready_text
from mana_cli.config import Settings
from tests.mcp.support import REPO, Installation, ServerProcess, free_port, mana_argv
from tool_registry.store.postgres import is_postgres_url

README = REPO / "README.md"
EXAMPLES = REPO / "examples"
MARKER = "<!-- walkthrough -->"
# `mana tools export` (re)writes catalogs/tools.json; here it writes a scratch copy instead, so
# the test never changes the repository.
EXPORT = "mana tools export"


def walkthrough_blocks(text: str) -> list[list[str]]:
    """The shell blocks marked `<!-- walkthrough -->`, each as its logical command lines
    (backslash continuations joined; blank and comment-only lines dropped)."""
    blocks = []
    for match in re.finditer(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.DOTALL):
        commands: list[str] = []
        pending = ""
        for raw in match.group(1).splitlines():
            line = pending + raw
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
        blocks.append(commands)
    return blocks


def section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MANA_", "ANTHROPIC_"))}
    env["MANA_DATA_DIR"] = str(data_dir)
    return env


def test_the_cli_walkthrough_runs_top_to_bottom_as_written(
    tmp_path: Path, database_target: str
) -> None:
    """As written, with `MANA_DATA_DIR` set; on the PostgreSQL leg `MANA_DATABASE_URL` too, as
    the README's scaling-out section tells an operator to."""
    text = README.read_text(encoding="utf-8")
    assert MARKER in section(text, "Using the CLI")
    blocks = walkthrough_blocks(text)
    assert len(blocks) >= 2 and all(blocks)
    data_dir = tmp_path / "data"
    env = clean_env(data_dir)
    if is_postgres_url(database_target):
        env["MANA_DATABASE_URL"] = database_target
    setup: list[str] = []  # `source`/`export` lines stay in effect for the later commands
    outputs: dict[str, str] = {}
    for command in (c for block in blocks for c in block):
        run = command
        if command.split("#", 1)[0].strip() == EXPORT:
            run = f"{EXPORT} --output {shlex.quote(str(tmp_path / 'tools.json'))}"
        script = "\n".join(["set -euo pipefail", *setup, run])
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, (
            f"README command failed ({done.returncode}): {command}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        if command.startswith(("source ", "export ")):
            setup.append(command)
        outputs[command] = done.stdout
    assert (data_dir / "mana.db").is_file() != is_postgres_url(database_target)
    brand = next(out for cmd, out in outputs.items() if "--space demo-studio" in cmd)
    assert json.loads(brand)["result"]["images"][0]["id"] == "ref_demo_brand_half"
    assert json.loads((tmp_path / "tools.json").read_text())["tools"]


class _Lines:
    """Lines of a pipe, read on a thread so the test can wait with a timeout."""

    def __init__(self, stream: object) -> None:
        self.items: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.items.put(line)
        self.items.put(None)

    def until(self, prefix: str, timeout: float = 120.0) -> list[str]:
        seen: list[str] = []
        while True:
            line = self.items.get(timeout=timeout)
            if line is None:
                raise AssertionError("output ended early:\n" + "".join(seen))
            seen.append(line)
            if line.startswith(prefix):
                return seen


def test_make_run_prints_commands_and_a_python_script_that_work(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path / "data")
    proc = subprocess.Popen(
        mana_argv(tmp_path / "data", "run", "--port", str(port)),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        printed = "".join(_Lines(proc.stdout).until("Serving;"))
        export = next(line for line in printed.splitlines() if "export MANA_TOKEN=" in line)
        token = shlex.split(export.strip())[1].split("=", 1)[1]
        script = printed.split(SNIPPET_START + "\n", 1)[1].split("\n" + SNIPPET_END, 1)[0]
        (tmp_path / "mana_try.py").write_text(script + "\n", encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(tmp_path / "mana_try.py")],
            cwd=tmp_path,
            env={**env, "MANA_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "ref_demo_brand_half" in done.stdout
        inspector = [line for line in printed.splitlines() if line.lstrip().startswith("npx ")]
        pinned = f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION} --cli"
        assert len(inspector) == 2 and all(pinned in line for line in inspector)
        assert f"127.0.0.1:{port}/mcp" in inspector[0] and "make run PORT=" in printed
        # a client that signs in by itself is pointed at the same endpoint and the demo user
        sign_in = printed.split("Or let a client sign in by itself", 1)[1]
        assert f"  http://127.0.0.1:{port}/mcp\n" in sign_in and "demo@mana.test" in sign_in
        assert "mana connections list --as demo@mana.test" in sign_in
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_inspector_version_is_pinned_everywhere() -> None:
    """The README, `make run` and the smoke script name one Inspector release; an unpinned
    `npx @modelcontextprotocol/inspector` picks 0.15 on Node < 22.19, which lacks --header."""
    smoke = (REPO / "scripts" / "inspector-smoke.sh").read_text(encoding="utf-8")
    assert f'VERSION="${{INSPECTOR_VERSION:-{INSPECTOR_VERSION}}}"' in smoke
    readme = README.read_text(encoding="utf-8")
    uses = re.findall(r"@modelcontextprotocol/inspector(@[\d.]+)?\s+--cli", readme)
    assert uses and all(u == f"@{INSPECTOR_VERSION}" for u in uses)


def test_make_run_takes_a_port() -> None:
    done = subprocess.run(
        ["make", "-n", "run", "PORT=8123"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "mana run --port 8123" in done.stdout
    assert "PORT=8080" in section(README.read_text(encoding="utf-8"), "Quick start (two commands)")


def _persona_scripts() -> dict[str, str]:
    mapping = json.loads((EXAMPLES / "persona-scripts.json").read_text(encoding="utf-8"))
    return {k: v for k, v in mapping.items() if not k.startswith("$")}


def test_the_script_map_names_every_shipped_persona_script() -> None:
    shipped = {p.name for p in EXAMPLES.glob("persona-*.json")} - {"persona-scripts.json"}
    assert set(_persona_scripts().values()) == shipped


def _run_every_persona_script(installation: Installation, llm: str) -> None:
    """`mana init`, `personas seed`, then one `personas run --once` tick of every shipped
    persona against a `mana serve --http` on the installation: each tick succeeds."""
    data_dir = installation.data_dir
    env = installation.env()
    for argv in (["init"], ["personas", "seed"]):
        subprocess.run(mana_argv(data_dir, *argv), cwd=REPO, env=env, check=True, timeout=120)
    server = ServerProcess(installation)
    try:
        server.wait_ready()
        done = subprocess.run(
            mana_argv(
                data_dir, "personas", "run", "--once", "--llm", llm, "--mcp-url", server.mcp_url
            ),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        assert server.stop() == 0
    assert done.returncode == 0, done.stdout + done.stderr
    for email in _persona_scripts():
        line = next(x for x in done.stdout.splitlines() if x.startswith(f"{email}:"))
        assert line.startswith(f"{email}: ok tick"), done.stdout
    assert "3 tick(s) run, 0 failed" in done.stdout


def test_every_shipped_persona_script_succeeds(tmp_path: Path, database_target: str) -> None:
    """The scripts directory (`scripted:examples`), on both backends."""
    _run_every_persona_script(Installation(tmp_path / "data", database_target), "scripted:examples")


def test_the_persona_script_map_names_the_scripts_to_run(tmp_path: Path) -> None:
    """The same run through the map file: how a `--llm` spec is resolved, not about storage, so
    on the embedded default only."""
    _run_every_persona_script(
        Installation.of(tmp_path / "data"), "scripted:examples/persona-scripts.json"
    )


def readme_mana_commands(text: str) -> list[list[str]]:
    """Every `mana ...` command in the README's bash blocks (reference blocks included) as its
    arguments, with `[--optional]` groups, `VAR=value` and `$(` prefixes, a trailing `&` or `)`
    and comments removed."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in walkthrough_blocks(f"{MARKER}\n```bash\n{block}```")[0]:
            line = re.sub(r"\[[^\]]*\]", "", line)
            words = shlex.split(line, comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):
                head = words.pop(0)
                if "$(" in head:  # TOKEN=$(mana ...): the command starts inside
                    words.insert(0, head.split("$(", 1)[1])
                    break
            while words and words[-1] in ("&", ")"):
                words.pop()
            if words and words[-1].endswith(")"):
                words[-1] = words[-1][:-1]
            if words and words[0] == "mana":
                found.append(words[1:])
    return found


def test_every_readme_mana_command_parses() -> None:
    """Reference blocks (with placeholders such as MISSION_ID) are not run, but every flag they
    show must exist: each command is parsed by the real argument parser."""
    from mana_cli.main import build_parser

    commands = readme_mana_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 30
    for argv in commands:
        try:
            build_parser(argv).parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"README command does not parse ({exc.code}): mana {shlex.join(argv)}")


def test_make_run_names_the_sign_in_only_when_it_is_the_authorization_server() -> None:
    """With an external auth server (MANA_JWKS_URL) this server signs no one in."""
    own = ready_text(Settings(), "t0ken")
    external = ready_text(Settings(jwks_url="https://auth.example/jwks.json"), "t0ken")
    assert "sign in by itself" in own and "mana connections" in own
    assert "sign in by itself" not in external and "mana connections" not in external
