"""The leaderboard's counts, pure: battles and approval per version, as changes of one batch.

The live leaderboard is refitted from counts that every batch keeps current in its own transaction
(services/aggregator/leaderboard_store.py writes what this module computes):

- A battle is a live pair whose chosen and rejected are answers of two different (model,
  model_version), neither of them a human side (an edit or an expert rewrite:
  `outputs.SYNTHETIC_MODELS`); the chosen side wins. Battles are counted per (app_id, domain,
  winner, loser), the domain being the pair's. Each pair_id holds at most one battle, stored beside
  it: a pair first emitted adds its battle, a flip moves it, a retraction removes it, and a replay
  (or a new confidence) changes nothing, so the counts always equal a recount of the live pairs.
- Approval: effective votes (the latest per voter and answer: the approval slot of `evidence.py`;
  ratings 4-5 up, 1-2 down) per (app_id, domain, version), the domain being the group's routed one
  (the domain its pairs carry). A decided group is counted whole, before and after: the stored
  domain it was counted under says whether its counts change in place, move to another domain, or
  are added for the first time (a group never counted contributed nothing).
- A board is an app (domain "" = the whole app, the sum of its domains) or one of its domains.
  Every board whose counts a batch changed is marked changed; the refit worker debounces from there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.aggregator.evidence import approval_of
from services.aggregator.leaderboard import VersionKey
from services.aggregator.outputs import SYNTHETIC_MODELS, PairRow
from services.aggregator.pairs import Answer, Group
from services.aggregator.routing import RoutingRules, route_domain
from shared.events import Vote

WHOLE_APP = ""


@dataclass(frozen=True, order=True)
class BoardKey:
    """One leaderboard: an app (domain WHOLE_APP) or one domain of it."""

    app_id: str
    domain: str = WHOLE_APP

    @property
    def domain_or_none(self) -> str | None:
        return self.domain or None

    @property
    def topic_key(self) -> str:
        """The `model-leaderboard` key: app_id, or app_id/domain."""
        return f"{self.app_id}/{self.domain}" if self.domain else self.app_id


@dataclass(frozen=True, order=True)
class BattleKey:
    app_id: str
    domain: str
    winner: VersionKey
    loser: VersionKey


@dataclass(frozen=True, order=True)
class ApprovalKey:
    app_id: str
    domain: str
    version: VersionKey


def battle_of(pair: Mapping[str, Any] | None) -> BattleKey | None:
    """The battle a pair (a PreferencePair as JSON; None = retracted) stands for, if it is one."""
    if pair is None:
        return None
    chosen, rejected = pair["chosen"], pair["rejected"]
    winner = VersionKey(chosen["model"], chosen["model_version"])
    loser = VersionKey(rejected["model"], rejected["model_version"])
    if winner == loser or winner.model in SYNTHETIC_MODELS or loser.model in SYNTHETIC_MODELS:
        return None
    return BattleKey(pair["app_id"], pair["domain"], winner, loser)


def battle_changes(
    stored: Mapping[str, BattleKey], rows: Sequence[PairRow]
) -> tuple[dict[BattleKey, int], dict[str, BattleKey | None]]:
    """Count changes (non-zero only) and each written pair's battle now (None: it holds none).

    `stored`: the battle each of these pair_ids held before (absent: none).
    """
    deltas: Counter[BattleKey] = Counter()
    now: dict[str, BattleKey | None] = {}
    for row in rows:
        before, after = stored.get(row.pair_id), battle_of(row.pair)
        if before is not None:
            deltas[before] -= 1
        if after is not None:
            deltas[after] += 1
        now[row.pair_id] = after
    return {key: n for key, n in deltas.items() if n}, now


def version_approvals(votes: Iterable[Vote], answers: Iterable[Answer]) -> dict[VersionKey, tuple[int, int]]:
    """(up, down) per version from a group's effective votes; votes on answers not listed are skipped."""
    votes = list(votes)
    if not votes:
        return {}
    voted = {vote.interaction_id for vote in votes}
    version_of = {a.interaction_id: VersionKey(a.model, a.model_version) for a in answers if a.interaction_id in voted}
    counts: dict[VersionKey, tuple[int, int]] = {}
    for vote in votes:
        sign, version = approval_of(vote), version_of.get(vote.interaction_id)
        if sign and version is not None:
            up, down = counts.get(version, (0, 0))
            counts[version] = (up + 1, down) if sign > 0 else (up, down + 1)
    return counts


@dataclass(frozen=True)
class GroupApproval:
    """A decided group's approval per version before and after the batch, and its routed domain now."""

    prompt_key: str
    app_id: str
    domain: str
    before: dict[VersionKey, tuple[int, int]]
    after: dict[VersionKey, tuple[int, int]]


@dataclass
class BoardChanges:
    """What the decided groups of one batch did to approval (gathered in the decide loop)."""

    groups: list[GroupApproval] = field(default_factory=list)

    def add_group(
        self,
        group: Group,
        before: Mapping[str, Vote],
        after: Mapping[str, Vote],
        routing: RoutingRules,
        *,
        domain: str | None = None,
    ) -> None:
        """A decided group: its latest votes per slot before and after this batch.

        Every decided group is listed, with or without votes, so every group of the state gets its
        counted domain (a group without one is what the backfill looks for). `domain`: the group's routed
        domain if the caller has it (outputs.group_domain), else routed here.
        """
        if domain is None:
            domain = route_domain((a.domain for a in group.answers), group.prompt, routing)
        old = version_approvals(before.values(), group.answers)
        new = version_approvals(after.values(), group.answers)
        self.groups.append(GroupApproval(group.prompt_key, group.app_id, domain, old, new))


def _add(deltas: dict[ApprovalKey, tuple[int, int]], app_id: str, domain: str, counts: Mapping, sign: int) -> None:
    for version, (up, down) in counts.items():
        key = ApprovalKey(app_id, domain, version)
        held_up, held_down = deltas.get(key, (0, 0))
        deltas[key] = (held_up + sign * up, held_down + sign * down)


def approval_changes(
    groups: Sequence[GroupApproval], counted_domains: Mapping[str, str]
) -> tuple[dict[ApprovalKey, tuple[int, int]], dict[str, tuple[str, str]]]:
    """Count changes (non-zero only) and the (app_id, domain) each group is now counted under.

    `counted_domains`: prompt_key -> the domain a group's votes are counted under (absent: never counted).
    """
    deltas: dict[ApprovalKey, tuple[int, int]] = {}
    domains: dict[str, tuple[str, str]] = {}
    for g in groups:
        counted = counted_domains.get(g.prompt_key)
        if counted is not None:
            _add(deltas, g.app_id, counted, g.before, -1)
        _add(deltas, g.app_id, g.domain, g.after, +1)
        if counted != g.domain:
            domains[g.prompt_key] = (g.app_id, g.domain)
    return {key: d for key, d in deltas.items() if d != (0, 0)}, domains


def boards_of(battles: Iterable[BattleKey], approvals: Iterable[ApprovalKey]) -> list[BoardKey]:
    """The boards these counts belong to (each app's whole board and the domain's), sorted."""
    boards: set[BoardKey] = set()
    for key in [*battles, *approvals]:
        boards.update((BoardKey(key.app_id), BoardKey(key.app_id, key.domain)))
    return sorted(boards)
