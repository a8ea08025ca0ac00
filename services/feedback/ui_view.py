"""What the annotator web UI shows, as pure functions: which answer goes left, the word diff, the guidelines.

- Sides: a task's two answers are shown left and right in an order drawn per (task, annotator) from a
  hash, so it is random across tasks and annotators (position bias averages out and can be measured:
  see position_bias.py) yet stable for one annotator (a reload or a re-lease shows the same order).
  A rewrite task has one answer, A, shown alone: its side is always "A".
- Word diff: the two answers split into words (each keeping the whitespace after it), aligned with
  difflib's SequenceMatcher on the words themselves, so a changed line break or double space is not
  a difference. Each side comes back as segments `{"text", "changed"}` whose texts join to exactly
  that answer, so the page renders the full answer from them and marks the changed words; the
  whitespace after a changed run stays unmarked. Answers longer than a limit get no diff (None).
- Guidelines: CommonMark plus tables, rendered by markdown-it-py with raw HTML off (a `<script>` in a
  guidelines file shows as text) and links opening in a new tab, so the task on screen stays put.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from markdown_it import MarkdownIt

Side = Literal["A", "B"]
# A word and the whitespace after it; leading whitespace of a text is a token of its own.
_TOKEN = re.compile(r"\s+|\S+\s*")
# Beyond this many words on either side, difflib's alignment gets slow (it is quadratic at worst).
MAX_DIFF_WORDS = 15_000


def shown_left(task_id: str, annotator_id: str, kind: str) -> Side:
    """The task side shown on the screen's left for this annotator (stable, evenly split over tasks)."""
    if kind == "rewrite":
        return "A"
    digest = hashlib.sha256(f"{task_id}\x1f{annotator_id}".encode()).digest()
    return "A" if digest[0] & 1 == 0 else "B"


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    changed: bool

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "changed": self.changed}


def words(text: str) -> list[str]:
    """The text as tokens whose concatenation is the text: words with their trailing whitespace."""
    return _TOKEN.findall(text)


def _segments(tokens: Sequence[str], flags: Sequence[bool]) -> list[Segment]:
    """Merge neighbouring tokens with the same flag; whitespace that ends a changed run is unchanged."""
    pieces: list[tuple[str, bool]] = []
    for i, (token, changed) in enumerate(zip(tokens, flags, strict=True)):
        is_run_end = changed and (i + 1 == len(tokens) or not flags[i + 1])
        body = token.rstrip() if is_run_end else token
        pieces += [(body, changed), (token[len(body) :], False)]
    out: list[Segment] = []
    for text, changed in pieces:
        if not text:
            continue
        if out and out[-1].changed == changed:
            out[-1] = Segment(out[-1].text + text, changed)
        else:
            out.append(Segment(text, changed))
    return out


def word_diff(left: str, right: str, max_words: int = MAX_DIFF_WORDS) -> dict[str, Any] | None:
    """Both texts as segments with changed words marked, and their word similarity (0..1); None if too long."""
    left_tokens, right_tokens = words(left), words(right)
    if max(len(left_tokens), len(right_tokens)) > max_words:
        return None
    left_keys = [t.strip() for t in left_tokens]
    right_keys = [t.strip() for t in right_tokens]
    matcher = difflib.SequenceMatcher(None, left_keys, right_keys, autojunk=False)
    left_changed = [True] * len(left_tokens)
    right_changed = [True] * len(right_tokens)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            left_changed[block.a + offset] = False
            right_changed[block.b + offset] = False
    # Whitespace-only tokens (leading space) are never a difference on their own.
    for tokens, flags in ((left_tokens, left_changed), (right_tokens, right_changed)):
        for i, token in enumerate(tokens):
            if not token.strip():
                flags[i] = False
    return {
        "left": [s.to_json() for s in _segments(left_tokens, left_changed)],
        "right": [s.to_json() for s in _segments(right_tokens, right_changed)],
        "similarity": round(matcher.ratio(), 3),
    }


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("target", "_blank")
        tokens[idx].attrSet("rel", "noopener noreferrer")
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


_MD = _markdown()


def render_guidelines(markdown: str) -> str:
    """Guidelines markdown as HTML; raw HTML in the source is escaped, never passed through."""
    return _MD.render(markdown)
