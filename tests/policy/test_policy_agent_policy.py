"""`AgentToolPolicy`: resolution order, filtering the offered tools, classifying calls; the
invoker rule (`offered_to`), its one listing wrapper (`OfferedTools`) and its enforcement in the
pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from agent_loop.llm import ToolCall
from agent_loop.tools import CallOutcome, OfferedTools, ProposalRequest, RegistryTools, ToolInfo
from mana_cli.config import Settings
from mana_cli.runtime import (
    EXTRA_MIGRATIONS,
    build_runtime_registry,
    configure_missions,
    open_runtime,
)
from policy.agent_policy import AgentToolPolicy, InvokerToolRule, not_offered_text, offered_to
from tests.policy.policy_helpers import ADMIN, DESTRUCTIVE, READ, WRITE, make_spec
from tool_registry.clock import SystemClock
from tool_registry.context import Backends, CallContext, Invoker
from tool_registry.modules import build_registry
from tool_registry.pipeline import Pipeline
from tool_registry.store import Accounts, open_database
from tool_registry.testing import tool_kit


def test_resolution_order_is_tool_then_module_then_hint_then_default() -> None:
    policy = AgentToolPolicy(
        tools={"notes.create": "auto"},
        modules={"notes": "deny"},
        by_hint={"write": "propose"},
        default="auto",
    )
    assert policy.resolve(WRITE) == "auto"  # tool beats module
    assert policy.resolve(READ) == "deny"  # module
    assert policy.resolve(make_spec("habits.log")) == "propose"  # hint
    assert policy.resolve(make_spec("habits.list", hint="read")) == "auto"  # default


def test_module_beats_hint() -> None:
    policy = AgentToolPolicy(modules={"notes": "auto"}, by_hint={"destructive": "deny"})
    assert policy.resolve(DESTRUCTIVE) == "auto"


def test_default_applies_without_any_rule() -> None:
    assert AgentToolPolicy().resolve(WRITE) == "propose"
    assert AgentToolPolicy(default="deny").resolve(READ) == "deny"


def test_offered_removes_denied_tools_and_keeps_order() -> None:
    policy = AgentToolPolicy(tools={"notes.search": "deny"}, default="auto")
    assert policy.offered([WRITE, READ, DESTRUCTIVE]) == [WRITE, DESTRUCTIVE]


def test_classify_requested_calls() -> None:
    policy = AgentToolPolicy(
        tools={"notes.create": "propose", "notes.search": "auto", "notes.delete": "deny"}
    )
    assert policy.classify(WRITE) == "propose"
    assert policy.classify(READ) == "auto"
    assert policy.classify(DESTRUCTIVE) == "deny"
    assert policy.classify(None) == "deny"  # unknown tool


def test_sensible_default_over_the_bundled_registry() -> None:
    policy = AgentToolPolicy.sensible_default()
    registry = build_registry()
    offered = policy.offered(registry.exposable())
    assert all(s.policy_hint != "destructive" for s in offered)
    for spec in offered:
        expected = "auto" if spec.policy_hint == "read" else "propose"
        assert policy.classify(spec) == expected
    assert {s.name for s in registry.exposable() if s.policy_hint == "destructive"}.isdisjoint(
        {s.name for s in offered}
    )


def test_admin_tools_are_never_offered_or_run() -> None:
    permissive = AgentToolPolicy(tools={"users.setTier": "auto"}, modules={"users": "auto"})
    assert permissive.resolve(ADMIN) == "deny"
    assert ADMIN not in permissive.offered([ADMIN, WRITE])
    registry = build_registry()
    everything = AgentToolPolicy(default="auto").offered(registry.all())
    assert all(s.scope == "user-space" for s in everything)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tools": {"notes.create": "yes"}},
        {"modules": {"notes": "always"}},
        {"by_hint": {"read": "maybe"}},
        {"by_hint": {"destructve": "deny"}},
        {"default": "sometimes"},
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="agent tool policy"):
        AgentToolPolicy(**kwargs)  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    policy = AgentToolPolicy(
        tools={"notes.create": "auto"},
        modules={"todo": "deny"},
        by_hint={"read": "auto"},
        default="deny",
    )
    data = policy.to_json()
    assert data == {
        "tools": {"notes.create": "auto"},
        "modules": {"todo": "deny"},
        "byHint": {"read": "auto"},
        "default": "deny",
    }
    assert AgentToolPolicy.from_json(data) == policy
    assert AgentToolPolicy.from_json({}) == AgentToolPolicy()


# -- the invoker rule: models running on their own never get the missions modules ---------------

AGENT_RUNNERS: tuple[Invoker, ...] = ("mission-runner", "persona-runner")
PEOPLE: tuple[Invoker, ...] = ("mcp", "cli", "user")
MISSION_TOOL_NAMES = ("missions.create", "missions.list", "proposals.list")


def test_offered_to_is_keyed_by_invoker() -> None:
    for module in ("missions", "proposals"):
        for invoker in AGENT_RUNNERS:
            assert not offered_to(invoker, module)
            text = not_offered_text(invoker, f"{module}.list")
            assert text is not None and "never available to" in text
        for invoker in PEOPLE:  # `mana agent run` is `cli`: a person drives it, call by call
            assert offered_to(invoker, module)
            assert not_offered_text(invoker, f"{module}.list") is None
    for invoker in (*AGENT_RUNNERS, *PEOPLE):
        assert offered_to(invoker, "notes")
    assert "personas" in (not_offered_text("persona-runner", "missions.create") or "")
    assert "agents running missions" in (not_offered_text("mission-runner", "missions.list") or "")


class Recording:
    """A tool source that records what reaches it."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.reached: list[str] = []

    @property
    def can_propose(self) -> bool:
        return True

    async def list_tools(self) -> Sequence[ToolInfo]:
        return [ToolInfo(n, n, {"type": "object"}) for n in self.names]

    async def call(self, call: ToolCall) -> CallOutcome:
        self.reached.append(call.name)
        return CallOutcome.success({"ok": True})

    async def propose(self, request: ProposalRequest) -> CallOutcome:
        self.reached.append(f"propose {request.call.name}")
        return CallOutcome.success("staged")


@pytest.mark.parametrize("invoker", AGENT_RUNNERS)
async def test_offered_tools_hide_and_refuse_the_missions_modules(invoker: str) -> None:
    inner = Recording([*MISSION_TOOL_NAMES, "notes.create"])
    tools = OfferedTools(inner, invoker)
    assert [t.name for t in await tools.list_tools()] == ["notes.create"]
    assert tools.can_propose
    for name in MISSION_TOOL_NAMES:
        refused = await tools.call(ToolCall("c", name, {}))
        assert refused.status == "denied" and refused.reason == "not-offered"
        info = ToolInfo(name, name, {})
        proposed = await tools.propose(
            ProposalRequest(ToolCall("p", name, {}), info, "because", "policy", 1)
        )
        assert proposed.status == "denied" and proposed.reason == "not-offered"
    assert inner.reached == []
    assert (await tools.call(ToolCall("c", "notes.create", {}))).ok
    assert inner.reached == ["notes.create"]


@pytest.mark.parametrize("invoker", PEOPLE)
async def test_offered_tools_pass_everything_for_people(invoker: str) -> None:
    inner = Recording([*MISSION_TOOL_NAMES, "notes.create"])
    tools = OfferedTools(inner, invoker)
    assert [t.name for t in await tools.list_tools()] == [*MISSION_TOOL_NAMES, "notes.create"]
    assert (await tools.call(ToolCall("c", "missions.list", {}))).ok


async def test_the_pipeline_refuses_missions_tools_to_agents_and_lists_them_for_people(
    tmp_path: Path,
) -> None:
    """The composition root wires the rule into the one pipeline: a direct call by an agent is
    refused (and audited) whatever tool source it came through; people keep the tools, and
    `mana agent run` (invoker `cli`) is offered them."""
    settings = Settings.load({"db": str(tmp_path / "mana.db")}, environ={})
    async with open_runtime(settings, create=True) as rt:
        user = await rt.accounts.create_user("ann@x.test")
        for invoker in AGENT_RUNNERS:
            call = CallContext(user_id=user.id, invoker=invoker)
            out = await rt.pipeline.invoke("missions.list", {}, call)
            assert out.status == "denied" and out.error is not None
            assert out.error.reason == "not-offered", out.public()
            created = await rt.pipeline.invoke(
                "missions.create", {"title": "Clone", "objective": "Replicate"}, call
            )
            assert created.status == "denied" and created.reason == "not-offered"
            visible = {s.module for s in rt.pipeline.visible_tools("personal", invoker)}
            assert visible.isdisjoint({"missions", "proposals"}) and "notes" in visible
            listed = await RegistryTools(rt.pipeline, call).list_tools()
            assert not [t for t in listed if t.name.split(".")[0] in ("missions", "proposals")]
        for invoker in PEOPLE:
            call = CallContext(user_id=user.id, invoker=invoker)
            assert (await rt.pipeline.invoke("missions.list", {}, call)).ok
        interactive = await RegistryTools(rt.pipeline, CallContext(user_id=user.id)).list_tools()
        assert {"missions.list", "proposals.list"} <= {t.name for t in interactive}
        rows = await rt.pipeline.audit.recent(tool="missions.create")
        assert rows and all(r["reason"] == "not-offered" for r in rows)


async def test_persona_users_over_mcp_are_not_listed_the_missions_tools(tmp_path: Path) -> None:
    """Over MCP a persona user's calls are invoker `persona-runner`: its tools/list leaves the
    missions modules out and a direct call is refused; a human user keeps them."""
    from mana_http.testing import McpTestServer

    db = await open_database(tmp_path / "m.db", EXTRA_MIGRATIONS)
    accounts = Accounts(db)
    backends = Backends()
    configure_missions(Settings.load({}, environ={}), backends, db, accounts, SystemClock())
    pipeline = Pipeline(
        build_runtime_registry({}),
        db,
        accounts=accounts,
        backends=backends,
        offer=InvokerToolRule(),
    )
    persona = await accounts.create_user("pia@mana.test", kind="persona")
    human = await accounts.create_user("hal@x.test")
    try:
        async with McpTestServer(pipeline, tmp_path / "keys") as server:
            for mode in ("2026-07-28", "legacy"):
                async with server.client(persona, mode=mode) as client:
                    names = {t.name for t in (await client.list_tools()).tools}
                    refused = await client.call_tool("missions.list", {})
                assert "notes.create" in names
                assert not {n for n in names if n.split(".")[0] in ("missions", "proposals")}
                assert refused.is_error
                assert refused.structured_content is None or "never available to personas" in str(
                    refused.content
                )
                async with server.client(human, mode=mode) as client:
                    names = {t.name for t in (await client.list_tools()).tools}
                    allowed = await client.call_tool("missions.list", {})
                assert {"missions.list", "proposals.list"} <= names and not allowed.is_error
    finally:
        await pipeline.aclose()
        await db.close()


async def test_tool_kit_takes_the_invoker_rule(tmp_path: Path) -> None:
    """Tool authors can test under the rule: `tool_kit(offer=InvokerToolRule())`."""
    registry = build_runtime_registry({})
    async with tool_kit(tmp_path / "kit.db", registry=registry, offer=InvokerToolRule()) as kit:
        ann = await kit.user()
        refused = await kit.call_as(ann, None, "missions.list", invoker="mission-runner")
        assert refused.status == "denied" and refused.reason == "not-offered"
        ok = await kit.call_as(ann, None, "notes.create", {"title": "x"}, invoker="mission-runner")
        assert ok.ok
        # a person is not refused by the rule (here the missions backend is simply not set up)
        person = await kit.call_as(ann, None, "missions.list", invoker="cli")
        assert person.reason != "not-offered"
