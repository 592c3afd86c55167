"""Shared fixtures: the four users every view is tested with."""

import pytest
from django.contrib.auth.models import Permission

PASSWORD = "pw-agentops-test-1"


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # Users are created in many tests; the real hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _user(django_user_model, username, *, staff=False, superuser=False, perms=()):
    user = django_user_model.objects.create_user(
        username=username, email=f"{username}@example.com", password=PASSWORD
    )
    user.is_staff = staff or superuser
    user.is_superuser = superuser
    user.save()
    for codename in perms:
        app_label, code = codename.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=code)
        )
    return user


LEAD_LIMIT_CENTS = 20_000  # a support lead approves up to 200.00 per currency
FINANCE_LIMIT_CENTS = 1_000_000


def _limits(user, cents: int, currencies=("USD", "EUR", "GBP", "CHF")):
    from approvals.models import ApprovalLimit

    for currency in currencies:
        ApprovalLimit.objects.create(user=user, currency=currency, max_amount_cents=cents)
    return user


@pytest.fixture
def support_lead(django_user_model):
    user = _user(django_user_model, "lead", staff=True, perms=["approvals.decide_pendingaction"])
    return _limits(user, LEAD_LIMIT_CENTS)


@pytest.fixture
def finance(django_user_model):
    user = _user(django_user_model, "finance", staff=True, perms=["approvals.decide_pendingaction"])
    return _limits(user, FINANCE_LIMIT_CENTS)


@pytest.fixture
def outsider(django_user_model):
    return _user(django_user_model, "outsider")


@pytest.fixture
def staff_viewer(django_user_model):
    """Staff who may look but not decide."""
    return _user(django_user_model, "viewer", staff=True)


@pytest.fixture
def admin_user(django_user_model):
    return _user(django_user_model, "admin", superuser=True)


@pytest.fixture(autouse=True)
def enqueued_runs(request, monkeypatch):
    """Run ids that would have been enqueued (after commit), instead of reaching a broker.

    Tests marked `worker` run a real Celery worker and enqueue for real.
    """
    calls: list[int] = []
    if request.node.get_closest_marker("worker"):
        yield calls
        return
    from django.db import transaction

    from agentops import services

    def capture(*, run_id: int) -> None:
        transaction.on_commit(lambda: calls.append(run_id))

    monkeypatch.setattr(services, "run_enqueue_on_commit", capture)
    yield calls


@pytest.fixture(autouse=True)
def notified_actions(request, monkeypatch):
    """Pending-action ids whose approvers would have been notified (after commit).

    Tests marked `worker` send them to the real worker.
    """
    calls: list[int] = []
    if request.node.get_closest_marker("worker"):
        yield calls
        return
    from django.db import transaction

    from approvals import services

    def capture(*, action_id: int) -> None:
        transaction.on_commit(lambda: calls.append(action_id))

    monkeypatch.setattr(services, "action_notify_on_commit", capture)
    yield calls


@pytest.fixture(autouse=True)
def fresh_breakers():
    """Circuit breakers live in the process: each test starts with all of them closed."""
    from agentops.runtime.breaker import breakers_reset

    breakers_reset()
    yield
    breakers_reset()
