"""store.RecentlyUsed: the values last used, within a budget of weight."""

from __future__ import annotations

from services.aggregator.store import RecentlyUsed


def test_the_least_recently_used_go_first_when_the_weight_is_over_the_budget() -> None:
    cache: RecentlyUsed[str, str] = RecentlyUsed(10, len)
    for key in "abc":
        cache.put(key, key * 3)  # 9 of 10
    assert cache.get("a") == "aaa"  # a is now the latest used
    cache.put("d", "dd")  # 11: b, the least recently used, goes
    assert (cache.get("b"), cache.get("a"), cache.get("c"), cache.get("d")) == (None, "aaa", "ccc", "dd")
    assert (len(cache), cache.weight) == (3, 8)
    cache.put("a", "a")  # replacing a value replaces its weight
    assert cache.weight == 6


def test_a_value_heavier_than_the_budget_is_kept_alone() -> None:
    cache: RecentlyUsed[str, str] = RecentlyUsed(4, len)
    cache.put("a", "aa")
    cache.put("big", "x" * 9)
    assert (cache.get("a"), cache.get("big"), len(cache)) == (None, "x" * 9, 1)
