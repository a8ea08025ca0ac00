"""The traffic simulator, pure: determinism, sizes, how each kind of voter behaves, timestamps, the wire contract."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from bench.simulate import (
    Scenario,
    Simulation,
    VersionSpec,
    VoterKind,
    generate,
    latest_per_key,
    ranking_agreement,
    score_pairs,
    ticks,
)
from shared.events import parse_interaction, parse_vote

SCENARIO = Scenario(
    seed=7, prompts=80, honest_users=60, honest_votes=700, bots=2, contrarians=2, stuffers=1, brigades=1,
    brigade_size=12,
)  # fmt: skip


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return generate(SCENARIO)


def votes_of(sim: Simulation, kind: VoterKind) -> dict[str, list[dict]]:
    by_voter: dict[str, list[dict]] = defaultdict(list)
    for event in sim.events:
        if event.kind == "vote" and sim.truth.voters[(event.body["app_id"], event.body["user_ref"])].kind == kind:
            by_voter[event.body["user_ref"]].append(event.body)
    return by_voter


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_events(sim: Simulation) -> None:
    assert generate(SCENARIO).stream_bytes() == sim.stream_bytes()
    other = generate(Scenario(**{**vars(SCENARIO), "seed": 8}))
    assert other.stream_bytes() != sim.stream_bytes()
    ids = {e.body["event_id"] for e in sim.events}
    assert not ids & {e.body["event_id"] for e in other.events}
    tagged = generate(Scenario(**{**vars(SCENARIO), "tag": "run2-"}))
    assert not ids & {e.body["event_id"] for e in tagged.events}
    assert len(ids) == len(sim.events)


def test_every_event_is_valid_on_the_wire(sim: Simulation) -> None:
    for event in sim.events:
        parsed = (parse_interaction if event.kind == "interaction" else parse_vote)(event.body)
        assert str(parsed.event_id) == event.body["event_id"]
        assert parsed.received_at is None


def test_sizes_match_the_scenario(sim: Simulation) -> None:
    counts = sim.counts()
    s = SCENARIO
    assert s.prompts * s.min_answers <= counts["interactions"] <= s.prompts * s.max_answers
    assert counts["interactions"] == len(sim.truth.answers)
    assert counts["votes_honest"] == s.honest_votes
    assert counts["votes_bot"] == s.bots * s.bot_votes
    assert counts["votes_contrarian"] == s.contrarians * s.contrarian_votes
    assert counts["votes_stuffer"] == s.stuffers * s.stuff_repeats
    assert counts["votes_brigade"] == s.brigades * s.brigade_size * 2
    kinds = Counter(v.kind for v in sim.truth.voters.values())
    assert kinds[VoterKind.HONEST] == s.honest_users + len(s.apps)  # the users, and one asker per app
    assert (kinds[VoterKind.BOT], kinds[VoterKind.CONTRARIAN]) == (s.bots, s.contrarians)
    assert (kinds[VoterKind.STUFFER], kinds[VoterKind.BRIGADE]) == (s.stuffers, s.brigades * s.brigade_size)


def test_groups_have_regenerations_and_ab_answers_of_known_quality(sim: Simulation) -> None:
    interactions = {e.body["interaction_id"]: e.body for e in sim.events if e.kind == "interaction"}
    regenerations = [b for b in interactions.values() if b["regenerated_from"]]
    assert regenerations
    for body in regenerations:
        parent = interactions[body["regenerated_from"]]
        assert parent["messages"] == body["messages"]
        assert parent["response"]["model_version"] == body["response"]["model_version"]
    mixed = [g for g in sim.truth.groups.values() if len({sim.truth.answers[i].model_version for i in g}) > 1]
    assert mixed, "no A/B group"
    for group in sim.truth.groups.values():
        assert len({interactions[i]["response"]["content"] for i in group}) == len(group)
        assert len({tuple(m["content"] for m in interactions[i]["messages"]) for i in group}) == 1
    assert sim.truth.version_ranking() == ["2026-11-01", "2026-10-15", "2026-09-30"]
    good_share = {
        version: sum(a.is_good for a in sim.truth.answers.values() if a.model_version == version)
        / max(1, sum(1 for a in sim.truth.answers.values() if a.model_version == version))
        for version in sim.truth.versions
    }
    assert good_share["2026-11-01"] > good_share["2026-09-30"]


def test_honest_users_mostly_agree_with_the_truth(sim: Simulation) -> None:
    agree = total = 0
    for bodies in votes_of(sim, VoterKind.HONEST).values():
        for body in bodies:
            if body["kind"] == "thumb":
                total += 1
                agree += (body["value"] == 1) == sim.truth.answers[body["interaction_id"]].is_good
    assert total > 400 and 0.75 < agree / total < 0.95
    kinds = Counter(b["kind"] for bodies in votes_of(sim, VoterKind.HONEST).values() for b in bodies)
    assert kinds["rating"] and kinds["comparison"] and kinds["thumb"] > kinds["rating"] + kinds["comparison"]
    for bodies in votes_of(sim, VoterKind.HONEST).values():
        slots = [(b["interaction_id"], b.get("other_interaction_id")) for b in bodies]
        assert len(slots) == len(set(slots)), "an honest user votes once per answer"


def test_bots_approve_everything_and_contrarians_vote_against_the_truth(sim: Simulation) -> None:
    for bodies in votes_of(sim, VoterKind.BOT).values():
        assert {(b["kind"], b["value"]) for b in bodies} == {("thumb", 1)}
        assert len({b["interaction_id"] for b in bodies}) == len(bodies)
    agree = total = 0
    for bodies in votes_of(sim, VoterKind.CONTRARIAN).values():
        for body in bodies:
            total += 1
            agree += (body["value"] == 1) == sim.truth.answers[body["interaction_id"]].is_good
    assert agree / total < 0.3


def test_a_stuffer_repeats_one_vote_and_a_brigade_pushes_a_bad_answer_over_a_good_one(sim: Simulation) -> None:
    ((_, bodies),) = votes_of(sim, VoterKind.STUFFER).items()
    assert len(bodies) == SCENARIO.stuff_repeats
    assert {(b["interaction_id"], b["value"]) for b in bodies} == {(sim.truth.targets[VoterKind.STUFFER][0], 1)}
    assert len({b["event_id"] for b in bodies}) == len(bodies)
    assert not sim.truth.answers[bodies[0]["interaction_id"]].is_good
    brigade = votes_of(sim, VoterKind.BRIGADE)
    assert len(brigade) == SCENARIO.brigade_size
    (target,) = sim.truth.targets[VoterKind.BRIGADE]
    for bodies in brigade.values():
        pushed = {b["interaction_id"]: b["value"] for b in bodies}
        assert pushed.pop(target) == 1 and not sim.truth.answers[target].is_good
        ((rival, value),) = pushed.items()
        assert value == -1 and sim.truth.better(target, rival) == rival


def test_time_moves_forward_and_nothing_is_reported_from_the_future(sim: Simulation) -> None:
    sends = [e.send_s for e in sim.events]
    assert sends == sorted(sends)
    for event in sim.events:
        occurred = datetime.fromisoformat(event.body["occurred_at"])
        assert occurred == SCENARIO.start + timedelta(seconds=event.at_s)
        assert 0 <= event.at_s <= event.send_s
    now = datetime.now(UTC)
    rebased = sim.rebased(now - timedelta(seconds=sim.span_s()))
    assert max(datetime.fromisoformat(e.body["occurred_at"]) for e in rebased) <= now
    assert [e.body["event_id"] for e in rebased] == [e.body["event_id"] for e in sim.events]


def test_votes_follow_their_interactions_except_a_few_early_ones(sim: Simulation) -> None:
    sent_at = {e.body["interaction_id"]: e.send_s for e in sim.events if e.kind == "interaction"}
    created_at = {e.body["interaction_id"]: e.at_s for e in sim.events if e.kind == "interaction"}
    votes = [e for e in sim.events if e.kind == "vote"]
    early = 0
    for vote in votes:
        targets = [vote.body["interaction_id"], vote.body.get("other_interaction_id")]
        for target in filter(None, targets):
            assert created_at[target] <= vote.at_s, "a vote on an answer not given yet"
        early += any(sent_at[t] > vote.send_s for t in filter(None, targets))
    assert 0 < early < 0.1 * len(votes)
    for vote in votes:
        if vote.body["kind"] == "comparison":
            a, b = vote.body["preferred_interaction_id"], vote.body["other_interaction_id"]
            assert sim.truth.answers[a].group == sim.truth.answers[b].group


def test_ticks_send_each_event_once_never_before_its_time(sim: Simulation) -> None:
    seen = []
    for due, interactions, votes in ticks(sim.events):
        assert all(e.send_s <= due for e in interactions + votes)
        assert all(e.kind == "interaction" for e in interactions) and all(e.kind == "vote" for e in votes)
        seen += interactions + votes
    assert sorted(e.body["event_id"] for e in seen) == sorted(e.body["event_id"] for e in sim.events)


def test_a_scenario_sized_by_rate_offers_about_rate_times_seconds() -> None:
    scenario = Scenario.for_rate(100, 30, seed=2, bots=1)
    total = sum(generate(scenario).counts()[k] for k in ("interactions", "votes"))
    assert 0.85 * 3000 < total < 1.15 * 3000
    assert scenario.duration_s == 30


def test_scoring_keeps_the_latest_pair_per_key_and_splits_by_method(sim: Simulation) -> None:
    truth = sim.truth
    group = next(g for g in truth.groups.values() if len({truth.answers[i].is_good for i in g}) == 2)
    good = next(i for i in group if truth.answers[i].is_good)
    bad = next(i for i in group if not truth.answers[i].is_good)
    same = next(g for g in truth.groups.values() if len(g) > 1 and len({truth.answers[i].is_good for i in g}) == 1)

    def pair(chosen: str, rejected: str, method: str) -> bytes:
        return (
            f'{{"chosen": {{"interaction_id": "{chosen}"}}, "rejected": {{"interaction_id": "{rejected}"}},'
            f' "method": "{method}"}}'
        ).encode()

    records = [
        (b"p1", pair(bad, good, "votes")),
        (b"p1", pair(good, bad, "votes")),  # a flip: the latest wins
        (b"p2", pair(bad, good, "comparison")),
        (b"p3", pair(good, bad, "expert")),
        (b"p3", None),  # retracted
        (b"p4", pair(same[0], same[1], "votes")),
        (b"p5", pair("elsewhere-1", "elsewhere-2", "votes")),
    ]
    live = latest_per_key(records)
    assert set(live) == {"p1", "p2", "p4", "p5"}
    score = score_pairs(live, truth)
    assert (score.by_method["votes"].scored, score.by_method["votes"].agree) == (1, 1)
    assert score.by_method["comparison"].accuracy == 0.0
    assert (score.unscored, score.foreign, score.overall.published) == (1, 1, 4)
    assert score.overall.accuracy == 0.5


def test_ranking_agreement_compares_an_observed_order_with_the_true_one(sim: Simulation) -> None:
    truth_order = sim.truth.version_ranking()
    assert ranking_agreement(sim.truth, truth_order) == pytest.approx(1.0)
    assert ranking_agreement(sim.truth, truth_order[::-1]) == pytest.approx(-1.0)


def test_a_version_released_during_the_run_answers_only_prompts_asked_after_its_release() -> None:
    versions = (VersionSpec("chat", "v1", 0.8), VersionSpec("chat", "v2", 0.3, released_at_s=30.0))
    late = generate(Scenario(seed=3, prompts=60, honest_votes=50, versions=versions, duration_s=60.0))
    firsts: dict[str, float] = {}
    for event in late.events:
        if event.kind == "interaction":
            version = event.body["response"]["model_version"]
            firsts[version] = min(firsts.get(version, event.at_s), event.at_s)
    assert set(firsts) == {"v1", "v2"}
    assert firsts["v1"] < 30.0 <= firsts["v2"]  # v2's first answer after its release: the alarm's release order
