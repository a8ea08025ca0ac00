"""shared.pii: what is redacted, what is left alone, and the properties every redaction keeps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import Candidate, Message
from shared.pii import (
    CARD,
    EMAIL,
    IBAN,
    IP,
    PHONE,
    SECRET,
    SSN,
    iban_is_valid,
    luhn_is_valid,
    redact,
    redact_candidate,
    redact_messages,
)

REDACTED = [
    # emails
    ("write to john.doe@example.com please", f"write to {EMAIL} please"),
    ("John.Doe+tag@mail.example.co.uk.", f"{EMAIL}."),
    ("<a_b-c@sub-domain.example.org>", f"<{EMAIL}>"),
    ("Zürich: josé@exämple.de ✓", f"Zürich: {EMAIL} ✓"),
    # phones: international and national formats
    ("call +44 20 7946 0958 today", f"call {PHONE} today"),
    ("+1 (415) 555-2671", PHONE),
    ("US: 415-555-2671 or (415) 555-2671", f"US: {PHONE} or {PHONE}"),
    ("UK mobile 07911 123456", f"UK mobile {PHONE}"),
    ("Berlin 030 12345678 / +49 30 12345678", f"Berlin {PHONE} / {PHONE}"),
    ("Paris 01 23 45 67 89, +33 1 23 45 67 89", f"Paris {PHONE}, {PHONE}"),
    ("call me at 4155552671", f"call me at {PHONE}"),
    ("☎ +33 1 23 45 67 89 ☺", f"☎ {PHONE} ☺"),
    # cards (Luhn-valid), with and without separators
    ("card 4111 1111 1111 1111 exp 12/29", f"card {CARD} exp 12/29"),
    ("4111-1111-1111-1111", CARD),
    ("5500005555555559", CARD),
    ("amex 3782 822463 10005", f"amex {CARD}"),
    ("visa13 4222222222222", f"visa13 {CARD}"),
    ("ref 12 4111 1111 1111 1111", f"ref 12 {CARD}"),
    # IP addresses
    ("from 192.168.0.1, to 8.8.8.8.", f"from {IP}, to {IP}."),
    ("v6 2001:db8::1 and ::ffff:10.0.0.1", f"v6 {IP} and {IP}"),
    ("loopback ::1 or fe80::1ff:fe23:4567:890a", f"loopback {IP} or {IP}"),
    # IBANs (mod-97 valid), grouped or not, a word after them kept
    ("IBAN DE89 3704 0044 0532 0130 00 THANKS", f"IBAN {IBAN} THANKS"),
    ("GB82WEST12345698765432", IBAN),
    ("FR14 2004 1010 0505 0001 3M02 606", IBAN),
    # SSNs
    ("ssn 123-45-6789.", f"ssn {SSN}."),
    # URL credentials and tokens
    ("https://bob:hunter2@example.com/x", f"https://{SECRET}@example.com/x"),
    ("GET /cb?code=1&access_token=eyJhbGciOi.x-y&q=1", f"GET /cb?code=1&access_token={SECRET}&q=1"),
    # several kinds in one text
    (
        "Mail a@b.io, card 4111111111111111, ip 10.0.0.7, tel +44 20 7946 0958, ssn 078-05-1120",
        f"Mail {EMAIL}, card {CARD}, ip {IP}, tel {PHONE}, ssn {SSN}",
    ),
]

KEPT = [
    "in 2026 we shipped it",
    "on 2026-11-26 at 10:30:00",
    "26.11.2026 and 26/11/2026",
    "price $1,299.99 or 1.299,99 €",
    "version 2026.11.01, v1.2.3.4 and 1.2.3",
    "bad card 4111 1111 1111 1112",
    "4111111111111112",
    "order #4155552671",
    "short numbers 42, 1234567 and 12 34",
    "scores 10 20 30 40 50 60 70",
    "@mention and @team-leads",
    "user@localhost",
    "std::vector<int> and a::b",
    "MAC 00:1A:2B:3C:4D:5E",
    "999.1.1.1 is not an address",
    "SSN-like 000-12-3456 and 666-12-3456",
    "DE89 3704 0044 0532 0130 02",  # mod-97 fails (and its digits fail Luhn, so no card either)
    "a plain sentence with ünïcödé ✓",
    "",
]


@pytest.mark.parametrize(("text", "expected"), REDACTED)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_keeps_what_is_not_pii(text: str) -> None:
    assert redact(text) == text


def test_phone_regions_are_configurable() -> None:
    assert redact("Paris 01 23 45 67 89", phone_regions=("US",)) == "Paris 01 23 45 67 89"
    assert redact("Paris 01 23 45 67 89", phone_regions=("FR",)) == f"Paris {PHONE}"


def test_redact_messages_returns_redacted_copies() -> None:
    messages = [Message(role="system", content="be nice"), Message(role="user", content="I am a@b.io")]
    redacted = redact_messages(messages)
    assert [(m.role, m.content) for m in redacted] == [("system", "be nice"), ("user", f"I am {EMAIL}")]
    assert messages[1].content == "I am a@b.io"


def test_redact_candidate_redacts_only_content() -> None:
    candidate = Candidate(interaction_id="i-1", content="ring 415-555-2671", model="m", model_version="v")
    assert redact_candidate(candidate) == candidate.model_copy(update={"content": f"ring {PHONE}"})


@pytest.mark.parametrize(
    ("digits", "valid"), [("4111111111111111", True), ("4111111111111112", False), ("79927398713", True)]
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_is_valid(digits) is valid


@pytest.mark.parametrize(
    ("iban", "valid"), [("DE89370400440532013000", True), ("DE89370400440532013001", False), ("DE8937", False)]
)
def test_iban_checksum(iban: str, valid: bool) -> None:
    assert iban_is_valid(iban) is valid


# Text dense in the characters PII is made of, with real PII fragments mixed in.
_PII_FRAGMENTS = st.sampled_from(
    [
        "a@b.io",
        "4111 1111 1111 1111",
        "+44 20 7946 0958",
        "415-555-2671",
        "10.0.0.1",
        "2001:db8::1",
        "DE89 3704 0044 0532 0130 00",
        "123-45-6789",
        "https://u:p@h.io/?token=t",
        "[CARD]",
        "[EMAIL]",
    ]
)
_NOISY_TEXT = st.lists(
    st.one_of(_PII_FRAGMENTS, st.text(alphabet="0123456789 -.:@+()[]/#?&=abcfxyzDEG\nü", max_size=12)), max_size=8
).map("".join)
_BOUNDARY = st.sampled_from([" ", "\n", ": ", " (", ") ", ", "])
_SURROUNDING = st.text(max_size=30)


@settings(max_examples=300, deadline=None)
@given(_NOISY_TEXT)
def test_redact_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@st.composite
def _emails(draw: st.DrawFn) -> str:
    local = draw(st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,15}", fullmatch=True))
    domain = draw(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}", fullmatch=True))
    return f"{local}@{domain}.{draw(st.sampled_from(['com', 'io', 'de', 'co.uk', 'museum']))}"


@st.composite
def _cards(draw: st.DrawFn) -> str:
    body = draw(st.from_regex(r"[1-9][0-9]{14}", fullmatch=True))
    check = next(d for d in "0123456789" if luhn_is_valid(body + d))
    digits = body + check
    separator = draw(st.sampled_from(["", " ", "-"]))
    return separator.join(digits[i : i + 4] for i in range(0, 16, 4))


@settings(max_examples=200, deadline=None)
@given(_SURROUNDING, _BOUNDARY, _emails(), _BOUNDARY, _SURROUNDING)
def test_valid_email_never_survives(before: str, left: str, email: str, right: str, after: str) -> None:
    redacted = redact(before + left + email + right + after)
    assert email not in redacted
    assert EMAIL in redacted


@settings(max_examples=200, deadline=None)
@given(_SURROUNDING, _BOUNDARY, _cards(), _BOUNDARY, _SURROUNDING)
def test_luhn_valid_card_never_survives(before: str, left: str, card: str, right: str, after: str) -> None:
    redacted = redact(before + left + card + right + after)
    assert card not in redacted
    assert CARD in redacted
