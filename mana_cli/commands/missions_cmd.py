"""`mana missions create|list|show|run-now|pause|resume|complete|archive|cancel`.

    mana missions create --as demo@mana.test --agent scout --title "Weekly review" \\
        --objective "Summarise my open todos" --cadence weekly:mon:09:00 --tz Europe/Berlin
    mana missions run-now MISSION_ID --as demo@mana.test --llm scripted:examples/mission-demo.json
    mana missions cancel MISSION_ID --as demo@mana.test

`run-now` claims the mission's lease (so a daemon does not run it at the same time), runs one
iteration in this process and prints it. `cancel` flags the running iteration; the runner stops
it between rounds (status `cancelled`). `complete` marks a mission done (`resume` reactivates it
with a fresh next run); `archive` retires it for good (final; `list` hides archived missions
unless `--all`). Neither stops a running iteration: it finishes and schedules nothing
(`MissionStore.set_mission_state` holds the rules).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from mana_cli.commands.common import acting_user, add_identity, print_json, print_table
from mana_cli.config import Settings
from mana_cli.runtime import Runtime, open_runtime
from missions.cadence import CADENCE_HELP, describe, parse_cadence
from missions.leases import new_owner
from missions.llm import LLM_HELP, LLMSetup, llm_setup
from missions.metrics import MissionMetrics
from missions.models import MISSION_STATES, Iteration, Mission, MissionState, Proposal
from missions.runner import MissionRunner
from missions.scheduler import Scheduler
from missions.service import MissionsService
from missions.settings import MissionSettings
from missions.view import MISSIONS
from tool_registry.errors import ValidationFailed
from tool_registry.store import User
from tool_registry.store.accounts import SpaceAccess

MAX_ROUNDS_LIMIT = 100


# -- helpers shared by the agents, missions, proposals and daemon commands -----------------------


def service_of(rt: Runtime) -> MissionsService:
    return rt.backends.get(MISSIONS)


async def user_and_space(rt: Runtime, args: argparse.Namespace) -> tuple[User, SpaceAccess]:
    user = await acting_user(rt, args)
    return user, await service_of(rt).access(user.id, getattr(args, "space", None))


def add_llm(parser: argparse.ArgumentParser, *, default: str = "anthropic") -> None:
    parser.add_argument(
        "--llm", default=default, metavar="SPEC", help=f"the model: {LLM_HELP} (default {default})"
    )
    parser.add_argument(
        "--max-rounds",
        type=int,
        metavar="N",
        help="model rounds per iteration (default MANA_MISSION_MAX_ROUNDS or 8)",
    )


def mission_settings(rt: Runtime, args: argparse.Namespace) -> MissionSettings:
    settings = service_of(rt).settings
    rounds = getattr(args, "max_rounds", None)
    if rounds is not None:
        if not 1 <= rounds <= MAX_ROUNDS_LIMIT:
            raise ValidationFailed(f"--max-rounds must be between 1 and {MAX_ROUNDS_LIMIT}")
        settings = dataclasses.replace(settings, max_rounds=rounds)
    return settings


def build_runner(
    rt: Runtime,
    llm: LLMSetup,
    settings: MissionSettings,
    *,
    metrics: MissionMetrics | None = None,
    owner: str | None = None,
) -> MissionRunner:
    store = service_of(rt).store
    scheduler = Scheduler(rt.db, rt.clock, settings, owner=owner or new_owner())
    return MissionRunner(
        rt.pipeline, store, scheduler, llm, settings=settings, metrics=metrics, clock=rt.clock
    )


def print_iteration(it: Iteration, proposals: list[Proposal]) -> None:
    usage = f"{it.input_tokens} in / {it.output_tokens} out"
    print(f"iteration {it.id}: {it.status} (phase {it.phase}, round {it.round}, tokens {usage})")
    if it.error_name:
        print(f"  error: {it.error_name} in {it.error_phase}: {it.error_message}")
    for step in it.plan:
        extra = ""
        if step.proposal_id:
            extra = f" -> proposal {step.proposal_id} ({step.proposal_status})"
        elif step.reason:
            extra = f" ({step.reason})"
        if step.replayed:
            extra += " [replayed]"
        print(f"  r{step.round}.{step.index} {step.tool}: {step.status}{extra}")
    if it.summary:
        print(f"summary: {it.summary}")
    pending = [p for p in proposals if p.status == "pending"]
    if pending:
        print(f"{len(pending)} proposal(s) await approval:")
        for p in pending:
            print(f"  {p.id}: {p.tool} {p.arguments_json}")
        print("decide with `mana proposals approve ID` or `mana proposals reject ID`")


def mission_row(m: Mission) -> list[str]:
    return [
        m.id,
        m.state,
        m.agent_name or m.agent_id,
        describe(m.cadence),
        m.next_run_at or "-",
        m.last_status or "-",
        m.title,
    ]


MISSION_HEADERS = ["ID", "STATE", "AGENT", "CADENCE", "NEXT RUN", "LAST", "TITLE"]


# -- commands -------------------------------------------------------------------------------------


def register(sub: Any) -> None:
    p = sub.add_parser("missions", help="create, inspect and run missions")
    s = p.add_subparsers(dest="missions_command", metavar="ACTION", required=True)

    c = s.add_parser("create", help="create a mission for an agent of the space")
    add_identity(c)
    c.add_argument("--agent", help="agent name or id (default: the space's only active agent)")
    c.add_argument("--title", required=True)
    c.add_argument("--objective", required=True, help="what the agent should achieve")
    c.add_argument("--concept", default="", help="notes on approach, tone, constraints")
    c.add_argument("--cadence", default="manual", metavar="SPEC", help=CADENCE_HELP)
    c.add_argument("--tz", metavar="ZONE", help="IANA time zone for daily/weekly/cron (UTC)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=create)

    ls = s.add_parser("list", help="list the space's missions")
    add_identity(ls)
    ls.add_argument("--state", choices=MISSION_STATES)
    ls.add_argument("--all", action="store_true", help="include archived missions")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_missions)

    sh = s.add_parser("show", help="a mission with its recent iterations, proposals and skips")
    sh.add_argument("mission", metavar="MISSION")
    add_identity(sh)
    sh.add_argument("--iterations", type=int, default=5, metavar="N")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(handler=show)

    r = s.add_parser("run-now", help="run one iteration of the mission in this process")
    r.add_argument("mission", metavar="MISSION")
    add_identity(r)
    add_llm(r)
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=run_now)

    for name, helptext, handler in (
        ("pause", "stop running the mission on its cadence", pause),
        ("resume", "run the mission on its cadence again (next run computed from now)", resume),
        ("complete", "mark the mission done: it no longer runs (resume reactivates it)", complete),
        ("archive", "retire the mission for good: it no longer runs (final)", archive),
        ("cancel", "stop the mission's running iteration between rounds", cancel),
    ):
        x = s.add_parser(name, help=helptext)
        x.add_argument("mission", metavar="MISSION")
        add_identity(x)
        x.set_defaults(handler=handler)


async def create(args: argparse.Namespace, settings: Settings) -> int:
    cadence = parse_cadence(args.cadence, args.tz)
    async with open_runtime(settings) as rt:
        user, access = await user_and_space(rt, args)
        mission = await service_of(rt).create_mission(
            user_id=user.id,
            space_id=access.space.id,
            agent=args.agent,
            title=args.title,
            objective=args.objective,
            concept=args.concept,
            cadence=cadence,
        )
    if args.json:
        print_json(mission.to_json())
        return 0
    print(
        f"created mission {mission.id} “{mission.title}” for agent {mission.agent_name} in "
        f"{access.space.slug}; cadence {describe(mission.cadence)}; next run "
        f"{mission.next_run_at or '(manual: use run-now)'}"
    )
    return 0


async def list_missions(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user, access = await user_and_space(rt, args)
        missions = await service_of(rt).list_missions(
            user_id=user.id,
            space_id=access.space.id,
            state=args.state,
            include_archived=args.all,
        )
    if args.json:
        print_json([m.to_json() for m in missions])
        return 0
    if not missions:
        print(f"no missions in {access.space.slug}")
        return 0
    print_table([mission_row(m) for m in missions], MISSION_HEADERS)
    return 0


async def show(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user, access = await user_and_space(rt, args)
        detail = await service_of(rt).mission_detail(
            user_id=user.id,
            space_id=access.space.id,
            mission_id=args.mission,
            iterations=args.iterations,
        )
    m = detail.mission
    if args.json:
        print_json(
            {
                "mission": m.to_json(),
                "agent": detail.agent.to_json() if detail.agent else None,
                "iterations": [i.to_json() for i in detail.iterations],
                "pendingProposals": [p.to_json() for p in detail.proposals],
                "skips": [s.to_json() for s in detail.skips],
            }
        )
        return 0
    print(f"mission {m.id}: {m.title} [{m.state}] in {access.space.slug}")
    print(f"  agent: {m.agent_name} ({m.agent_id})")
    print(f"  objective: {m.objective}")
    if m.concept:
        print(f"  concept: {m.concept}")
    print(f"  cadence: {describe(m.cadence)}; next run: {m.next_run_at or '-'}")
    print(f"  last run: {m.last_run_at or '-'} ({m.last_status or '-'})")
    if m.failures:
        print(f"  failures in a row: {m.failures}; retry not before {m.backoff_until or '-'}")
        print(f"  last error: {m.last_error}")
    if m.lease_owner:
        print(f"  running now (lease held by {m.lease_owner} until {m.lease_expires_at})")
    if detail.skips:
        print("  recent skips:")
        for skip in detail.skips:
            print(f"    {skip.window_at} {skip.reason} x{skip.count}: {skip.detail or ''}")
    if detail.iterations:
        print(f"recent iterations ({len(detail.iterations)}):")
        print_table(
            [
                [
                    i.id,
                    i.status,
                    i.phase,
                    i.trigger,
                    str(i.attempt),
                    i.started_at,
                    str(i.total_tokens),
                    (i.summary or i.error_message or "")[:60],
                ]
                for i in detail.iterations
            ],
            ["ID", "STATUS", "PHASE", "TRIGGER", "TRY", "STARTED", "TOKENS", "SUMMARY / ERROR"],
        )
    if detail.proposals:
        print(f"pending proposals ({len(detail.proposals)}):")
        for p in detail.proposals:
            print(f"  {p.id}: {p.tool} {p.arguments_json} (expires {p.expires_at})")
    return 0


async def run_now(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user, access = await user_and_space(rt, args)
        service = service_of(rt)
        await service.check_can_run(
            user_id=user.id, space_id=access.space.id, mission_id=args.mission
        )
        llm = llm_setup(args.llm, settings.environ)
        try:
            runner = build_runner(rt, llm, mission_settings(rt, args))
            iteration = await runner.run_now(access.space.id, args.mission)
        finally:
            await llm.aclose()
        proposals = await service.store.proposals_of_iteration(access.space.id, iteration.id)
    if args.json:
        print_json(
            {
                "iteration": iteration.to_json(),
                "proposals": [p.to_json() for p in proposals],
            }
        )
    else:
        print_iteration(iteration, proposals)
    return 0 if iteration.status in ("completed", "awaiting-review") else 1


def set_state(
    state: MissionState, report: Callable[[Mission], str]
) -> Callable[[argparse.Namespace, Settings], Awaitable[int]]:
    """A command that moves the mission to `state` (rules: `MissionsService.set_state`) and
    prints `report(mission)`."""

    async def command(args: argparse.Namespace, settings: Settings) -> int:
        async with open_runtime(settings) as rt:
            user, access = await user_and_space(rt, args)
            mission = await service_of(rt).set_state(
                user_id=user.id, space_id=access.space.id, mission_id=args.mission, state=state
            )
        print(report(mission))
        return 0

    return command


def still_running(mission: Mission) -> str:
    if mission.lease_owner is None:
        return ""
    return "; its running iteration finishes, nothing new is scheduled"


pause = set_state("paused", lambda m: f"paused mission {m.id} “{m.title}”")
resume = set_state(
    "active", lambda m: f"resumed mission {m.id}; next run {m.next_run_at or '(manual)'}"
)
complete = set_state("done", lambda m: f"completed mission {m.id} “{m.title}”{still_running(m)}")
archive = set_state("archived", lambda m: f"archived mission {m.id} “{m.title}”{still_running(m)}")


async def cancel(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user, access = await user_and_space(rt, args)
        flagged = await service_of(rt).cancel_mission(
            user_id=user.id, space_id=access.space.id, mission_id=args.mission
        )
    if not flagged:
        print(f"mission {args.mission} has no running iteration; nothing to cancel")
        return 1
    print(
        f"cancel requested for {', '.join(flagged)}; it stops before its next round "
        "(status cancelled)"
    )
    return 0
