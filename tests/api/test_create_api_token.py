"""manage.py create_api_token NAME: prints the token once; only its hash is stored."""

import io

import pytest
from django.core.management import CommandError, call_command

from agentops.models import ApiToken

pytestmark = pytest.mark.django_db


def create(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_prints_the_raw_token_alone_on_the_last_line_and_stores_only_its_hash():
    out, err = create("helpdesk-sync")

    raw = out.splitlines()[-1]
    assert raw.startswith("aot_")
    assert len(raw) > 40
    token = ApiToken.objects.get()
    assert token.name == "helpdesk-sync"
    assert token.token_hash == ApiToken.hash(raw)
    assert token.prefix == raw[:12]
    assert raw not in {token.token_hash, token.prefix}
    assert "cannot be shown again" in err


def test_it_makes_a_token_the_api_accepts(client):
    out, _ = create("acceptance")
    raw = out.splitlines()[-1]

    response = client.get("/api/runs/x", headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 404  # authenticated, and the run does not exist


def test_it_makes_a_different_token_each_time():
    first, _ = create("a")
    second, _ = create("a")

    assert first != second
    assert ApiToken.objects.count() == 2


@pytest.mark.parametrize("name", ["", "   ", "n" * 101])
def test_it_refuses_a_blank_or_overlong_name_and_stores_nothing(name):
    with pytest.raises(CommandError, match="1 to 100 characters"):
        create(name)

    assert ApiToken.objects.count() == 0
