"""Every SQL statement lives behind the store layer, so a second SQL dialect (PostgreSQL) is a
matter of the store modules only.

Outside the store modules no source file holds an SQL statement (a string literal that starts
like one) or calls a database cursor (`execute`, `executemany`, `executescript` with
arguments). Store modules: `tool_registry/store/`, a package's `store.py` or `store/`, and the
`schema.py` of a component (its migrations). Tests, benchmarks (fixtures seeded straight
through SQLite) and the test support package `tool_registry/testing` may hold SQL of their own.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Trees never scanned: tests, benchmarks and test support may seed and inspect with raw SQL.
EXEMPT_TREES = (("tests",), ("benchmarks",), ("tool_registry", "testing"), ("build",))

# An SQL statement at the start of a string literal. Keywords are upper case (the house style)
# and each needs the shape of a statement, so prose ("Delete a note", "Select due missions")
# and HTTP methods ("DELETE") are not mistaken for SQL.
SQL_START = re.compile(
    r"""^\s*(?:
        SELECT\s
      | INSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\s
      | REPLACE\s+INTO\s
      | UPDATE\s+\w+\s+SET\s
      | DELETE\s+FROM\s
      | CREATE\s+(?:TEMP\s+|TEMPORARY\s+|UNIQUE\s+)?(?:TABLE|INDEX|VIEW|TRIGGER|DATABASE)\s
      | ALTER\s+TABLE\s
      | DROP\s+(?:TABLE|INDEX|VIEW|TRIGGER|DATABASE)\s
      | BEGIN(?:\s+(?:IMMEDIATE|DEFERRED|EXCLUSIVE|TRANSACTION))?\s*;?\s*$
      | (?:COMMIT|ROLLBACK|END)(?:\s+TRANSACTION)?\s*;?\s*$
      | SAVEPOINT\s | RELEASE\s+SAVEPOINT\s | ROLLBACK\s+TO\s
      | WITH\s+(?:RECURSIVE\s+)?\w+(?:\s*\([^)]*\))?\s+AS\s*\(
      | PRAGMA\s
    )""",
    re.VERBOSE,
)
CURSOR_CALLS = frozenset({"execute", "executemany", "executescript"})


def is_store_module(rel: Path) -> bool:
    parts = rel.parts
    return (
        parts[:2] == ("tool_registry", "store")
        or rel.name in ("store.py", "schema.py")
        or "store" in parts[:-1]
    )


def exempt(rel: Path) -> bool:
    parts = rel.parts
    if any(p.startswith(".") or p == "__pycache__" or p.endswith(".egg-info") for p in parts):
        return True
    return any(parts[: len(tree)] == tree for tree in EXEMPT_TREES)


def python_sources() -> Iterator[Path]:
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if not exempt(rel):
            yield rel


def store_for(rel: Path) -> str:
    """Where a statement found in `rel` belongs."""
    package = rel.parts[0] if len(rel.parts) > 1 else None
    if package is not None and package != "tool_registry":
        if (REPO / package / "store").is_dir():
            return f"{package}/store/"
        if (REPO / package / "store.py").is_file():
            return f"{package}/store.py"
        return f"tool_registry/store/ (core tables) or a new {package}/store.py (its own tables)"
    return "a module of tool_registry/store/"


def sql_findings(source: str) -> list[tuple[int, str]]:
    """(line, what) for every SQL statement literal and cursor call in `source`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL_START.match(node.value):
                text = " ".join(node.value.split())
                found.append((node.lineno, f"SQL statement {text[:60]!r}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CURSOR_CALLS
            and (node.args or node.keywords)
        ):
            found.append((node.lineno, f"database call .{node.func.attr}(...)"))
    return sorted(found)


def test_no_sql_outside_the_store_layer() -> None:
    problems = []
    for rel in python_sources():
        if is_store_module(rel):
            continue
        source = (REPO / rel).read_text(encoding="utf-8")
        for line, what in sql_findings(source):
            problems.append(f"{rel}:{line}: {what}: move this statement into {store_for(rel)}")
    assert not problems, "SQL outside the store layer:\n" + "\n".join(problems)


def test_the_store_modules_are_where_the_sql_is() -> None:
    """The scan is not vacuous: it sees the SQL of the store modules it lets through."""
    seen = {
        rel
        for rel in python_sources()
        if is_store_module(rel) and sql_findings((REPO / rel).read_text(encoding="utf-8"))
    }
    for expected in (
        "tool_registry/store/accounts.py",
        "tool_registry/store/idempotency.py",
        "tool_registry/store/allowlist.py",
        "personas/store.py",
        "missions/store/__init__.py",
        "missions/store/scheduling.py",
        "missions/store/proposals.py",
    ):
        assert Path(expected) in seen, expected


def test_the_detector_tells_sql_from_prose() -> None:
    sql = """
conn.execute("SELECT id FROM records WHERE space_id = ?", (space,))
q = "INSERT INTO users (id) VALUES (?)"
u = f"UPDATE missions SET state = ? WHERE id = {x}"
d = "DELETE FROM memberships WHERE space_id = ?"
b = "BEGIN IMMEDIATE"
c = "COMMIT"
t = "CREATE TEMP TABLE IF NOT EXISTS _doomed (id TEXT)"
w = "WITH due AS (SELECT id FROM missions) SELECT * FROM due"
"""
    lines = [line for line, _ in sql_findings(sql)]
    assert lines == [2, 2, 3, 4, 5, 6, 7, 8, 9]
    prose = """
TITLE = "Delete a note (soft delete: it no longer shows up in notes.search)"
HELP = "Select due missions every tick, claim them with leases in the database"
WHAT = "Update habit"
METHODS = ("GET", "POST", "DELETE")
MORE = "with --once: print the summary as JSON"
MADE = "create the data directory and database"
result = await child.execute()
"""
    assert sql_findings(prose) == []


def test_store_modules_by_name() -> None:
    assert is_store_module(Path("tool_registry/store/records.py"))
    assert is_store_module(Path("personas/store.py"))
    assert is_store_module(Path("missions/store/scheduling.py"))
    assert is_store_module(Path("missions/schema.py"))
    assert not is_store_module(Path("missions/scheduler.py"))
    assert not is_store_module(Path("policy/allowlist.py"))
    assert not is_store_module(Path("tool_registry/pipeline.py"))
    assert store_for(Path("missions/proposals.py")) == "missions/store/"
    assert store_for(Path("personas/seed.py")) == "personas/store.py"
    assert store_for(Path("tool_registry/pipeline.py")) == "a module of tool_registry/store/"
