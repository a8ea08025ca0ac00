"""The prompt key: which answers are answers to the same prompt (one group, one partition)."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable
from typing import Protocol

import orjson


class _MessageLike(Protocol):
    role: str
    content: str


def normalize_text(text: str) -> str:
    """NFKC-normalize, collapse every whitespace run to one space, strip the ends.

    Case is kept: "Paris" and "paris" may be different questions; width, composed/decomposed
    accents and stray spaces or newlines are not. `str.split()` splits at the characters `\\s` matches
    (both use Python's Unicode whitespace), so this equals `re.sub(r"\\s+", " ", ...).strip()`, at a
    quarter of its cost (a property test holds them equal).
    """
    return " ".join(unicodedata.normalize("NFKC", text).split())


def prompt_key(app_id: str, messages: Iterable[_MessageLike]) -> str:
    """Hash of app_id and the normalized messages: regenerations and identical prompts share it."""
    canonical = [app_id, [[m.role, normalize_text(m.content)] for m in messages]]
    try:
        payload = orjson.dumps(canonical)
    except orjson.JSONEncodeError:
        # Lone surrogates: orjson refuses them; the stdlib writes the same bytes otherwise.
        payload = json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()[:32]
