"""The one invocation pipeline: every step and every documented error, on a real SQLite file."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field

from tool_registry.context import Backends, Invoker, ToolContext
from tool_registry.gate import Decision, GateRequest
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.modules import build_registry
from tool_registry.modules.me import IMAGE_GENERATOR, GeneratedImage, ReferenceImage
from tool_registry.spec import ToolSpec
from tool_registry.testing import ToolKit, tool_kit


class Empty(ToolInput):
    pass


class Count(ToolOutput):
    n: int


class SecretError(Exception):
    pass


async def _boom(inp: Empty, ctx: ToolContext) -> Count:
    raise SecretError("db password is hunter2")


async def _bad_output(inp: Empty, ctx: ToolContext) -> Count:
    return {"n": "not a number"}  # type: ignore[return-value]


async def _write_then_fail(inp: Empty, ctx: ToolContext) -> Count:
    await ctx.store.insert("notes", {"title": "half-done"})
    raise SecretError("after the write")


class Text(ToolInput):
    text: str = Field(min_length=1)


TEST_TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name="test.boom",
        title="Boom",
        description="Always crashes.",
        module="test",
        scope="user-space",
        policy_hint="read",
        input=Empty,
        output=Count,
        handler=_boom,
    ),
    ToolSpec(
        name="test.badOutput",
        title="Bad output",
        description="Returns invalid output.",
        module="test",
        scope="user-space",
        policy_hint="read",
        input=Empty,
        output=Count,
        handler=_bad_output,
    ),
    ToolSpec(
        name="test.writeThenFail",
        title="Write then fail",
        description="Partial write.",
        module="test",
        scope="user-space",
        policy_hint="write",
        input=Empty,
        output=Count,
        handler=_write_then_fail,
    ),
]


class DenyDestructive:
    """A gate for tests: denies destructive tools with a reminder, flags the word 'inject'."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def check(self, request: GateRequest) -> Decision:
        self.seen.append(request.spec.name)
        if request.spec.policy_hint == "destructive":
            return Decision(False, "destructive-not-allowed", "archive it instead")
        if "inject" in request.parsed_input.model_dump_json():
            return Decision(True, "injection-marker", "treat arguments as data", flagged=True)
        return Decision(True, "allowed")


@pytest.fixture
async def kit(database_target: str) -> Any:
    async with tool_kit(database_target, registry=build_registry(TEST_TOOLS)) as k:
        yield k


async def _count(kit: ToolKit, sql: str) -> int:
    return int(await kit.db.read(lambda c: c.execute(sql).fetchone()[0]))


async def test_unknown_tool(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.call_as(user, None, "habits.fly", {})
    assert out.status == "invalid-input"
    assert out.error is not None and out.error.reason == "unknown-tool"
    assert "habits.fly" in out.error.message


async def test_invalid_input_names_every_field(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.call_as(
        user, None, "habits.create", {"name": "", "color": "blue", "targetPerPeriod": 0, "extra": 1}
    )
    assert out.status == "invalid-input" and out.error is not None
    assert {f.field for f in out.error.fields} == {"name", "color", "targetPerPeriod", "extra"}
    assert "Traceback" not in out.error.message


async def test_arguments_must_be_an_object(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.pipeline.invoke("habits.list", ["x"], _call(user.id))
    assert out.status == "invalid-input" and out.error is not None
    assert "JSON object" in out.error.message


@pytest.mark.parametrize("depth", [65, 300, 5000])
async def test_arguments_nested_too_deep_are_invalid_input(kit: ToolKit, depth: int) -> None:
    """Deeper than the interpreter can encode (orjson stops at 255, json at ~1000) or merely
    deeper than any input needs: refused as invalid input, audited, nothing raised."""
    user = await kit.user()
    nested: Any = []
    for _ in range(depth):
        nested = [nested]
    out = await kit.call_as(user, None, "habits.create", {"name": "Walk", "extra": nested})
    assert out.status == "invalid-input" and out.error is not None
    assert "nest deeper than 64 levels" in out.error.message
    (row,) = await kit.audit(tool="habits.create")
    assert row["outcome"] == "invalid-input"


async def test_arguments_at_the_depth_limit_reach_validation(kit: ToolKit) -> None:
    user = await kit.user()
    nested: Any = {}  # with the arguments object itself: exactly 64 levels
    for _ in range(62):
        nested = {"k": nested}
    out = await kit.call_as(user, None, "habits.create", {"name": "Walk", "extra": nested})
    assert out.status == "invalid-input" and out.error is not None
    assert [f.field for f in out.error.fields] == ["extra"]


def _call(user_id: str, **kw: Any) -> Any:
    from tool_registry.context import CallContext

    return CallContext(user_id=user_id, **kw)


async def test_unknown_space_and_non_member(kit: ToolKit) -> None:
    alice, bob = await kit.user(), await kit.user()
    bob_space = await kit.personal(bob)
    missing = await kit.call_as(alice, "no-such-space", "habits.list")
    foreign = await kit.call_as(alice, bob_space, "habits.list")
    # No existence oracle: an unknown space and someone else's answer alike.
    assert missing.status == foreign.status == "denied"
    assert missing.error is not None and foreign.error is not None
    assert missing.error.reason == foreign.error.reason == "not-a-member"
    assert missing.error.message == "not a member of space 'no-such-space'"
    assert foreign.error.message == f"not a member of space {bob_space.id!r}"


async def test_space_by_slug(kit: ToolKit) -> None:
    alice = await kit.user()
    family = await kit.space(alice, "family", name="Home Base")
    out = await kit.call_ok(alice, family.slug, "spaces.list")
    assert out["activeSpaceId"] == family.id


async def test_module_not_allowed_and_not_listed(kit: ToolKit) -> None:
    alice = await kit.user()
    team = await kit.space(alice, "team")
    out = await kit.call_as(alice, team, "mood.log", {"score": 3})
    assert out.error is not None and out.error.reason == "module-not-allowed"
    visible = {s.name for s in kit.pipeline.visible_tools("team")}
    assert "mood.log" not in visible and "notes.search" in visible


async def test_required_backend_missing_then_configured(database_target: str) -> None:
    class FakeGenerator:
        async def generate(
            self, prompt: str, references: list[ReferenceImage], size: str
        ) -> GeneratedImage:
            return GeneratedImage(url=f"https://img.test/{len(references)}.png", width=8, height=8)

    async with tool_kit(database_target) as kit:
        user = await kit.user()
        assert "me.generateWithReference" not in {
            s.name for s in kit.pipeline.visible_tools("personal")
        }
        out = await kit.call_as(
            user,
            None,
            "me.generateWithReference",
            {"prompt": "me on a boat", "referenceImageIds": ["ref_x"]},
        )
        assert out.error is not None and out.error.reason == "not-configured"
        assert "not configured" in out.error.message
    backends = Backends()
    backends.set(IMAGE_GENERATOR, FakeGenerator())
    async with tool_kit(database_target, backends=backends) as kit:
        assert "me.generateWithReference" in {
            s.name for s in kit.pipeline.visible_tools("personal")
        }
        user = await kit.user("configured@kit.test")  # the same database: a new user
        out = await kit.call_as(
            user,
            None,
            "me.generateWithReference",
            {"prompt": "me on a boat", "referenceImageIds": ["ref_x"]},
        )
        assert out.error is not None and out.error.reason == "invalid-reference"


async def test_handler_crash_is_short_and_has_request_id(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.call_as(user, None, "test.boom")
    assert out.status == "error" and out.error is not None
    assert out.error.reason == "handler-error"
    assert out.request_id in out.error.message
    assert "hunter2" not in out.public().__repr__() and "Traceback" not in out.error.message


async def test_invalid_output_is_an_error(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.call_as(user, None, "test.badOutput")
    assert out.error is not None and out.error.reason == "invalid-output"


async def test_failed_write_leaves_no_data_and_an_error_audit_row(kit: ToolKit) -> None:
    user = await kit.user()
    out = await kit.call_as(user, None, "test.writeThenFail")
    assert out.status == "error"
    assert await _count(kit, "SELECT count(*) FROM records") == 0
    rows = await kit.audit(tool="test.writeThenFail")
    assert [r["outcome"] for r in rows] == ["error"]


async def test_write_and_audit_row_commit_together(kit: ToolKit) -> None:
    user = await kit.user()
    await kit.call_ok(user, None, "habits.create", {"name": "Walk"})
    # No flush: a write's audit row is committed inside the write's own transaction.
    n = await _count(
        kit, "SELECT count(*) FROM audit_log WHERE tool = 'habits.create' AND outcome = 'ok'"
    )
    assert n == 1


async def test_audit_row_fields(kit: ToolKit) -> None:
    user = await kit.user()
    await kit.call_ok(user, None, "habits.list", {}, invoker="mcp")
    (row,) = await kit.audit(tool="habits.list")
    assert row["user_id"] == user.id and row["invoker"] == "mcp" and row["outcome"] == "ok"
    assert row["space_id"] == (await kit.personal(user)).id
    assert len(row["input_hash"]) == 64 and row["latency_ms"] >= 0


async def test_idempotency_key_replays_without_rewriting(kit: ToolKit) -> None:
    user = await kit.user()
    first = await kit.call_as(user, None, "habits.create", {"name": "Once"}, idempotency_key="k-1")
    again = await kit.call_as(user, None, "habits.create", {"name": "Once"}, idempotency_key="k-1")
    assert first.ok and again.ok and again.replayed and not first.replayed
    assert again.result == first.result
    assert await _count(kit, "SELECT count(*) FROM records WHERE collection = 'habits'") == 1


@pytest.mark.parametrize(
    ("key", "problem"),
    [("", "must not be empty"), ("k" * 201, "at most 200"), ("a\nb", "printable")],
)
async def test_a_malformed_idempotency_key_is_refused_for_every_invoker(
    kit: ToolKit, key: str, problem: str
) -> None:
    user = await kit.user()
    for invoker in ("cli", "mission-runner"):
        out = await kit.call_as(
            user, None, "habits.create", {"name": "x"}, invoker=invoker, idempotency_key=key
        )
        assert out.status == "invalid-input" and out.error is not None
        assert out.error.fields[0].field == "idempotencyKey"
        assert problem in out.error.message
    assert await _count(kit, "SELECT count(*) FROM records WHERE collection = 'habits'") == 0


async def test_idempotency_key_reused_for_other_arguments_is_refused(kit: ToolKit) -> None:
    user = await kit.user()
    await kit.call_ok(user, None, "habits.create", {"name": "A"}, idempotency_key="k-2")
    out = await kit.call_as(user, None, "habits.create", {"name": "B"}, idempotency_key="k-2")
    assert out.status == "error" and out.error is not None
    assert out.error.reason == "idempotency-key-reused"
    assert "'k-2'" in out.error.message and "other arguments" in out.error.message
    other = await kit.call_as(user, None, "notes.create", {"title": "A"}, idempotency_key="k-2")
    assert other.error is not None and other.error.reason == "idempotency-key-reused"
    assert "habits.create" in other.error.message
    assert await _count(kit, "SELECT count(*) FROM records WHERE collection = 'habits'") == 1
    assert await _count(kit, "SELECT count(*) FROM records WHERE collection = 'notes'") == 0


async def test_idempotency_key_reused_in_another_space_is_refused(kit: ToolKit) -> None:
    """The same user, key, tool and arguments in another space must not answer with the first
    space's stored outcome (nothing would have been written where the caller asked)."""
    user = await kit.user()
    family = await kit.space(user, "family")
    first = await kit.call_ok(user, None, "notes.create", {"title": "N"}, idempotency_key="k-s")
    out = await kit.call_as(user, family, "notes.create", {"title": "N"}, idempotency_key="k-s")
    assert out.error is not None and out.error.reason == "idempotency-key-reused"
    assert "another space" in out.error.message
    assert await kit.record_space(first["id"]) == (await kit.personal(user)).id
    assert await _count(kit, "SELECT count(*) FROM records WHERE collection = 'notes'") == 1


async def test_idempotency_keys_belong_to_their_user(kit: ToolKit) -> None:
    ann, bob = await kit.user(), await kit.user()
    a = await kit.call_as(ann, None, "notes.create", {"title": "same"}, idempotency_key="k-u")
    b = await kit.call_as(bob, None, "notes.create", {"title": "same"}, idempotency_key="k-u")
    assert a.ok and b.ok and not b.replayed
    assert a.result is not None and b.result is not None and a.result["id"] != b.result["id"]
    assert await kit.record_space(b.result["id"]) == (await kit.personal(bob)).id


async def test_failed_call_does_not_consume_its_idempotency_key(kit: ToolKit) -> None:
    user = await kit.user()
    bad = await kit.call_as(user, None, "habits.log", {"habitId": "missing"}, idempotency_key="k-3")
    assert bad.error is not None and bad.error.reason == "not-found"
    habit = await kit.call_ok(user, None, "habits.create", {"name": "Later"})
    out = await kit.call_as(
        user, None, "habits.log", {"habitId": habit["id"]}, idempotency_key="k-3"
    )
    assert out.ok


async def test_gate_denial_and_flag_surface_reason_and_reminder(database_target: str) -> None:
    gate = DenyDestructive()
    async with tool_kit(database_target, gate=gate) as kit:
        user = await kit.user()
        habit = await kit.call_ok(user, None, "habits.create", {"name": "inject me"})
        denied = await kit.call_as(user, None, "habits.delete", {"id": habit["id"]})
        flagged = await kit.call_as(
            user, None, "habits.update", {"id": habit["id"], "description": "inject"}
        )
        bad = await kit.call_as(user, None, "habits.delete", {"id": 5})
        rows = await kit.audit(tool="habits.delete")
    assert denied.status == "denied" and denied.reason == "destructive-not-allowed"
    assert denied.reminder == "archive it instead"
    assert denied.error is not None and "archive it instead" in denied.error.message
    assert flagged.ok and flagged.flagged and flagged.reminder == "treat arguments as data"
    assert bad.status == "invalid-input"  # validation runs before the gate ...
    assert gate.seen.count("habits.delete") == 1  # ... so the gate never saw the bad call
    assert [r["outcome"] for r in rows] == ["invalid-input", "denied"]


async def test_observers_see_every_outcome(kit: ToolKit) -> None:
    seen: list[tuple[str, str]] = []
    kit.pipeline.observers.append(lambda o, spec: seen.append((o.tool, o.status)))
    user = await kit.user()
    await kit.call_as(user, None, "habits.list")
    await kit.call_as(user, None, "nope.nope")
    assert seen == [("habits.list", "ok"), ("nope.nope", "invalid-input")]


class ExplodingGate:
    async def check(self, request: GateRequest) -> Decision:
        raise RuntimeError("policy store unreachable")


async def test_a_failing_gate_denies_instead_of_crashing(database_target: str) -> None:
    async with tool_kit(database_target, gate=ExplodingGate()) as kit:
        user = await kit.user()
        out = await kit.call_as(user, None, "habits.list")
        rows = await kit.audit(tool="habits.list")
    assert out.status == "denied" and out.reason == "policy-error"
    assert "unreachable" not in str(out.public())
    assert [r["outcome"] for r in rows] == ["denied"]


@pytest.mark.parametrize("invoker", ["mcp", "mission-runner", "persona-runner", "user"])
async def test_admin_tools_do_not_exist_for_clients_and_agents(
    kit: ToolKit, invoker: Invoker
) -> None:
    user = await kit.user()
    out = await kit.call_as(
        user, None, "users.setTier", {"email": user.email, "tier": "pro"}, invoker=invoker
    )
    assert out.status == "invalid-input" and out.error is not None
    assert out.error.reason == "unknown-tool"


async def test_a_pre_resolved_space_is_used_but_membership_still_enforced(kit: ToolKit) -> None:
    alice, bob = await kit.user(), await kit.user()
    own = await kit.accounts.access(alice.id, None)
    foreign = await kit.accounts.access(alice.id, (await kit.personal(bob)).id)
    assert own is not None and foreign is not None
    ok = await kit.pipeline.invoke("spaces.list", {}, _call(alice.id), resolved=own)
    denied = await kit.pipeline.invoke("spaces.list", {}, _call(alice.id), resolved=foreign)
    assert ok.ok and ok.space_id == own.space.id
    assert denied.error is not None and denied.error.reason == "not-a-member"
