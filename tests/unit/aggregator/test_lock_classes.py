"""Two-key advisory locks of different kinds never share a class: a domain could otherwise wait on a voter."""

from services.aggregator.budget_store import DOMAIN_LOCK_CLASS
from services.aggregator.leaderboard_store import BOARD_LOCK_CLASS
from services.aggregator.voter_store import VOTER_LOCK_CLASS


def test_each_kind_of_two_key_lock_has_a_class_of_its_own() -> None:
    classes = [BOARD_LOCK_CLASS, DOMAIN_LOCK_CLASS, VOTER_LOCK_CLASS]
    assert len(set(classes)) == len(classes)
