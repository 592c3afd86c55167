"""The admin of prompt versions: new ones start from the built-in prompt; used ones are evidence."""

import pytest
from django.urls import reverse

from agentops.models import PromptVersion
from agentops.runtime.prompts import SYSTEM_PROMPT


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


CHANGELIST = "admin:agentops_promptversion_changelist"


def change_url(version) -> str:
    return reverse("admin:agentops_promptversion_change", args=[version.pk])


def test_a_new_version_starts_from_the_built_in_prompt_and_records_its_author(
    admin_client, admin_user
):
    page = admin_client.get(reverse("admin:agentops_promptversion_add"))
    assert page.status_code == 200
    assert "You are a customer support agent" in page.content.decode()

    response = admin_client.post(
        reverse("admin:agentops_promptversion_add"),
        {
            "name": "v1",
            "system_prompt": SYSTEM_PROMPT,
            "tool_descriptions": '{"lookup_order": "Find one order."}',
            "notes": "from the built-in",
        },
    )

    assert response.status_code == 302
    version = PromptVersion.objects.get(name="v1")
    assert version.created_by == admin_user and not version.is_current
    assert version.tool_descriptions == {"lookup_order": "Find one order."}


def test_make_current_switches_the_one_current_version(admin_client):
    old = PromptVersion.objects.create(name="v1", system_prompt="a", is_current=True)
    new = PromptVersion.objects.create(name="v2", system_prompt="b")

    response = admin_client.post(
        reverse(CHANGELIST), {"action": "make_current", "_selected_action": [new.pk]}
    )

    assert response.status_code == 302
    old.refresh_from_db(), new.refresh_from_db()
    assert new.is_current and not old.is_current


def test_make_current_refuses_more_than_one_version(admin_client):
    a = PromptVersion.objects.create(name="v1", system_prompt="a", is_current=True)
    b = PromptVersion.objects.create(name="v2", system_prompt="b")

    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "make_current", "_selected_action": [a.pk, b.pk]},
        follow=True,
    )

    assert "Select exactly one version." in response.content.decode()
    a.refresh_from_db(), b.refresh_from_db()
    assert a.is_current and not b.is_current


def test_a_version_a_run_used_cannot_be_edited_or_deleted(admin_client, make_run):
    version = PromptVersion.objects.create(name="v1", system_prompt="original words")
    run = make_run()
    run.prompt_version = version
    run.save(update_fields=["prompt_version"])

    page = admin_client.get(change_url(version))
    assert page.status_code == 200
    assert 'name="system_prompt"' not in page.content.decode()
    admin_client.post(change_url(version), {"name": "v1", "system_prompt": "rewritten"})
    version.refresh_from_db()
    assert version.system_prompt == "original words"
    delete = reverse("admin:agentops_promptversion_delete", args=[version.pk])
    assert admin_client.get(delete).status_code == 403


def test_an_unused_version_can_be_edited(admin_client):
    version = PromptVersion.objects.create(name="draft", system_prompt="first")
    response = admin_client.post(
        change_url(version), {"name": "draft", "system_prompt": "second", "tool_descriptions": "{}"}
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.system_prompt == "second"
