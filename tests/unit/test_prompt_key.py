"""prompt_key: the same prompt lands in one group, a different one does not."""

from __future__ import annotations

from hypothesis import given
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


@given(st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=100))
def test_key_is_stable_hex(text: str) -> None:
    key = prompt_key("app", msgs(("user", text)))
    assert key == prompt_key("app", msgs(("user", text)))
    assert len(key) == 32 and int(key, 16) >= 0
