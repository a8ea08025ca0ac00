"""Which votes the aggregator takes in, pure: verdicts of its own tasks, comparisons within one prompt group.

Every vote it takes has an effect or a dead letter, never silence:

1. A `verdict` counts only for a task the aggregator issued (`agg_annotation_requests`) with the
   same candidates: its task_id is the one the aggregator derives from the task's group, kind and
   candidates, A and B in the order the task showed them, and it is located by A. Otherwise it is
   refused: `unknown_task` (no such task) or `candidates_mismatch`. A task withdrawn since (users
   settled it first, or a more valuable task took its place) still counts: an expert judged exactly
   what was asked, and expert evidence is the strongest there is.
2. A vote waits (parked, with the parked-vote TTL) until every answer it names is known: its
   interaction and, for a comparison, both compared answers. A comparison whose answers are in two
   prompt groups can give no pair: refused as `cross_group_comparison`.

Nothing here does I/O: the shell (batches.py) loads what the rules need and writes what they decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.aggregator.pairs import task_candidates, task_id
from shared.errors import ContractError, CrossGroupComparisonError
from shared.events import ComparisonVote, VerdictVote, Vote


class UnknownTaskError(ContractError):
    """A verdict on a task the aggregator never issued."""

    code = "unknown_task"


class CandidatesMismatchError(ContractError):
    """A verdict whose candidates are not the ones its task showed."""

    code = "candidates_mismatch"


@dataclass(frozen=True, slots=True)
class IssuedTask:
    """A task the aggregator published: its group and kind (the candidates are in its deterministic id)."""

    prompt_key: str
    kind: str


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a vote goes now: into a group, parked until an answer arrives, or refused."""

    prompt_key: str | None = None
    waiting_for: str | None = None
    refusal: ContractError | None = None


def named_interactions(vote: Vote) -> tuple[str, ...]:
    """Every answer a vote names: its own, and for a comparison both compared answers."""
    if isinstance(vote, ComparisonVote):
        return (vote.interaction_id, vote.preferred_interaction_id, vote.other_interaction_id)
    return (vote.interaction_id,)


def check_verdict(verdict: VerdictVote, issued: IssuedTask | None) -> ContractError | None:
    """The refusal of a verdict that is not about a task the aggregator issued, as issued; else None."""
    if issued is None:
        return UnknownTaskError(
            "no annotation task was issued under this task_id",
            errors=[{"loc": ["task_id"], "msg": "not a task of the aggregator", "type": "unknown_task"}],
        )
    a, b = verdict.a_interaction_id, verdict.b_interaction_id
    shown = (a,) if b is None else (a, b)
    is_same = (
        a is not None
        and verdict.interaction_id == a
        and shown == task_candidates(shown)  # type: ignore[arg-type]
        and verdict.task_id == task_id(issued.prompt_key, issued.kind, shown)  # type: ignore[arg-type]
    )
    if is_same:
        return None
    return CandidatesMismatchError(
        "the verdict's candidates are not the ones its task showed",
        errors=[
            {
                "loc": ["a_interaction_id"],
                "msg": "interaction_id, a_interaction_id and b_interaction_id must be the task's own A and B",
                "type": "candidates_mismatch",
            }
        ],
    )


def place_vote(vote: Vote, groups: Mapping[tuple[str, str], str]) -> Placement:
    """Apply in the group of its interaction, wait for an answer not seen yet, or refuse a cross-group comparison.

    `groups` maps (app_id, interaction_id) of every known answer the vote names to its prompt_key.
    """
    names = named_interactions(vote)
    missing = [i for i in names if (vote.app_id, i) not in groups]
    if missing:
        return Placement(waiting_for=missing[0])
    if len({groups[(vote.app_id, i)] for i in names}) > 1:
        return Placement(
            refusal=CrossGroupComparisonError(
                "the two answers of a comparison answer different prompts",
                errors=[
                    {
                        "loc": ["other_interaction_id"],
                        "msg": "interaction_id, preferred_interaction_id and other_interaction_id are in different "
                        "prompt groups",
                        "type": "cross_group_comparison",
                    }
                ],
            )
        )
    return Placement(prompt_key=groups[(vote.app_id, vote.interaction_id)])
