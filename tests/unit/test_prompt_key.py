"""prompt_key: the same prompt lands in one group, a different one does not."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.events import Message
from shared.prompt_key import normalize_text, prompt_key


def msgs(*pairs: tuple[str, str]) -> list[Message]:
    return [Message(role=role, content=content) for role, content in pairs]


def test_whitespace_and_unicode_forms_do_not_split_a_group() -> None:
    base = prompt_key("app", msgs(("user", "Café au lait?")))
    assert prompt_key("app", msgs(("user", "  Café   au\nlait? "))) == base
    assert prompt_key("app", msgs(("user", "Cafe\u0301 au lait?"))) == base  # decomposed accent
    assert prompt_key("app", msgs(("user", "Ｃａｆé au lait?"))) == base  # full-width letters


def test_different_prompts_apps_and_roles_differ() -> None:
    base = prompt_key("app", msgs(("user", "hello")))
    assert prompt_key("other-app", msgs(("user", "hello"))) != base
    assert prompt_key("app", msgs(("user", "hello!"))) != base
    assert prompt_key("app", msgs(("system", "hello"))) != base
    assert prompt_key("app", msgs(("user", "Hello"))) != base, "case is meaningful"
    assert prompt_key("app", msgs(("system", "be brief"), ("user", "hello"))) != base


def test_message_boundaries_matter() -> None:
    assert prompt_key("a", msgs(("user", "a b"))) != prompt_key("a", msgs(("user", "a"), ("user", "b")))


@given(st.text(max_size=200), st.sampled_from([" ", "\n", "\t", "  \r\n"]))
def test_normalization_is_idempotent_and_ignores_padding(text: str, pad: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert normalize_text(pad + text + pad) == once


@given(st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=100), st.sampled_from([" ", "\n\t"]))
def test_key_is_32_hex_digits_and_depends_only_on_the_normalized_text(text: str, pad: str) -> None:
    key = prompt_key("app", msgs(("user", text)))
    assert re.fullmatch(r"[0-9a-f]{32}", key), key
    assert prompt_key("app", msgs(("user", pad + normalize_text(text) + pad))) == key


TEXTS = st.text(st.characters(exclude_characters="\x00"), max_size=50)


@given(TEXTS, TEXTS)
def test_prompts_that_normalize_apart_get_different_keys(first: str, second: str) -> None:
    assume(normalize_text(first) != normalize_text(second))
    assert prompt_key("app", msgs(("user", first))) != prompt_key("app", msgs(("user", second)))


@pytest.mark.parametrize(
    ("app_id", "messages", "key"),
    [
        (
            "helpdesk",
            (("user", "Can diabetic patients do intense exercise?"),),
            "a81f11d6ee09eec8afd240072ee6dd15",
        ),
        ("app", (("system", "be brief"), ("user", "hello")), "34c7318fafcd9c2e26e1c43f8f33a465"),
    ],
)
def test_keys_are_stable_across_releases(app_id: str, messages: tuple[tuple[str, str], ...], key: str) -> None:
    """Keys already on the topics and in the database must not change: a new one would split every group."""
    assert prompt_key(app_id, msgs(*messages)) == key


WHITESPACE = [chr(c) for c in range(0x3100) if re.match(r"\s", chr(c))]


@given(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(WHITESPACE)), max_size=30))
def test_normalization_equals_the_regex_it_replaced(parts: list[str]) -> None:
    """The keys published before stay the keys: split/join is the regex `\\s+` -> " " and strip, for every text."""
    import unicodedata

    text = "".join(parts)
    regex = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()
    assert normalize_text(text) == regex


def test_the_whitespace_str_split_knows_is_the_whitespace_the_regex_knew() -> None:
    import sys

    regex = [c for c in range(sys.maxunicode + 1) if re.match(r"\s", chr(c))]
    split = [c for c in range(sys.maxunicode + 1) if len(f"a{chr(c)}b".split()) == 2]
    assert regex == split
    assert max(regex) < 0x3100, "every whitespace character is in the property test's alphabet"
