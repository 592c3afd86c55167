"""Settings: production passes `check --deploy`; a bad value stops start-up; all are documented."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)

PRODUCTION = {
    "DEBUG": "false",
    "HTTPS": "true",
    "ALLOWED_HOSTS": "agentops.example.com",
    "EMAIL_URL": "smtp+tls://agentops:secret@mail.example.com:587",
}


def manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run manage.py in a fresh process with only `env` set, as a deployment would.

    Nothing else is inherited: the test run's own environment (a DATABASE_URL, or
    DJANGO_ALLOW_ASYNC_UNSAFE set by the browser tests) must not decide the outcome.
    """
    full_env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    full_env |= {"AGENTOPS_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "agentops.settings"}
    full_env |= env
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_passes_the_deployment_checks_with_production_settings(tmp_path):
    env = PRODUCTION | {"SECRET_KEY": secrets.token_urlsafe(50)}

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_it_flags_the_embedded_demo_secret_key_in_production(tmp_path):
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, tmp_path=tmp_path
    )

    assert result.returncode != 0
    assert "security.W009" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "GATEWAY_TIMEOUT_AFTER_COMMIT",
            "2",
            "GATEWAY_TIMEOUT_AFTER_COMMIT must be between 0 and 1",
        ),
        ("GATEWAY_RATE_LIMIT", "-0.1", "GATEWAY_RATE_LIMIT must be between 0 and 1"),
        ("ANTHROPIC_TIMEOUT_SECONDS", "0", "ANTHROPIC_TIMEOUT_SECONDS must be greater than 0"),
        ("PAYMENTS_BACKEND", "paypal", "PAYMENTS_BACKEND must be 'simulated' or 'stripe'"),
        ("PAYMENTS_BACKEND", "stripe", "PAYMENTS_BACKEND=stripe needs STRIPE_API_KEY"),
        ("RUN_MAX_COST_USD", "abc", "RUN_MAX_COST_USD has an invalid value 'abc'"),
        ("DAILY_MAX_COST_USD", "-1", "DAILY_MAX_COST_USD must be 0 (off) or positive"),
        ("RUN_MAX_STEPS", "abc", "RUN_MAX_STEPS has an invalid value 'abc'"),
        ("DEBUG", "maybe", "DEBUG must be true or false, got 'maybe'"),
        ("PREPARE_THRESHOLD", "often", "PREPARE_THRESHOLD must be a whole number or none"),
    ],
)
def test_it_refuses_to_start_with_a_bad_value(tmp_path, name, value, message):
    result = manage("check", env={name: value}, tmp_path=tmp_path)

    assert result.returncode != 0
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in result.stderr


# --- every variable is documented ----------------------------------------------

_READS = re.compile(r"""(?:\benv(?:\.\w+)?|Env\(\)\.\w+|_fraction)\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def variables_read_by_settings() -> set[str]:
    return set(_READS.findall((BASE_DIR / "agentops" / "settings.py").read_text()))


def test_it_finds_the_variables_settings_reads():
    # Guards the two tests below against a pattern that silently matches nothing.
    found = variables_read_by_settings()

    assert {
        "DATABASE_URL",
        "SECRET_KEY",
        "AGENTOPS_VAR_DIR",
        "GATEWAY_TIMEOUT_AFTER_COMMIT",
    } <= found
    assert len(found) > 30


def test_env_example_lists_every_variable_settings_reads():
    listed = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (BASE_DIR / ".env.example").read_text(), re.M)
    )

    assert variables_read_by_settings() - listed == set()
    assert listed - variables_read_by_settings() == set()


def test_readme_documents_every_variable_settings_reads():
    readme = (BASE_DIR / "README.md").read_text()

    assert {name for name in variables_read_by_settings() if f"`{name}`" not in readme} == set()


def test_an_email_url_configures_the_smtp_mailer(tmp_path):
    result = manage(
        "shell",
        "-c",
        "from django.core.mail import mailers; m = mailers['default']; "
        "print(type(m).__name__, m.host, m.port, m.use_tls)",
        env={"EMAIL_URL": "smtp+tls://user:secret@mail.example.com:587"},
        tmp_path=tmp_path,
    )
    assert result.stdout.strip().splitlines()[-1].split() == [
        "EmailBackend",
        "mail.example.com",
        "587",
        "True",
    ]
