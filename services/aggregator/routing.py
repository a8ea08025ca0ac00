"""The router, pure: which domain a group belongs to, and redaction for annotators.

Domain: the interaction's own `domain` (the first answer that has one), else the first rule of the
domain rules (keywords as whole words in any case, or regexes) matching the prompt, else `general`.
A task's priority is the expected value of an expert's answer (budget.task_priority), stepped by
`priority_step`. Text leaving for annotators goes through `shared.pii`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.events import Candidate, Message
from shared.pii import redact

GENERAL_DOMAIN = "general"
# Prompts' domains remembered per rule set: at most DOMAIN_CACHE_SIZE texts of up to DOMAIN_CACHE_MAX_CHARS.
# Under bench.load votes land on the groups of the 5,000 latest answers: a smaller LRU than that working set
# missed nearly every time.
DOMAIN_CACHE_SIZE = 16_384
DOMAIN_CACHE_MAX_CHARS = 8_000
_DOMAIN_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
# A keyword matches as a whole word: not after, and not before, a word character.
_BEFORE, _AFTER = r"(?<!\w)", r"(?!\w)"
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def _is_keyword(pattern: re.Pattern[str]) -> bool:
    return pattern.pattern.startswith(_BEFORE) and pattern.pattern.endswith(_AFTER)


def _first_chars(keywords: list[str]) -> str:
    r"""`(?=[abc])`: a keyword can only start at one of its first characters (in any case, as the keywords match).

    Tested before the look-behind, it rejects most positions of a text at once (the look-behind first makes
    the regex engine try every branch at every position): ~30% less time per prompt with the shipped rules.
    It implies nothing the alternation does not, so it matches exactly where it did. Only for keywords that
    are `re.escape`d words (a pattern of the rules file may look like one): none if any is not, or is empty.
    """
    words = [_ESCAPED.sub(r"\1", keyword) for keyword in keywords]
    if not all(word and re.escape(word) == keyword for word, keyword in zip(words, keywords, strict=True)):
        return ""
    return f"(?=[{''.join(re.escape(c) for c in sorted({word[0] for word in words}))}])"


@dataclass(frozen=True)
class DomainRule:
    """Prompts matching any keyword or pattern belong to `domain`."""

    domain: str
    patterns: tuple[re.Pattern[str], ...]

    @functools.cached_property
    def _search(self) -> Callable[[str], object]:
        r"""One regex for the rule: its keywords behind one word-boundary check, then its own patterns.

        `(?<!\w)(?:kw1|kw2|...)(?!\w)` matches where one of `(?<!\w)kw(?!\w)` would, and fails at once
        inside a word, where most positions of a text are: 3-6x faster than a search per keyword (an
        alternation of the whole patterns is no faster than that).
        """
        keywords = [p.pattern[len(_BEFORE) : -len(_AFTER)] for p in self.patterns if _is_keyword(p)]
        others = [f"(?:{p.pattern})" for p in self.patterns if not _is_keyword(p)]
        parts = ([f"{_first_chars(keywords)}{_BEFORE}(?:{'|'.join(keywords)}){_AFTER}"] if keywords else []) + others
        if not parts:
            return lambda text: None
        try:
            return re.compile("|".join(parts), re.IGNORECASE).search
        except re.error:  # e.g. a pattern with global inline flags, valid only at the start of an expression
            return lambda text: any(pattern.search(text) for pattern in self.patterns)

    def matches(self, text: str) -> bool:
        return bool(self._search(text))


@dataclass(kw_only=True, frozen=True)
class RoutingRules:
    """Domain rules in order and the priority step (built by `services.aggregator.rules.routing_rules`)."""

    domain_rules: tuple[DomainRule, ...]
    priority_step: float

    @functools.cached_property
    def prompt_domain(self) -> Callable[[str], str]:
        """The first matching rule's domain for a prompt's text, else `general`; short texts cached.

        A group's domain is looked up by every batch that touches it (its outputs and its leaderboard
        counts), and a busy group's prompt is the same each time: matching it again was a fifth of the
        aggregator's CPU under load (bench/load.py, py-spy).
        """

        def first_match(text: str) -> str:
            for rule in self.domain_rules:
                if rule.matches(text):
                    return rule.domain
            return GENERAL_DOMAIN

        cached = functools.lru_cache(maxsize=DOMAIN_CACHE_SIZE)(first_match)
        return lambda text: cached(text) if len(text) <= DOMAIN_CACHE_MAX_CHARS else first_match(text)


def parse_domain_rules(data: Mapping[str, Any]) -> tuple[DomainRule, ...]:
    """Compile the rules file's content (`{"rules": [{"domain", "keywords", "patterns"}]}`).

    Raises ValueError naming the bad rule: a broken rules file must stop the service at start.
    """
    rules = []
    for index, raw in enumerate(data.get("rules", [])):
        domain = raw.get("domain", "")
        if not _DOMAIN_NAME.match(domain):
            raise ValueError(f"domain rule {index}: bad domain name {domain!r}")
        words = raw.get("keywords", [])
        patterns = [re.compile(f"{_BEFORE}{re.escape(word)}{_AFTER}", re.IGNORECASE) for word in words]
        try:
            patterns += [re.compile(pattern, re.IGNORECASE) for pattern in raw.get("patterns", [])]
        except re.error as exc:
            raise ValueError(f"domain rule {index} ({domain}): bad pattern: {exc}") from exc
        rules.append(DomainRule(domain, tuple(patterns)))
    return tuple(rules)


def route_domain(own_domains: Iterable[str | None], prompt: Sequence[Message], rules: RoutingRules) -> str:
    """The interaction's domain, else the first matching rule on the prompt, else `general`."""
    for domain in own_domains:
        if domain:
            return domain
    return rules.prompt_domain("\n".join(m.content for m in prompt if m.role in ("user", "system")))


def redacted_prompt(prompt: Sequence[Message]) -> list[Message]:
    """The prompt as annotators may see it (redact_messages; short messages through the redaction cache)."""
    return [_redacted_message(m) if len(m.content) <= REDACTION_CACHE_MAX_CHARS else _redact_message(m) for m in prompt]


# A busy group's answers are shown again in new tasks after every vote on the group: redacting the same
# text each time was the aggregator's biggest CPU cost under load. redact is a pure function of the text;
# each cache holds at most REDACTION_CACHE_SIZE texts of up to REDACTION_CACHE_MAX_CHARS. Prompts are
# cached as redacted messages (a task shows its group's prompt again each time, and a frozen message can
# be shown by every request), answers as redacted candidates (outputs.py): with the texts' cache, at most
# ~200 MB at worst, ~5 MB for bench.load's texts.
REDACTION_CACHE_SIZE = 4096
REDACTION_CACHE_MAX_CHARS = 8_000


def _redact_message(message: Message) -> Message:
    return message.model_copy(update={"content": redact(message.content)})


_redacted_message = functools.lru_cache(maxsize=REDACTION_CACHE_SIZE)(_redact_message)


@functools.lru_cache(maxsize=REDACTION_CACHE_SIZE)
def _redacted_short_text(text: str) -> str:
    return redact(text)


def _redacted_text(text: str) -> str:
    return _redacted_short_text(text) if len(text) <= REDACTION_CACHE_MAX_CHARS else redact(text)


def redacted_candidate(candidate: Candidate) -> Candidate:
    """A candidate as annotators may see it (ids and model names are not user content)."""
    return candidate.model_copy(update={"content": _redacted_text(candidate.content)})
