"""`mana agents create|list|show|pause|resume|archive`: named AI identities of a space.

    mana agents create --as demo@mana.test --name scout --role "Keeps my todos tidy" \\
        --max-tokens-per-day 200000 --auto todo.create --deny notes
    mana agents show scout --as demo@mana.test

The tool policy starts from the sensible default (reads `auto`, writes `propose`, destructive
`deny`); `--auto/--propose/--deny NAME` override it for a tool (`todo.create`) or a whole module
(`notes`); `--policy-json` replaces it (`{"tools": {...}, "modules": {...}, "byHint": {...},
"default": "propose"}`). Creating and changing agents needs the space's owner or an admin.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mana_cli.commands.common import add_identity, print_json, print_table
from mana_cli.commands.missions_cmd import service_of, user_and_space
from mana_cli.config import Settings
from mana_cli.runtime import Runtime, open_runtime
from missions.models import Agent
from policy.agent_policy import AgentToolPolicy, Mode
from tool_registry.errors import ValidationFailed
from tool_registry.json_input import JsonInputError, loads_json
from tool_registry.registry import Registry


def register(sub: Any) -> None:
    p = sub.add_parser("agents", help="manage the agents of a space")
    s = p.add_subparsers(dest="agents_command", metavar="ACTION", required=True)

    c = s.add_parser("create", help="create an agent (space owner or admin)")
    add_identity(c)
    c.add_argument("--name", required=True, help="unique in the space")
    c.add_argument("--role", default="", help="one line: what the agent is for")
    prompt = c.add_mutually_exclusive_group()
    prompt.add_argument("--system-prompt", default="", metavar="TEXT")
    prompt.add_argument("--system-prompt-file", type=Path, metavar="PATH")
    c.add_argument("--memory", default="", metavar="TEXT", help="what the agent knows up front")
    c.add_argument(
        "--max-tokens-per-day",
        default="none",
        metavar="N|none",
        help="token budget per rolling 24 h: none = unlimited, 0 = paused (default none)",
    )
    c.add_argument("--max-concurrent", type=int, default=1, metavar="N", help="default 1")
    for mode in ("auto", "propose", "deny"):
        c.add_argument(
            f"--{mode}",
            action="append",
            default=[],
            metavar="TOOL|MODULE",
            help=f"resolve this tool or module to `{mode}` (repeatable)",
        )
    c.add_argument("--policy-json", metavar="JSON", help="the whole tool policy as JSON")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=create)

    ls = s.add_parser("list", help="list the space's agents")
    add_identity(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_agents)

    sh = s.add_parser("show", help="an agent with its policy, budget use and tools")
    sh.add_argument("agent", metavar="AGENT", help="name or id")
    add_identity(sh)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(handler=show)

    for name, state in (("pause", "paused"), ("resume", "active"), ("archive", "archived")):
        x = s.add_parser(name, help=f"set the agent {state} (space owner or admin)")
        x.add_argument("agent", metavar="AGENT", help="name or id")
        add_identity(x)
        x.set_defaults(handler=set_state, state=state)


def parse_budget(text: str) -> int | None:
    raw = text.strip().lower()
    if raw in ("none", "unlimited", ""):
        return None
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ValidationFailed(
            f"--max-tokens-per-day must be a number or none, got {text!r}"
        ) from None
    if value < 0:
        raise ValidationFailed("--max-tokens-per-day must not be negative")
    return value


def build_policy(args: argparse.Namespace, registry: Registry) -> AgentToolPolicy:
    if args.policy_json:
        try:
            data = loads_json(args.policy_json)
        except JsonInputError as exc:
            raise ValidationFailed(f"--policy-json: {exc}") from None
        if not isinstance(data, dict):
            raise ValidationFailed("--policy-json must be a JSON object")
        try:
            base = AgentToolPolicy.from_json(data)
        except ValueError as exc:
            raise ValidationFailed(f"--policy-json: {exc}") from None
    else:
        base = AgentToolPolicy.sensible_default()
    tools: dict[str, Mode] = dict(base.tools)
    modules: dict[str, Mode] = dict(base.modules)
    known_modules = set(registry.modules())
    modes: tuple[Mode, ...] = ("auto", "propose", "deny")
    for mode in modes:
        for name in getattr(args, mode):
            if "." in name:
                if name not in registry:
                    raise ValidationFailed(f"--{mode}: unknown tool {name!r}")
                tools[name] = mode
            else:
                if name not in known_modules:
                    raise ValidationFailed(
                        f"--{mode}: unknown module {name!r} (modules: "
                        f"{', '.join(sorted(known_modules))})"
                    )
                modules[name] = mode
    return AgentToolPolicy(tools=tools, modules=modules, by_hint=base.by_hint, default=base.default)


def describe_policy(policy: AgentToolPolicy) -> str:
    parts = [f"{hint} {mode}" for hint, mode in policy.by_hint.items()]
    parts.append(f"otherwise {policy.default}")
    text = ", ".join(parts)
    overrides = {**policy.modules, **policy.tools}
    if overrides:
        text += "; overrides: " + ", ".join(f"{k} {v}" for k, v in sorted(overrides.items()))
    return text


def tools_by_mode(rt: Runtime, agent: Agent, space_type: str) -> dict[str, list[str]]:
    """What a mission of this agent would see in a space of this type."""
    out: dict[str, list[str]] = {"auto": [], "propose": [], "deny": []}
    for spec in rt.pipeline.visible_tools(space_type, "mission-runner"):
        out[agent.tool_policy.resolve(spec)].append(spec.name)
    return out


async def create(args: argparse.Namespace, settings: Settings) -> int:
    budget = parse_budget(args.max_tokens_per_day)
    system_prompt = args.system_prompt
    if args.system_prompt_file is not None:
        try:
            system_prompt = args.system_prompt_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValidationFailed(
                f"cannot read {args.system_prompt_file}: {exc.strerror}"
            ) from None
    async with open_runtime(settings) as rt:
        policy = build_policy(args, rt.registry)
        user, access = await user_and_space(rt, args)
        agent = await service_of(rt).create_agent(
            user_id=user.id,
            space_id=access.space.id,
            name=args.name,
            role=args.role,
            system_prompt=system_prompt,
            memory=args.memory,
            tool_policy=policy,
            max_tokens_per_day=budget,
            max_concurrent=args.max_concurrent,
        )
    if args.json:
        print_json(agent.to_json())
        return 0
    budget_text = "unlimited" if budget is None else f"{budget} tokens / 24 h"
    print(f"created agent {agent.name} ({agent.id}) in {access.space.slug}; budget {budget_text}")
    print(f"tool policy: {describe_policy(agent.tool_policy)}")
    return 0


async def list_agents(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user, access = await user_and_space(rt, args)
        service = service_of(rt)
        agents = await service.list_agents(user_id=user.id, space_id=access.space.id)
        used = {a.id: await service.agent_tokens_used(a) for a in agents}
    if args.json:
        print_json([{**a.to_json(), "tokensUsed24h": used[a.id]} for a in agents])
        return 0
    if not agents:
        print(f"no agents in {access.space.slug}; create one with `mana agents create`")
        return 0
    print_table(
        [
            [
                a.name,
                a.state,
                f"{used[a.id]}/{'∞' if a.max_tokens_per_day is None else a.max_tokens_per_day}",
                str(a.max_concurrent),
                a.role[:50],
                a.id,
            ]
            for a in agents
        ],
        ["NAME", "STATE", "TOKENS 24H", "CONCURRENT", "ROLE", "ID"],
    )
    return 0


async def show(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user, access = await user_and_space(rt, args)
        service = service_of(rt)
        agent = await service.get_agent(user_id=user.id, space_id=access.space.id, ref=args.agent)
        used = await service.agent_tokens_used(agent)
        missions = await service.store.list_missions(access.space.id, agent_id=agent.id)
        modes = tools_by_mode(rt, agent, access.space.type)
    if args.json:
        print_json(
            {
                **agent.to_json(),
                "tokensUsed24h": used,
                "missions": [m.id for m in missions],
                "tools": modes,
            }
        )
        return 0
    budget = "unlimited" if agent.max_tokens_per_day is None else str(agent.max_tokens_per_day)
    print(f"agent {agent.name} ({agent.id}) [{agent.state}] in {access.space.slug}")
    if agent.role:
        print(f"  role: {agent.role}")
    print(f"  tokens used in the last 24 h: {used} (budget {budget})")
    print(f"  max concurrent missions: {agent.max_concurrent}")
    print(f"  missions: {len(missions)}")
    print(f"  tool policy: {describe_policy(agent.tool_policy)}")
    print(f"  runs without asking ({len(modes['auto'])}): {', '.join(modes['auto']) or '-'}")
    print(f"  proposes ({len(modes['propose'])}): {', '.join(modes['propose']) or '-'}")
    print(f"  hidden ({len(modes['deny'])}): {', '.join(modes['deny']) or '-'}")
    return 0


async def set_state(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user, access = await user_and_space(rt, args)
        agent = await service_of(rt).set_agent_state(
            user_id=user.id, space_id=access.space.id, ref=args.agent, state=args.state
        )
    print(f"agent {agent.name} is now {agent.state}")
    return 0
