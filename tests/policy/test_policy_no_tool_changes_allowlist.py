"""No registered tool can change a space's destructive allowlist, its destructive mode or their
audit trail.

Dynamic: every registered tool is called through the pipeline (gate off, so every handler runs)
with arguments generated from its input schema, in a personal and a team space, with every
record id of the space tried for id fields; the policy tables must not change.
Static: outside `tool_registry/store/allowlist.py` (and the schema migration) no source file
writes them, and only `policy/allowlist.py` calls that store's writing functions.
"""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from policy.settings import PolicySettings
from tests.policy.policy_helpers import T0, PolicyKit, policy_kit
from tool_registry.registry import AnySpec
from tool_registry.store import Space, User

REPO = Path(__file__).resolve().parents[2]
POLICY_TABLES = ("space_destructive_allowlist", "space_destructive_mode", "space_policy_audit")
PATTERN_SAMPLES = ("#4f46e5", "kit@kit.test", "+1 555 0100", "abc123", "2026-03-01", "x")


class ArgGenerator:
    """Plausible JSON arguments from a tool's input JSON Schema."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.defs: dict[str, Any] = schema.get("$defs", {})
        self._times = itertools.count()

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.defs[node["$ref"].rsplit("/", 1)[-1]]
        if "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            node = self.resolve(options[0]) if options else {"type": "null"}
        if "allOf" in node and len(node["allOf"]) == 1:
            node = self.resolve(node["allOf"][0])
        return node

    def value(self, node: dict[str, Any], name: str, record_id: str) -> Any:
        node = self.resolve(node)
        if "const" in node:
            return node["const"]
        if "enum" in node:
            return node["enum"][0]
        kind = node.get("type")
        if kind == "array":
            count = max(1, node.get("minItems", 1))
            return [self.value(node.get("items", {}), name, record_id) for _ in range(count)]
        if kind == "object":
            return self.object(node, record_id, include_optional=True)
        if kind == "boolean":
            return True
        if kind in ("integer", "number"):
            low = node.get("minimum", node.get("exclusiveMinimum", 0) + 1)
            high = node.get("maximum", low)
            return max(low, min(1, high)) if kind == "integer" else float(low)
        if kind == "string":
            return self.string(node, name, record_id)
        return "plain value"

    def string(self, node: dict[str, Any], name: str, record_id: str) -> str:
        lower = name.lower()
        if lower == "id" or lower.endswith(("id", "ids")):
            return record_id
        fmt = node.get("format")
        step = next(self._times)
        if fmt == "date-time":
            return (T0 + timedelta(hours=step)).isoformat()
        if fmt == "date":
            return (date(2026, 3, 1) + timedelta(days=step)).isoformat()
        pattern = node.get("pattern")
        if pattern:
            for sample in [*node.get("examples", []), *PATTERN_SAMPLES]:
                if isinstance(sample, str) and re.search(pattern, sample):
                    return sample
        text = "Sample text for a tool argument"
        return text[: node.get("maxLength", len(text))].ljust(node.get("minLength", 0), "x")

    def object(
        self, node: dict[str, Any], record_id: str, *, include_optional: bool
    ) -> dict[str, Any]:
        node = self.resolve(node)
        required = set(node.get("required", []))
        return {
            key: self.value(prop, key, record_id)
            for key, prop in node.get("properties", {}).items()
            if include_optional or key in required
        }


def argument_sets(spec: AnySpec, record_ids: list[str]) -> list[dict[str, Any]]:
    schema = spec.input_schema()
    sets = []
    for record_id in ["no-such-record", *record_ids]:
        for optional in (False, True):
            sets.append(ArgGenerator(schema).object(schema, record_id, include_optional=optional))
    unique: dict[str, dict[str, Any]] = {repr(s): s for s in sets}
    return list(unique.values())


async def _record_ids(pk: PolicyKit, space: Space) -> list[str]:
    rows = await pk.kit.db.read(
        lambda c: c.execute("SELECT id FROM records WHERE space_id = ?", (space.id,)).fetchall()
    )
    return [r["id"] for r in rows]


async def _run_every_tool(
    pk: PolicyKit, user: User, space: Space, valid: set[str]
) -> dict[str, int]:
    statuses: dict[str, int] = {}
    # twice: the first round creates records whose ids the second round uses
    for _ in range(2):
        ids = await _record_ids(pk, space)
        for spec in pk.kit.registry:
            for args in argument_sets(spec, ids):
                outcome = await pk.kit.call_as(user, space, spec.name, args)
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
                if outcome.status != "invalid-input":
                    valid.add(spec.name)
    return statuses


async def test_no_registered_tool_changes_the_allowlist(tmp_path: Path) -> None:
    async with policy_kit(tmp_path / "db", PolicySettings(mode="off")) as pk:
        owner = await pk.kit.user("owner@kit.test")
        member = await pk.kit.user("member@kit.test")
        personal = await pk.kit.personal(owner)
        team = await pk.kit.space(owner, "team")
        await pk.kit.add_member(team, member, "admin")
        destructive = list(pk.allowlist.destructive_tools())
        assert destructive, "the bundled registry has destructive tools"
        await pk.allowlist.allow(owner.id, personal.id, destructive[:1], acknowledge=True)
        await pk.allowlist.allow(owner.id, team.id, destructive, acknowledge=True)
        await pk.allowlist.set_mode(owner.id, team.id, "confirm", acknowledge=False)
        before = {t: await pk.table(t) for t in POLICY_TABLES}

        valid: set[str] = set()
        statuses: dict[str, int] = {}
        for user, space in [(owner, personal), (owner, team), (member, team)]:
            for status, n in (await _run_every_tool(pk, user, space, valid)).items():
                statuses[status] = statuses.get(status, 0) + n

        after = {t: await pk.table(t) for t in POLICY_TABLES}
        assert after == before
        # the calls were real: every tool got past input validation at least once, and many
        # ran their handlers successfully (creates, updates, deletes, ...)
        missing = sorted(s.name for s in pk.kit.registry if s.name not in valid)
        assert not missing, f"extend ArgGenerator: no valid arguments generated for {missing}"
        assert statuses.get("ok", 0) >= len(pk.kit.registry)
        deleted = await pk.kit.db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM records WHERE deleted_at IS NOT NULL"
            ).fetchone()[0]
        )
        assert deleted > 0, "destructive handlers ran"


def test_no_source_outside_the_allowlist_service_writes_the_policy_tables() -> None:
    writes = re.compile(
        r"\b(insert\s+(?:or\s+\w+\s+)?into|update|delete\s+from|replace\s+into|drop\s+table|"
        r"alter\s+table)\s+[\"'`]?(space_destructive_allowlist|space_destructive_mode|space_policy_audit)\b",
        re.IGNORECASE,
    )
    # The SQL lives in the store module; the allowlist service is its only caller that writes.
    store = REPO / "tool_registry" / "store" / "allowlist.py"
    allowed = {store, REPO / "tool_registry" / "store" / "migrations.py"}
    service = REPO / "policy" / "allowlist.py"
    store_writes = re.compile(
        r"\b(add_tools|remove_tools|log_changes|log_mode_change|store_destructive_mode)\b"
    )
    offenders = []
    for path in REPO.rglob("*.py"):
        parts = path.relative_to(REPO).parts
        if parts[0] in (".venv", "tests", "build") or path in allowed:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if writes.search(text) or (path != service and store_writes.search(text)):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
    assert writes.search(store.read_text())
    assert store_writes.search(service.read_text())


def test_the_policy_read_tool_is_read_only() -> None:
    from tool_registry.modules import build_registry

    spec = build_registry().get("spaces.getPolicy")
    assert spec is not None and spec.policy_hint == "read" and spec.read_only
