"""`proposals.review`: an owner or admin decides the pending proposals of the active space from
their MCP client, one question per proposal.

The tool walks the space's pending proposals (the newest `limit` of them, oldest first) and asks
the user about each through the call's client channel (elicitation): the form shows the exact
fingerprinted call (tool, canonical arguments, fingerprint) and the agent's rationale, and
offers approve, reject or skip. Declining a form skips that proposal; cancelling stops the
questions (the rest are skipped; the answers given before are carried out). Once every
proposal is answered, each approval or rejection goes through `ProposalService`, the same code
as `mana proposals approve|reject`: approving runs exactly the stored call through the pipeline
as invoker `user`, once however many approvals race. A decision the proposal service refuses
(the proposal expired or was decided meanwhile) is reported under `failed` and the others are
still carried out; an approved call the policy gate denies leaves the proposal pending
(reported with the denial's reason), as at the CLI.

How it is declared: a write tool (it needs `mana:write`, and clients see it is not read-only)
with `own_transactions`, so the pipeline runs its handler outside any write transaction (a
person may take minutes to answer): each decision commits in the proposal service's own short
transactions. It writes nothing while the user answers, so the 2026-07-28 era's input-required
rounds (one question key per proposal id) see the same pending proposals, each retry brings the
answers so far and the review continues where it stopped. It is idempotent by itself: a decided
proposal is no longer pending, so a later review does not ask about it again. A client that
cannot show questions gets a clear error naming the CLI instead. Like every `proposals` tool,
it is never offered to agents.

The handler reaches the proposal service only through `ctx.backend(PROPOSAL_REVIEW)`: a
`SpaceReview` bound to the caller and the active space.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from missions.models import Proposal
from missions.proposals import ProposalService
from missions.view import MISSIONS
from tool_registry.client_channel import ClientCannotAsk, ask_consent
from tool_registry.context import ScopedBackendKey, ToolContext
from tool_registry.errors import ManaError, PermissionDeniedError, ToolError
from tool_registry.membership import is_manager
from tool_registry.models import ToolInput, ToolOutput
from tool_registry.spec import ToolSpec
from tool_registry.store.accounts import Space

ReviewChoice = Literal["approve", "reject", "skip"]
CHOICES: tuple[ReviewChoice, ...] = ("approve", "reject", "skip")
MAX_SHOWN_ARGUMENTS = 2000


class SpaceReview:
    """The proposal decisions of one person in one space (what `proposals.review` may do)."""

    def __init__(self, service: ProposalService, user_id: str, space: Space) -> None:
        self._service = service
        self._user_id = user_id
        self._space = space

    async def pending(self, limit: int) -> list[Proposal]:
        """The space's pending proposals, oldest first (expired ones are expired first)."""
        store = self._service.store
        await store.expire_proposals()
        newest_first = await store.list_proposals(self._space.id, status="pending", limit=limit)
        return list(reversed(newest_first))

    async def approve(self, proposal_id: str) -> Proposal:
        decision = await self._service.approve(self._user_id, proposal_id, space=self._space.id)
        return decision.proposal

    async def reject(self, proposal_id: str, note: str | None) -> Proposal:
        decision = await self._service.reject(
            self._user_id, proposal_id, space=self._space.id, note=note
        )
        return decision.proposal


PROPOSAL_REVIEW: ScopedBackendKey[ProposalService, SpaceReview] = ScopedBackendKey(
    "proposal-review", SpaceReview, ProposalService
)


def question_key(proposal_id: str) -> str:
    """The question's key: one per proposal, so a retried review continues where it stopped."""
    return f"proposal:{proposal_id}"


def question(proposal: Proposal) -> str:
    """The text of a proposal's form: the exact fingerprinted call and the agent's reason."""
    arguments = proposal.arguments_json
    if len(arguments) > MAX_SHOWN_ARGUMENTS:
        arguments = arguments[:MAX_SHOWN_ARGUMENTS] + f"… ({len(proposal.arguments_json)} chars)"
    return (
        f"An agent proposes to call {proposal.tool} with arguments {arguments} "
        f"(proposal {proposal.id}, fingerprint {proposal.fingerprint}, expires "
        f"{proposal.expires_at}). Its reason: {proposal.rationale or '(none given)'}\n"
        "Approve runs exactly this call; reject discards it; skip leaves it pending."
    )


QUESTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decision": {
            "type": "string",
            "title": "Decision",
            "enum": list(CHOICES),
            "default": "skip",
        },
        "note": {
            "type": "string",
            "title": "Note (optional)",
            "description": "Why, recorded on a rejected proposal",
            "maxLength": 500,
        },
    },
    "required": ["decision"],
}


class ReviewInput(ToolInput):
    limit: int = Field(default=20, ge=1, le=100, description="Review at most this many.")


class ReviewedProposal(ToolOutput):
    id: str
    tool: str
    fingerprint: str
    status: str
    reason: str | None = Field(
        default=None, description="Why the call did not run (a denial or refusal), if it did not."
    )


class ReviewResult(ToolOutput):
    approved: list[ReviewedProposal]
    rejected: list[ReviewedProposal]
    skipped: list[ReviewedProposal]
    failed: list[ReviewedProposal]
    stopped: bool = Field(description="True when the user cancelled the review.")


def _reviewed(proposal: Proposal, reason: str | None = None) -> ReviewedProposal:
    if reason is None and proposal.status in ("pending", "failed") and proposal.result:
        error = proposal.result.get("error")
        if isinstance(error, dict) and isinstance(error.get("reason"), str):
            reason = error["reason"]
    return ReviewedProposal(
        id=proposal.id,
        tool=proposal.tool,
        fingerprint=proposal.fingerprint,
        status=proposal.status,
        reason=reason,
    )


NO_QUESTIONS = (
    "proposals.review asks about each proposal in your client, and this client cannot show "
    "questions ({why}); decide with `mana proposals approve ID` or `mana proposals reject ID` "
    "instead"
)


async def review_proposals(inp: ReviewInput, ctx: ToolContext) -> ReviewResult:
    """Ask about every pending proposal first, then carry out the decisions: nothing is written
    while the user answers, so in the 2026-07-28 era every round sees the same proposals, each
    retry brings the answers given so far (one key per proposal), and only the last round,
    with every answer, decides and reports them all."""
    if not is_manager(ctx.role):
        raise PermissionDeniedError("only the space's owner or an admin may review proposals")
    review: SpaceReview = ctx.backend(PROPOSAL_REVIEW)
    result = ReviewResult(approved=[], rejected=[], skipped=[], failed=[], stopped=False)
    pending = await review.pending(inp.limit)
    decisions: list[tuple[Proposal, ReviewChoice, str | None]] = []
    for index, proposal in enumerate(pending):
        try:
            answer = await ask_consent(
                ctx.channel, question_key(proposal.id), question(proposal), QUESTION_SCHEMA
            )
        except ClientCannotAsk as exc:
            raise ToolError(NO_QUESTIONS.format(why=exc), reason="client-cannot-ask") from None
        if answer.action == "cancel":
            result.stopped = True
            result.skipped.extend(_reviewed(p) for p in pending[index:])
            break
        content = answer.content or {}
        choice = content.get("decision") if answer.accepted else "skip"
        note = content.get("note")
        if choice == "approve":
            decisions.append((proposal, "approve", note if isinstance(note, str) else None))
        elif choice == "reject":
            decisions.append((proposal, "reject", note if isinstance(note, str) else None))
        else:
            result.skipped.append(_reviewed(proposal))
    for proposal, choice, note in decisions:
        try:
            if choice == "approve":
                result.approved.append(_reviewed(await review.approve(proposal.id)))
            else:
                result.rejected.append(_reviewed(await review.reject(proposal.id, note)))
        except ManaError as exc:
            # Refused for this proposal only (expired, decided meanwhile): reported, and the
            # other decisions are still carried out.
            result.failed.append(_reviewed(proposal, f"{exc.reason}: {exc.message}"))
    return result


PROPOSALS_REVIEW = ToolSpec(
    name="proposals.review",
    title="Review proposed agent actions",
    description=(
        "Walk the pending proposals of the active space with the user: for each, the user sees "
        "the exact proposed call (tool, arguments, fingerprint) and approves, rejects or skips "
        "it; an approval runs exactly that call. Owners and admins only; needs a client that "
        "can ask the user (elicitation). Returns what was approved, rejected and skipped."
    ),
    module="proposals",
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    own_transactions=True,
    requires=(MISSIONS.name, PROPOSAL_REVIEW.name),
    input=ReviewInput,
    output=ReviewResult,
    handler=review_proposals,
)
