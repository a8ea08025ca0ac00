"""PII redaction: replace emails, phones, card numbers, IPs, IBANs, SSNs and URL secrets with typed placeholders.

Pure and deterministic: text in, text out, no I/O. Every candidate a regex finds is confirmed by a
checksum or a parser before it is replaced (Luhn for cards, mod-97 for IBANs, `ipaddress` for IPs,
`phonenumbers` for phones), so dates, prices, versions and order numbers survive.

Kinds run in a fixed order, most specific first: a URL's credentials before emails (`user:pw@host`
looks like an email), IBANs before cards (an IBAN holds card-like digit groups), SSNs and cards
before phones (so a card is never half-matched as a phone), IPs before phones (dotted quads).
Placeholders hold no digit, `@` or `:`, so nothing a placeholder leaves behind is matched again.

Deliberate limits: an `@mention` or `@handle` is not an email (no local part); a bare run of digits
without `+`, separators or a phone word before it (`order #4155552671`) is not a phone; a dotted quad
such as `1.2.3.4` is an IP even when it was meant as a version.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence

import phonenumbers

from shared.events import Candidate, Message

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
IP = "[IP]"
IBAN = "[IBAN]"
SSN = "[SSN]"
SECRET = "[SECRET]"

# National formats are tried for each region; `+<country code>` numbers are found by any of them.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR")

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@\[\]]+:[^/\s@\[\]]+@")
_URL_SECRET_PARAM = re.compile(
    r"(?i)([?&](?:access_token|refresh_token|id_token|token|api_key|apikey|key|secret|client_secret|password|"
    r"passwd|pwd|auth|sig|signature|session|sessionid|sid)=)[^&#\s\[\]]+"
)
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_SSN = re.compile(r"(?<![0-9-])(?!000|666|9[0-9]{2})[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9-])")
# A run of digit groups separated by single spaces or dashes; cards are searched inside it.
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_DIGIT_GROUP = re.compile(r"[0-9]+|[ -]")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.[0-9])"
)
_IPV4 = re.compile(r"(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w]|\.[0-9])")
# Phones have at least 7 digits: only such runs are handed to the (slow) phonenumbers matcher.
_MAYBE_PHONE = re.compile(r"\d(?:[\s().\-/]{0,3}\d){6,}")
_PHONE_CONTEXT_CHARS = 8  # the matcher looks at a "+", "(" and the characters next to a number
_PHONE_WORD = re.compile(r"(?i)\b(?:phone|tel|telephone|call|mobile|cell|fax|whatsapp|sms|text|ring|reach)\b")
_MAX_PASSES = 8
_PHONE_WORD_WINDOW = 24  # characters before a bare digit run searched for a phone word ("call me at ...")


def redact(text: str, *, phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> str:
    """The text with every recognised piece of PII replaced by its placeholder (`[EMAIL]`, `[CARD]`, ...)."""
    # A replacement can change what an earlier kind's boundary check sees ("1111DE89 ..." hides an IBAN
    # that "[CARD]DE89 ..." shows), so passes repeat until nothing changes: that makes redact idempotent.
    # Text without PII takes one pass, text with PII usually two; every changing pass removes digits,
    # "@" or ":", so the bound is never the reason to stop in practice.
    for _ in range(_MAX_PASSES):
        redacted = _redact_pass(text, phone_regions)
        if redacted == text:
            break
        text = redacted
    return text


def _redact_pass(text: str, phone_regions: Sequence[str]) -> str:
    for needle, pattern, replacement in _PASSES:
        # A substring test is ~100x cheaper than a regex scan that finds nothing.
        if needle in text:
            text = pattern.sub(replacement, text)
    return _redact_phones(text, phone_regions)


def redact_messages(
    messages: Sequence[Message], *, phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS
) -> list[Message]:
    """Copies of `messages` with redacted content (roles and order kept)."""
    return [m.model_copy(update={"content": redact(m.content, phone_regions=phone_regions)}) for m in messages]


def redact_candidate(candidate: Candidate, *, phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> Candidate:
    """A copy of `candidate` whose content is redacted."""
    return candidate.model_copy(update={"content": redact(candidate.content, phone_regions=phone_regions)})


def luhn_is_valid(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits (card numbers)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_is_valid(candidate: str) -> bool:
    """ISO 13616 check: 15-34 characters whose rearranged numeric form is 1 mod 97."""
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _iban_replacement(match: re.Match[str]) -> str:
    # The regex may swallow a following upper-case word ("... 00 THANKS"): drop trailing groups until valid.
    groups = match.group(0).split(" ")
    for end in range(len(groups), 0, -1):
        if iban_is_valid("".join(groups[:end])):
            return IBAN + match.group(0)[len(" ".join(groups[:end])) :]
    return match.group(0)


def _is_card_shape(groups: list[str], separators: set[str]) -> bool:
    """One run of 13-19 digits, or 4-digit first group then groups of 1-6 with one kind of separator."""
    digits = sum(len(g) for g in groups)
    if not 13 <= digits <= 19:
        return False
    if len(groups) == 1:
        return True
    return len(separators) == 1 and len(groups[0]) == 4 and all(1 <= len(g) <= 6 for g in groups[1:])


def _card_replacement(match: re.Match[str]) -> str:
    """Replace the Luhn-valid card numbers inside one run of digit groups, leftmost-longest first."""
    tokens = _DIGIT_GROUP.findall(match.group(0))
    groups, separators = tokens[0::2], tokens[1::2]
    out: list[str] = []
    start = 0
    while start < len(groups):
        end = next(
            (
                end
                for end in range(len(groups), start, -1)
                if _is_card_shape(groups[start:end], set(separators[start : end - 1]))
                and luhn_is_valid("".join(groups[start:end]))
            ),
            None,
        )
        if end is None:
            out.append(groups[start])
            end = start + 1
        else:
            out.append(CARD)
        if end < len(groups):
            out.append(separators[end - 1])
        start = end
    return "".join(out)


def _ip_replacement(parse: Callable[[str], object]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        candidate = match.group(0)
        # Lone "::" or a word pair like "a::b" parse as IPv6 but are code, not addresses.
        if not any(c.isdigit() for c in candidate):
            return candidate
        try:
            parse(candidate)
        except ValueError:
            return candidate
        return IP

    return replace


def _redact_phones(text: str, regions: Sequence[str]) -> str:
    spans: list[tuple[int, int]] = []
    # The matcher costs ~1 ms per KB and region, so it only sees the windows that hold 7+ digits.
    for window_start, window_end in _phone_windows(text):
        window = text[window_start:window_end]
        for region in regions:
            for found in phonenumbers.PhoneNumberMatcher(window, region):
                start = window_start + found.start
                if _is_phone_like(text, start, found.raw_string):
                    spans.append((start, start + len(found.raw_string)))
    if not spans:
        return text
    out: list[str] = []
    position = 0
    for start, end in _merged(spans):
        out.append(text[position:start])
        out.append(PHONE)
        position = end
    out.append(text[position:])
    return "".join(out)


def _phone_windows(text: str) -> list[tuple[int, int]]:
    """Spans around each run of 7+ digits, widened so the matcher still sees the characters beside it."""
    windows = [
        (max(0, m.start() - _PHONE_CONTEXT_CHARS), min(len(text), m.end() + _PHONE_CONTEXT_CHARS))
        for m in _MAYBE_PHONE.finditer(text)
    ]
    return _merged(windows)


def _is_phone_like(text: str, start: int, raw: str) -> bool:
    """A bare digit run is an order number or an id unless a phone word stands just before it."""
    if not raw.isdigit():
        return True
    return _PHONE_WORD.search(text[max(0, start - _PHONE_WORD_WINDOW) : start]) is not None


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# (substring every match contains, pattern, replacement), in the order the module docstring explains.
_PASSES: tuple[tuple[str, re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    ("://", _URL_USERINFO, lambda m: f"{m.group(1)}{SECRET}@"),
    ("=", _URL_SECRET_PARAM, lambda m: f"{m.group(1)}{SECRET}"),
    ("@", _EMAIL, EMAIL),
    ("", _IBAN, _iban_replacement),
    ("-", _SSN, SSN),
    ("", _DIGIT_RUN, _card_replacement),
    (":", _IPV6, _ip_replacement(ipaddress.IPv6Address)),
    (".", _IPV4, _ip_replacement(ipaddress.IPv4Address)),
)
