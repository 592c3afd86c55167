"""Fixtures for the demo shop's tests."""

import pytest


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # Users are created (and demo passwords set) in many tests; the real hasher is
    # slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    # The manifest storage needs collectstatic, which tests do not run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
