"""Card numbers are redacted from span payloads; identifiers that merely contain digits are not."""

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traces.redact import _SECRET_PATTERNS, _redact_cards, redact, redact_text


@pytest.mark.parametrize(
    "text",
    [
        "card 4242424242424242 please",
        "card 4242 4242 4242 4242.",
        "card 4242-4242-4242-4242",
        "amex 378282246310005",
    ],
)
def test_luhn_valid_card_numbers_are_redacted(text):
    assert "[REDACTED card]" in redact_text(text)
    assert "4242" not in redact_text(text).replace("[REDACTED card]", "")


@pytest.mark.parametrize(
    "text",
    [
        "order ORD-10020",
        "tracking 1Z999AA10123456784",
        "phone 4242424242424241",  # fails the Luhn check
        "refund:86384151-8597-4527-b818-4453f9c96aa8:ORD-10020",
        "ticket 86384151-8597-4527-b818-4453f9c96aa8",
    ],
)
def test_identifiers_with_digit_groups_are_left_alone(text):
    assert redact_text(text) == text


def test_no_idempotency_key_built_from_a_uuid_is_ever_redacted():
    # The flake this guards against: a UUID whose leading digit groups happened to pass
    # the Luhn check lost its key in the trace, so the attempt spans could not be found.
    for _ in range(5000):
        key = f"refund:{uuid.uuid4()}:ORD-10020"
        assert redact({"idempotency_key": key}) == {"idempotency_key": key}


def _every_pattern(text: str) -> str:
    """Redaction with no shortcut: every pattern over every string."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[REDACTED secret]", text)
    return _redact_cards(text)


_FRAGMENTS = st.sampled_from(
    ["sk-ant-", "sk_live_", "sk_test_", "aot_", "Bearer ", "bearer\t", "BEARER ", "sk-", "aot"]
    + ["4242", "4242 ", "4242-", "0005", "3782822463", "7", "-", " ", "x", "Ab9_", "ORD-1"]
    + ["Ab9_cd8-Ef7_gh6-", "abcdefgh"]  # long enough to be a key's tail
)


@settings(max_examples=500)
@given(st.lists(_FRAGMENTS | st.text(max_size=4), max_size=12).map("".join))
def test_the_shortcut_for_plain_strings_redacts_what_every_pattern_would(text):
    # Strings where no pattern could begin skip them; the result must not differ.
    assert redact_text(text) == _every_pattern(text)


@pytest.mark.parametrize(
    "text",
    [
        "key aot_" + "a" * 16,
        "sk-ant-abcdefgh",
        "x sk_live_abcdefgh",
        "(sk_test_abcdefgh)",
        "Authorization: Bearer abcdefgh",
        "bearer\tabcdefgh",
        "card 4222222222222",  # the shortest card: 13 digits
        "card 4222 2222 22222",
    ],
)
def test_the_shortest_match_of_each_pattern_is_not_taken_for_a_plain_string(text):
    assert redact_text(text) == _every_pattern(text) != text
