"""The edge's view of interactions: the prompt group of each interaction ingest published.

ingest records a row per interaction it publishes (in the statement that records its event id, once
the broker acknowledged it); feedback reads them to refuse a comparison of two answers to different
prompts before accepting it (`cross_group_comparison`, 422). The view is advisory: an interaction
it does not know (not published yet, pruned, or the database briefly away) lets the vote through,
and the aggregator, which sees every group, dead-letters a cross-group comparison itself. Rows are
pruned with the published event ids (the dedupe window). Both services share the table, as they
share `published_events`: neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from shared import db
from shared.errors import ContractError, CrossGroupComparisonError
from shared.events import ComparisonVote, EndUserComparisonVote, Event, Interaction

QUERIES = db.SHARED_QUERIES


async def record_interactions(
    pool: asyncpg.Pool, events: Sequence[Event], digests: Sequence[bytes], stream: str
) -> None:
    """Record interactions just published (ids, body hashes) and their prompt group: one statement, one round trip.

    The first body of an id stays, and the first prompt group of an (app_id, interaction_id).
    """
    rows = [e for e in events if isinstance(e, Interaction) and e.prompt_key]
    await pool.execute(
        QUERIES["insert_published_interactions"],
        [e.event_id for e in events],
        list(digests),
        stream,
        [i.app_id for i in rows],
        [i.interaction_id for i in rows],
        [i.prompt_key for i in rows],
    )


async def refuse_cross_group(pool: asyncpg.Pool, events: Sequence[Event]) -> list[ContractError | None]:
    """For each event, the refusal of a comparison whose two answers the view knows in different groups."""
    comparisons = [e for e in events if isinstance(e, (ComparisonVote, EndUserComparisonVote))]
    wanted = sorted({(c.app_id, i) for c in comparisons for i in (c.preferred_interaction_id, c.other_interaction_id)})
    if not wanted:
        return [None] * len(events)
    async with db.translate_errors():
        rows = await pool.fetch(QUERIES["select_edge_prompt_keys"], [w[0] for w in wanted], [w[1] for w in wanted])
    groups = {(r["app_id"], r["interaction_id"]): r["prompt_key"] for r in rows}
    return [_refusal(e, groups) for e in events]


def _refusal(event: Event, groups: dict[tuple[str, str], str]) -> ContractError | None:
    if not isinstance(event, (ComparisonVote, EndUserComparisonVote)):
        return None
    preferred = groups.get((event.app_id, event.preferred_interaction_id))
    other = groups.get((event.app_id, event.other_interaction_id))
    if preferred is None or other is None or preferred == other:
        return None
    return CrossGroupComparisonError(
        "the two answers of a comparison must answer the same prompt",
        errors=[
            {
                "loc": ["other_interaction_id"],
                "msg": "preferred_interaction_id and other_interaction_id answer different prompts",
                "type": "cross_group_comparison",
            }
        ],
    )


async def prune_edge_view(pool: asyncpg.Pool, before: datetime) -> int:
    """Forget the prompt group of interactions published before `before`; return how many."""
    async with db.translate_errors():
        status = await pool.execute(QUERIES["delete_edge_interactions_before"], before)
    return int(status.split()[-1])
