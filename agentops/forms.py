"""Validation of what other systems send us, with one message per field."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from agentops.models import Ticket

# A ticket is an email, not a document: enough for a long complaint with a pasted
# thread, small enough that a runaway client cannot fill the database or the prompt.
TICKET_BODY_MAX_CHARS = 20_000

# A JSON string may escape half of a surrogate pair ("\ud800") on its own: valid JSON,
# but no character, and neither the database nor an email can hold it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _model_max_length(field_name: str) -> int:
    max_length = Ticket._meta.get_field(field_name).max_length
    assert max_length is not None
    return max_length


class TicketSubmitForm(forms.Form):
    """The JSON object of `POST /api/tickets`: four required strings, nothing else.

    Unknown keys are rejected rather than ignored, so a misspelt field
    ("customer_mail") is an error the client sees instead of data silently lost.
    """

    customer_email = forms.EmailField(max_length=_model_max_length("customer_email"))
    subject = forms.CharField(max_length=_model_max_length("subject"))
    body = forms.CharField(max_length=TICKET_BODY_MAX_CHARS)
    # Required: it is the idempotency key of intake. Without it a client's retry
    # after a lost response would make a second ticket and a second run.
    external_id = forms.CharField(max_length=_model_max_length("external_id"))

    def __init__(self, payload: dict[str, Any]) -> None:
        # Django's fields turn anything into a string (42 → "42"), which suits HTML
        # forms and not JSON, where a number instead of an email is a client bug.
        self.unknown_keys = [key for key in payload if key not in self.base_fields]
        self.not_strings = [
            key
            for key, value in payload.items()
            if key in self.base_fields and value is not None and not isinstance(value, str)
        ]
        self.not_text = [
            key
            for key, value in payload.items()
            if key in self.base_fields and isinstance(value, str) and _LONE_SURROGATE.search(value)
        ]
        super().__init__(
            data={
                key: value
                for key, value in payload.items()
                if key in self.base_fields and key not in self.not_strings + self.not_text
            }
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # Assigned directly: add_error() refuses names that are not fields, and a
        # wrong type should be the only message for its field, not "required" too.
        for key in self.not_strings:
            self._errors[key] = self.error_class(["Must be a string."])
            cleaned.pop(key, None)
        for key in self.not_text:
            self._errors[key] = self.error_class(
                ["Must be text: it holds half of a surrogate pair (\\ud800-\\udfff) alone."]
            )
            cleaned.pop(key, None)
        for key in self.unknown_keys:
            self._errors[key] = self.error_class(["Unknown field."])
        return cleaned

    def errors_by_field(self) -> dict[str, list[str]]:
        return {field: list(messages) for field, messages in self.errors.items()}
