"""The regression set, eval runs and the shadow switch in the admin."""

import pytest
from django.urls import reverse

from evals.models import EvalResult, EvalRun, RegressionCase, ShadowSetting

pytestmark = pytest.mark.django_db


def test_it_loads_the_evals_admin_pages(admin_client, refund_run):
    case = RegressionCase.objects.create(
        name="c", source_run=refund_run, customer_email="a@example.com", subject="s", body="b"
    )
    eval_run = EvalRun.objects.create(cases=1, passed=1)
    EvalResult.objects.create(eval_run=eval_run, case=case, passed=True)
    setting = ShadowSetting.objects.create(pk=1)
    for obj in (case, eval_run, setting):
        name = f"admin:evals_{obj._meta.model_name}"
        assert admin_client.get(reverse(f"{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"{name}_change", args=[obj.pk])).status_code == 200
    assert admin_client.get(reverse("admin:evals_evalrun_add")).status_code == 403


def test_an_admin_turns_shadow_mode_on_once_and_cannot_set_more_than_100(admin_client):
    url = reverse("admin:evals_shadowsetting_add")
    data = {"enabled": "on", "share_percent": "150", "model": "offline", "prompt_version": ""}

    refused = admin_client.post(url, data)
    assert refused.status_code == 200
    assert not ShadowSetting.objects.exists()

    saved = admin_client.post(url, {**data, "share_percent": "25"})
    assert saved.status_code == 302
    setting = ShadowSetting.objects.get()
    assert (setting.pk, setting.enabled, setting.share_percent) == (1, True, 25)
    assert admin_client.get(url).status_code == 403  # one row only
