"""The leaderboard's incremental counts: what battles and approval a batch adds equals a recount of the final state."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.leaderboard import VersionKey
from services.aggregator.leaderboard_counts import (
    ApprovalKey,
    BattleKey,
    BoardChanges,
    BoardKey,
    GroupApproval,
    approval_changes,
    battle_changes,
    battle_of,
    boards_of,
    version_approvals,
)
from services.aggregator.outputs import RETRACTED, PairRow
from services.aggregator.pairs import EDIT_MODEL, EDIT_MODEL_VERSION
from services.aggregator.rules import routing_rules
from services.aggregator.settings import AggregatorSettings
from tests.strategies import T0, answer, group_of, rating, thumb

V1, V2, V3 = VersionKey("acme-chat", "v1"), VersionKey("acme-chat", "v2"), VersionKey("acme-mini", "m1")
ROUTING = routing_rules(AggregatorSettings())


def side(version: VersionKey, interaction_id: str) -> dict:
    return {"interaction_id": interaction_id, "content": interaction_id, **version_ref(version)}


def version_ref(version: VersionKey) -> dict:
    return {"model": version.model, "model_version": version.model_version}


def pair(chosen: VersionKey, rejected: VersionKey, domain: str = "general", app_id: str = "app") -> dict:
    return {"app_id": app_id, "domain": domain, "chosen": side(chosen, "a"), "rejected": side(rejected, "b")}


def row(pair_id: str, value: dict | None) -> PairRow:
    return PairRow(pair_id, RETRACTED if value is None else f"hash-{hash(str(value))}", value)


def test_a_battle_is_a_live_pair_between_two_versions_the_chosen_winning() -> None:
    assert battle_of(pair(V1, V2)) == BattleKey("app", "general", V1, V2)
    assert battle_of(pair(V3, V1, domain="medical")) == BattleKey("app", "medical", V3, V1)
    assert battle_of(pair(V1, V1)) is None  # a regeneration by the same version
    edit = VersionKey(EDIT_MODEL, EDIT_MODEL_VERSION)
    assert battle_of(pair(edit, V1)) is None  # a human side
    assert battle_of(pair(VersionKey("expert", "annotator"), V2)) is None
    assert battle_of(None) is None  # retracted


def test_first_emission_adds_a_flip_moves_a_retraction_removes_a_replay_changes_nothing() -> None:
    first, now = battle_changes({}, [row("p", pair(V1, V2))])
    assert first == {BattleKey("app", "general", V1, V2): 1}
    stored = {"p": now["p"]}
    assert battle_changes(stored, [row("p", pair(V1, V2))])[0] == {}  # replay, or a new confidence
    flip, now = battle_changes(stored, [row("p", pair(V2, V1))])
    assert flip == {BattleKey("app", "general", V1, V2): -1, BattleKey("app", "general", V2, V1): 1}
    gone, now = battle_changes({"p": now["p"]}, [row("p", None)])
    assert gone == {BattleKey("app", "general", V2, V1): -1} and now == {"p": None}


pair_states = st.sampled_from(
    [None, pair(V1, V2), pair(V2, V1), pair(V1, V3, "medical"), pair(V1, V1), pair(V3, V2, app_id="other")]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from("pqrs"), pair_states), max_size=4), max_size=12))
def test_incremental_battle_counts_equal_a_recount_of_the_live_pairs(batches: list) -> None:
    counts: Counter[BattleKey] = Counter()
    stored: dict[str, BattleKey] = {}
    live: dict[str, dict | None] = {}
    for batch in batches:
        rows = [row(pid, value) for pid, value in dict(batch).items()]  # one row per pair_id in a batch
        deltas, now = battle_changes(stored, rows)
        counts.update(deltas)
        for pid, key in now.items():
            if key is None:
                stored.pop(pid, None)
            else:
                stored[pid] = key
        live.update((r.pair_id, r.pair) for r in rows)
    recount = Counter(key for key in map(battle_of, live.values()) if key is not None)
    assert +counts == recount and all(n >= 0 for n in counts.values())


def test_version_approvals_count_latest_votes_ratings_as_thumbs() -> None:
    a, b = answer("int-a", model_version="v1"), answer("int-b", model_version="v2")
    votes = [thumb("u1", "int-a", 1), thumb("u2", "int-a", -1), rating("u3", "int-b", 5), rating("u4", "int-b", 3)]
    votes.append(thumb("u5", "int-unknown", 1))
    assert version_approvals(votes, [a, b]) == {V1: (1, 1), V2: (1, 0)}


def group_approval(key: str, domain: str, before: dict, after: dict) -> GroupApproval:
    return GroupApproval(key, "app", domain, before, after)


def test_a_group_is_counted_whole_moved_when_its_domain_changes_and_added_when_never_counted() -> None:
    before, after = {V1: (2, 1)}, {V1: (3, 1), V2: (0, 1)}
    same, domains = approval_changes([group_approval("g", "general", before, after)], {"g": "general"})
    assert same == {ApprovalKey("app", "general", V1): (1, 0), ApprovalKey("app", "general", V2): (0, 1)}
    assert domains == {}
    moved, domains = approval_changes([group_approval("g", "medical", before, after)], {"g": "general"})
    assert moved[ApprovalKey("app", "general", V1)] == (-2, -1)
    assert moved[ApprovalKey("app", "medical", V1)] == (3, 1) and domains == {"g": ("app", "medical")}
    new, domains = approval_changes([group_approval("g", "general", before, after)], {})
    assert new[ApprovalKey("app", "general", V1)] == (3, 1) and domains == {"g": ("app", "general")}


approval_states = st.dictionaries(
    st.sampled_from([V1, V2, V3]), st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=3
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("gh"), st.sampled_from(["general", "medical"]), approval_states)))
def test_incremental_approval_counts_equal_a_recount_of_the_final_group_states(steps: list) -> None:
    counts: dict[ApprovalKey, list[int]] = {}
    counted: dict[str, str] = {}
    state: dict[str, tuple[str, dict]] = {}
    for key, domain, after in steps:
        before = state.get(key, ("", {}))[1]
        deltas, domains = approval_changes([group_approval(key, domain, before, after)], counted)
        for k, (up, down) in deltas.items():
            held = counts.setdefault(k, [0, 0])
            held[0], held[1] = held[0] + up, held[1] + down
        counted.update((k, d) for k, (_, d) in domains.items())
        state[key] = (domain, after)
    recount: dict[ApprovalKey, list[int]] = {}
    for domain, after in state.values():
        for version, (up, down) in after.items():
            held = recount.setdefault(ApprovalKey("app", domain, version), [0, 0])
            held[0], held[1] = held[0] + up, held[1] + down
    assert {k: v for k, v in counts.items() if v != [0, 0]} == {k: v for k, v in recount.items() if v != [0, 0]}


def test_board_changes_list_every_decided_group_with_its_routed_domain() -> None:
    a = answer("int-a")
    votes = [thumb("u1", "int-a", 1), thumb("u1", "int-a", -1, T0 + timedelta(seconds=1))]
    changes = BoardChanges()
    changes.add_group(group_of([a], []), {}, {}, ROUTING)
    changes.add_group(group_of([replace(a, domain="legal")], votes), {}, {"s": votes[1]}, ROUTING)
    assert [(g.domain, g.before, g.after) for g in changes.groups] == [("general", {}, {}), ("legal", {}, {V1: (0, 1)})]


def test_boards_are_the_apps_and_their_domains() -> None:
    battles = [BattleKey("app", "medical", V1, V2)]
    approvals = [ApprovalKey("app", "general", V1), ApprovalKey("other", "general", V1)]
    assert boards_of(battles, approvals) == [
        BoardKey("app"),
        BoardKey("app", "general"),
        BoardKey("app", "medical"),
        BoardKey("other"),
        BoardKey("other", "general"),
    ]
    assert BoardKey("app").topic_key == "app" and BoardKey("app", "medical").topic_key == "app/medical"
