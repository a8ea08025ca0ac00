"""The annotator UI's pure parts: which side goes left, the word diff, the guidelines' markdown."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from services.feedback.ui_view import render_guidelines, shown_left, word_diff, words

WORDS = st.lists(st.sampled_from(["the", "dose", "is", "safe", "not", "ask", "a", "doctor", "3.4", "mmol/L", "\n"]))
SPACES = st.sampled_from([" ", "  ", "\n", "\n\n", "\t"])


@st.composite
def texts(draw: st.DrawFn) -> str:
    tokens = draw(WORDS)
    lead = draw(st.sampled_from(["", " ", "\n"]))
    return lead + "".join(t + draw(SPACES) for t in tokens)


def test_the_side_is_stable_per_task_and_annotator_and_both_sides_occur() -> None:
    assert shown_left("task-1", "alice", "compare") == shown_left("task-1", "alice", "compare")
    sides = Counter(shown_left(f"task-{i}", "alice", "compare") for i in range(2_000))
    assert 900 < sides["A"] < 1_100  # an even split, up to chance (4.5 standard deviations)
    per_annotator = {shown_left("task-1", f"ann-{i}", "compare") for i in range(20)}
    assert per_annotator == {"A", "B"}  # the same task goes either way for different annotators


def test_a_rewrite_task_always_shows_its_one_answer_as_a() -> None:
    assert {shown_left(f"t{i}", "alice", "rewrite") for i in range(50)} == {"A"}


def test_changed_words_are_marked_and_shared_ones_are_not() -> None:
    diff = word_diff("Check your glucose before training.", "Check your glucose only if unwell.")
    assert diff is not None
    assert diff["left"] == [
        {"text": "Check your glucose ", "changed": False},
        {"text": "before training.", "changed": True},
    ]
    assert diff["right"][-1] == {"text": "only if unwell.", "changed": True}
    assert 0 < diff["similarity"] < 1


def test_whitespace_and_line_breaks_alone_are_no_difference() -> None:
    diff = word_diff("one two\nthree", "one  two three\n")
    assert diff is not None
    assert all(not s["changed"] for s in diff["left"] + diff["right"])
    assert diff["similarity"] == 1.0


def test_answers_too_long_get_no_diff() -> None:
    assert word_diff("a " * 11, "b", max_words=10) is None
    assert word_diff("a " * 10, "b", max_words=10) is not None


@given(texts(), texts())
def test_segments_rebuild_each_answer_exactly_and_the_unmarked_words_agree(left: str, right: str) -> None:
    diff = word_diff(left, right)
    assert diff is not None
    assert "".join(s["text"] for s in diff["left"]) == left
    assert "".join(s["text"] for s in diff["right"]) == right
    kept_left = [w for s in diff["left"] if not s["changed"] for w in s["text"].split()]
    kept_right = [w for s in diff["right"] if not s["changed"] for w in s["text"].split()]
    assert kept_left == kept_right  # the unmarked words are a common subsequence, in order
    for segments in (diff["left"], diff["right"]):
        assert all(s["text"] for s in segments)
        assert all(a["changed"] != b["changed"] for a, b in pairwise(segments))
        assert all(not s["text"][-1].isspace() for s in segments if s["changed"])


@given(texts())
def test_words_rebuild_the_text(text: str) -> None:
    assert "".join(words(text)) == text


def test_guidelines_escape_raw_html_and_open_links_in_a_new_tab() -> None:
    html = render_guidelines('# Rules <script>alert(1)</script>\n\n<img src=x onerror="x()">\n\n[site](https://x.org)')
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;img" in html
    assert '<a href="https://x.org" target="_blank" rel="noopener noreferrer">site</a>' in html


def test_guidelines_refuse_javascript_links_and_render_tables() -> None:
    html = render_guidelines("[x](javascript:alert(1))\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "href" not in html.split("<table>")[0]
    assert "<td>1</td>" in html
