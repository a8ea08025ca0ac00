"""The outlier test on bench.quality's traffic, replayed vote by vote through the aggregator's pure core.

bench.simulation.replay runs what the pipeline does per batch, one vote a batch, with no broker or
database, so the flag latency bench/results/quality.md measures on the running stack is pinned here on
bench.quality's own scenario (seeds 1 to 3, the default size). Issue 11 asks for each bot and contrarian
within 20 votes. Every contrarian is. An always-👍 bot is evidence against itself only where it 👍 an
answer the crowd rejects, and seed 1's third bot had 5 such tested votes in its first 23: the replay's
`bound` shows that no test which never counts agreement against a voter could flag it before its 23rd
vote at this significance. So bots are held to 20 or their bound, whichever is later.
"""

from __future__ import annotations

import pytest

from bench.quality import LATENCY_GOAL, parse_args, scenario_of
from bench.simulate import VoterKind
from bench.simulation.replay import Replay, bound, hindsight_bound, replay
from services.aggregator.voters import Observation, VoterRules

RULES = VoterRules()


@pytest.fixture(scope="module", params=[1, 2, 3])
def replayed(request: pytest.FixtureRequest) -> Replay:
    return replay(scenario_of(parse_args(["--seed", str(request.param)])), RULES)


def test_every_contrarian_within_the_goal_and_no_honest_voter_flagged(replayed: Replay) -> None:
    contrarians = [replayed.flagged_after(voter) or 10**6 for voter in replayed.voters(VoterKind.CONTRARIAN)]
    assert len(contrarians) == 3 and max(contrarians) <= LATENCY_GOAL, contrarians
    honest = [voter for voter in replayed.voters(VoterKind.HONEST) if voter in replayed.states]
    assert sum(replayed.states[voter].flagged for voter in honest) < 0.01 * len(honest)


def test_every_bot_within_the_goal_or_its_bound_and_never_before_the_bound(replayed: Replay) -> None:
    for voter in replayed.voters(VoterKind.BOT):
        flagged_after = replayed.flagged_after(voter)
        earliest = bound(replayed.tested[voter], RULES.significance)
        assert flagged_after is not None and earliest is not None, (flagged_after, earliest)
        # Our test is one of the tests the bound is about: flagging sooner would mean the bound is wrong.
        assert earliest <= flagged_after <= max(LATENCY_GOAL, earliest), (flagged_after, earliest)


def test_seed_1s_slowest_bot_is_at_its_bound() -> None:
    """The miss of the issue's goal, as measured: the bound itself is past 20."""
    replayed = replay(scenario_of(parse_args(["--seed", "1"])), RULES)
    bots = replayed.voters(VoterKind.BOT)
    slowest = max(bots, key=lambda voter: replayed.flagged_after(voter) or 10**6)
    assert replayed.flagged_after(slowest) == bound(replayed.tested[slowest], RULES.significance) > LATENCY_GOAL


def test_the_bound_is_the_product_of_one_over_d_on_disagreements_only() -> None:
    agree, disagree = Observation(False, 0.1), Observation(True, 0.1)
    # 1/0.1 twice is 100: enough at significance 0.01, agreements (and their position) change nothing.
    assert bound([(1, disagree), (2, agree), (3, agree), (4, disagree)], 0.01) == 4
    assert bound([(1, disagree), (2, agree)], 0.01) is None
    assert bound([(1, agree)] * 50, 0.5) is None


def test_the_hindsight_bound_is_the_best_constant_rate_bet_afterwards() -> None:
    disagree, agree = Observation(True, 0.5), Observation(False, 0.5)
    # All disagreements at d = 1/2: the best rate is 0.99, log(1.98) a vote; 100 needs 7 votes.
    assert hindsight_bound([(n, disagree) for n in range(1, 20)], 0.01) == 7
    # Half of them agreeing: the best rate is 1/2, the null itself: never.
    assert hindsight_bound([(n, disagree if n % 2 else agree) for n in range(1, 40)], 0.01) is None
