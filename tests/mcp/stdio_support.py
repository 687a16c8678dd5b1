"""`mana serve --stdio` on raw pipes, for tests that decide exactly when stdin closes or a
signal arrives. Requests use the 2026-07-28 era (each carries its own `_meta` envelope)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .support import DEMO_EMAIL, REPO, Installation, Where, mana_argv

ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
# `killtest.wait` blocks until `$MANA_KILLTEST_DIR/release` exists (after creating `entered`).
WAIT_TOOLS = {"MANA_EXTRA_TOOLS": "tests.missions.plugin_tools:TOOLS"}


def tools_call(request_id: int, tool: str, args: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": dict(args), "_meta": ENVELOPE},
    }


class RawStdio:
    """The server process and every message it wrote to stdout, by request id."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr
        self.answers: dict[Any, dict[str, Any]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, where: Where, name: str, env: Mapping[str, str] | None = None) -> RawStdio:
        """`mana serve --stdio --as demo` on `where`'s database (SQLite file or PostgreSQL)."""
        installation = Installation.of(where)
        stderr = installation.data_dir / f"{name}.err"
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *mana_argv(installation.data_dir, "serve", "--stdio", "--as", DEMO_EMAIL),
                cwd=REPO,
                env=installation.env(env),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        return cls(proc, stderr)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            message = json.loads(line)
            self.answers[message.get("id")] = message

    async def send(self, message: Mapping[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    async def wait(self, within: float = 60) -> int:
        """The exit code, once stdout was read to its end."""
        code = await asyncio.wait_for(self.proc.wait(), within)
        await asyncio.wait_for(self._reader, 10)
        return code

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


async def wait_for_file(path: Path, within: float = 60) -> None:
    async def poll() -> None:
        while not await asyncio.to_thread(path.exists):  # noqa: ASYNC110 - a cross-process signal
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), within)
