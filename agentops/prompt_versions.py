"""Writes of prompt versions: which one is current. Reads are in agentops.runtime.prompts."""

from __future__ import annotations

from django.db import transaction

from agentops.models import PromptVersion


def prompt_version_make_current(*, version: PromptVersion) -> None:
    """Make `version` the one new runs use; the previous current one stops being current."""
    with transaction.atomic():
        # Locked in a fixed order, so two admins switching at once do not deadlock;
        # the partial unique constraint keeps at most one current whatever happens.
        list(PromptVersion.objects.select_for_update().filter(is_current=True).order_by("pk"))
        PromptVersion.objects.filter(is_current=True).exclude(pk=version.pk).update(
            is_current=False
        )
        PromptVersion.objects.filter(pk=version.pk).update(is_current=True)
    version.is_current = True
