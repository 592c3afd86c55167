"""Card numbers are redacted from span payloads; identifiers that merely contain digits are not."""

import uuid

import pytest

from traces.redact import redact, redact_text


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
