"""`mana proposals list|approve|reject`: human decisions on calls agents proposed.

    mana proposals list --as demo@mana.test
    mana proposals approve PROPOSAL_ID --as demo@mana.test
    mana proposals reject PROPOSAL_ID --as demo@mana.test --note "not now"

Approving runs exactly the stored call (its fingerprint is checked first) through the invocation
pipeline with invoker `user`, so the policy gate still applies: a destructive tool still needs
the space's allowlist (`mana policy allow`). A call the gate denies did not run and the proposal
stays pending. The call runs once however many approvals arrive together (from any number of
processes): approving a decided proposal answers its decision (exit 0 when it was executed).
Deciding is a human act: it is reachable from here, never through a tool.
"""

from __future__ import annotations

import argparse
from typing import Any

from mana_cli.commands.common import acting_user, add_identity, print_json, print_table
from mana_cli.commands.missions_cmd import service_of, user_and_space
from mana_cli.config import Settings
from mana_cli.runtime import Runtime, open_runtime
from missions.models import PROPOSAL_STATUSES
from missions.proposals import Decision, ProposalService


def register(sub: Any) -> None:
    p = sub.add_parser("proposals", help="list, approve or reject calls agents proposed")
    s = p.add_subparsers(dest="proposals_command", metavar="ACTION", required=True)

    ls = s.add_parser("list", help="proposals of the space (default: pending)")
    add_identity(ls)
    ls.add_argument("--status", choices=[*PROPOSAL_STATUSES, "all"], default="pending")
    ls.add_argument("--mission", metavar="MISSION", help="only this mission's")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_proposals)

    ap = s.add_parser("approve", help="run exactly the proposed call, as you, through the gate")
    ap.add_argument("proposal", metavar="PROPOSAL")
    add_identity(ap)
    ap.add_argument("--json", action="store_true")
    ap.set_defaults(handler=approve)

    rj = s.add_parser("reject", help="reject a pending proposal")
    rj.add_argument("proposal", metavar="PROPOSAL")
    add_identity(rj)
    rj.add_argument("--note", help="why (kept with the proposal)")
    rj.add_argument("--json", action="store_true")
    rj.set_defaults(handler=reject)


def decisions(rt: Runtime) -> ProposalService:
    return ProposalService(service_of(rt).store, rt.accounts, rt.pipeline)


async def list_proposals(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user, access = await user_and_space(rt, args)
        proposals = await service_of(rt).list_proposals(
            user_id=user.id,
            space_id=access.space.id,
            status=None if args.status == "all" else args.status,
            mission_id=args.mission,
            limit=args.limit,
        )
    if args.json:
        print_json([p.to_json() for p in proposals])
        return 0
    if not proposals:
        print(
            f"no {'' if args.status == 'all' else args.status + ' '}proposals in {access.space.slug}"
        )
        return 0
    print_table(
        [
            [p.id, p.status, p.tool, p.arguments_json[:60], p.expires_at, p.rationale[:40]]
            for p in proposals
        ],
        ["ID", "STATUS", "TOOL", "ARGUMENTS", "EXPIRES", "RATIONALE"],
    )
    return 0


def _print_decision(decision: Decision) -> None:
    """One line per decision: what this command did, or the decision it found already made
    (another approval ran the call, or the proposal was rejected)."""
    p = decision.proposal
    ran = decision.outcome is not None
    recorded = p.result or {}
    error = recorded.get("error") or {}
    message = error.get("message") or recorded.get("status", "")
    by = f" (decided by {p.decided_by} at {p.decided_at})" if p.decided_by else ""
    if p.status == "rejected":
        print(f"proposal {p.id} rejected{by}")
    elif p.status == "executed":
        if ran:
            print(f"proposal {p.id} approved and executed: {p.tool} -> {recorded.get('result')}")
        else:
            print(f"proposal {p.id} already executed{by}: {p.tool} -> {recorded.get('result')}")
    elif p.status == "failed":
        what = "approved but the call failed" if ran else f"already failed{by}"
        print(f"proposal {p.id} {what}: {message}")
    else:  # the gate denied the call: nothing ran
        print(f"proposal {p.id} was not run: {message}")
        print("it stays pending; change the policy (e.g. `mana policy allow`) and approve again")


async def approve(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        decision = await decisions(rt).approve(user.id, args.proposal, space=args.space)
    if args.json:
        print_json(decision.to_json())
    else:
        _print_decision(decision)
    return 0 if decision.executed else 1


async def reject(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as rt:
        user = await acting_user(rt, args)
        decision = await decisions(rt).reject(
            user.id, args.proposal, space=args.space, note=args.note
        )
    if args.json:
        print_json(decision.to_json())
    else:
        _print_decision(decision)
    return 0
