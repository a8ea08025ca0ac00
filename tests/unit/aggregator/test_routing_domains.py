"""The domain router matches as its rules say, one pattern at a time, whatever the matching machinery does."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.routing import GENERAL_DOMAIN, RoutingRules, parse_domain_rules, route_domain
from services.aggregator.settings import DEFAULT_DOMAIN_RULES
from shared.events import Message

SHIPPED = parse_domain_rules(json.loads(DEFAULT_DOMAIN_RULES.read_text()))
KEYWORDS = [p.pattern for rule in SHIPPED for p in rule.patterns]
TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=12)  # messages refuse NUL
WORDS = st.sampled_from(["insulin", "lawsuit", "python", "the", "my", "contract", "pain", "Diabetes", "x", "é"])


def one_pattern_at_a_time(text: str, rules: RoutingRules) -> str:
    """The reference: the first rule with a pattern that matches on its own."""
    for rule in rules.domain_rules:
        if any(pattern.search(text) for pattern in rule.patterns):
            return rule.domain
    return GENERAL_DOMAIN


def rules_of(domain_rules: tuple) -> RoutingRules:
    return RoutingRules(domain_rules=domain_rules, priority_step=0.1)


@given(words=st.lists(WORDS | TEXT, max_size=30), separator=st.sampled_from([" ", "-", "_", "\n", ""]))
def test_the_shipped_rules_route_as_each_pattern_would_alone(words: list[str], separator: str) -> None:
    rules = rules_of(SHIPPED)
    text = separator.join(words)
    prompt = [Message(role="user", content=text or ".")]
    assert route_domain([None], prompt, rules) == one_pattern_at_a_time(text or ".", rules)
    assert route_domain([None], prompt, rules) == route_domain([None], prompt, rules)  # cached or not, the same


def test_a_pattern_that_cannot_join_an_alternation_still_matches_alone() -> None:
    # A global inline flag is valid only at the start of an expression: such rules are searched one by one.
    rules = rules_of(parse_domain_rules({"rules": [{"domain": "legal", "patterns": ["(?s)court.order", "tort"]}]}))
    assert route_domain([None], [Message(role="user", content="a court\norder")], rules) == "legal"
    assert route_domain([None], [Message(role="user", content="tortoise")], rules) == "legal"  # a pattern, no \b
    assert route_domain([None], [Message(role="user", content="nothing here")], rules) == GENERAL_DOMAIN


def test_a_long_prompt_is_matched_without_the_cache_and_the_answers_own_domain_wins() -> None:
    rules = rules_of(SHIPPED)
    long_text = "word " * 5_000 + "insulin"
    assert route_domain([None], [Message(role="user", content=long_text)], rules) == one_pattern_at_a_time(
        long_text, rules
    )
    assert route_domain(["code", None], [Message(role="user", content="insulin")], rules) == "code"


def test_keywords_that_begin_alike_each_match_as_a_whole_word() -> None:
    rules = rules_of(parse_domain_rules({"rules": [{"domain": "code", "keywords": ["c", "c++", "go lang", "go"]}]}))
    for text, domain in [("I write c++ daily", "code"), ("cat", GENERAL_DOMAIN), ("go lang", "code"),
                         ("going", GENERAL_DOMAIN), ("in C.", "code"), ("golang", GENERAL_DOMAIN)]:  # fmt: skip
        prompt = [Message(role="user", content=text)]
        assert route_domain([None], prompt, rules) == one_pattern_at_a_time(text, rules) == domain, text


# Characters whose case matching is unusual (Kelvin sign, long s, dotted I, sharp s), regex specials, spaces.
ODD = st.sampled_from(["k", "K", "\u212a", "s", "S", "\u017f", "i", "I", "\u0130", "\u0131", "ß", "ẞ", "+", ".", "\\",
                       "(", "[", "^", "-", " ", "\n", "é", "É", "1"])  # fmt: skip
ODD_TEXT = st.text(ODD | st.characters(exclude_characters="\x00"), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    keywords=st.lists(ODD_TEXT.filter(bool), min_size=1, max_size=6),
    patterns=st.lists(st.sampled_from([r"\d+mg", "```", r"(?<!\w)(a|b)(?!\w)"]), max_size=2),
    data=st.data(),
    separator=st.sampled_from([" ", "", "-", "\n"]),
)
def test_any_keywords_match_as_each_pattern_would_alone(keywords, patterns, data, separator) -> None:
    # Keywords with any characters (the look-ahead of first characters must imply nothing new), and
    # patterns that look like keywords (a look-behind and a look-ahead around a group); texts made of
    # the keywords themselves (in other cases too), of what the patterns match, and of anything.
    rules = rules_of(parse_domain_rules({"rules": [{"domain": "one", "keywords": keywords, "patterns": patterns}]}))
    known = st.sampled_from([*keywords, *(k.swapcase() for k in keywords), "a", "b", "12mg"])
    text = separator.join(data.draw(st.lists(known | ODD_TEXT, max_size=8))) or "."
    expected = one_pattern_at_a_time(text, rules)
    assert route_domain([None], [Message(role="user", content=text)], rules) == expected
