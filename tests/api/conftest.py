"""A token and a client that speaks to the JSON API with it."""

import json

import pytest
from django.test import Client

from agentops.services import api_token_create

_WITH_TOKEN = object()


@pytest.fixture
def api_token(db) -> str:
    """The raw value of an active API token."""
    _, raw = api_token_create(name="tests")
    return raw


class ApiClient:
    """Requests that carry the token, each run as if it committed.

    Tests run inside a transaction that never commits, so the run's enqueue (an
    on_commit callback) would never fire and "nothing was enqueued" would be
    true of any request; executing the callbacks after each request lets a test
    see exactly what a real commit would have enqueued.
    """

    def __init__(self, client: Client, token: str, capture_on_commit) -> None:
        self.client = client
        self.token = token
        self.capture_on_commit = capture_on_commit

    def _headers(self, authorization) -> dict:
        if authorization is _WITH_TOKEN:
            return {"Authorization": f"Bearer {self.token}"}
        return {} if authorization is None else {"Authorization": authorization}

    def post_json(
        self, path: str, payload, *, content_type="application/json", authorization=_WITH_TOKEN
    ):
        body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
        with self.capture_on_commit(execute=True):
            return self.client.post(
                path, body, content_type=content_type, headers=self._headers(authorization)
            )

    def get(self, path: str, *, authorization=_WITH_TOKEN):
        return self.client.get(path, headers=self._headers(authorization))

    def put(self, path: str, *, authorization=_WITH_TOKEN):
        return self.client.put(path, headers=self._headers(authorization))


@pytest.fixture
def api(client, api_token, django_capture_on_commit_callbacks) -> ApiClient:
    return ApiClient(client, api_token, django_capture_on_commit_callbacks)
