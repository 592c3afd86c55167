"""The JSON API: other systems submit tickets and read runs. Bearer tokens, no cookies.

Every answer is JSON. A request is checked in this order, and the first failure
answers: method (405), token (401), size (413), content type (415), JSON (400),
fields (400). Nothing is stored unless every check passed.

When the database cannot be reached the answer is 503 with Retry-After: the ticket
and its run are written in one transaction, so nothing of it is stored and the
client sends it again (external_id makes that safe). When the broker cannot be
reached the ticket is stored anyway and answered 201: the run waits in "queued"
and the sweeper enqueues it (see agentops.services.run_enqueue_on_commit).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from agentops import selectors, services
from agentops.forms import TicketSubmitForm
from agentops.models import Run, Ticket

# Refused before the body is read. Generous for a valid ticket even with every
# character \u-escaped (20,000 × 12 bytes for escaped emoji is 240 KB), small
# enough that a runaway client cannot make us buffer megabytes.
MAX_REQUEST_BYTES = 256 * 1024
# How long a client is asked to wait when the database is unreachable.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5

logger = logging.getLogger(__name__)


def _error(status: int, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _unauthorized(message: str, *, invalid: bool) -> JsonResponse:
    # RFC 6750: say which scheme, and whether a token was presented but refused.
    challenge = 'Bearer realm="agentops"'
    if invalid:
        challenge += ', error="invalid_token"'
    return _error(401, message, WWW_Authenticate=challenge)


def allow_methods(
    *methods: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Answer 405 in JSON, with Allow, for any other method (Django's own answers in HTML)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                allowed = ", ".join(methods)
                return _error(
                    405,
                    f"Method {request.method} is not allowed here; use {allowed}.",
                    Allow=allowed,
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _, raw = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return raw.strip() or None


def database_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 503 with Retry-After, not 500, while the database cannot be reached."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except (OperationalError, InterfaceError):
            logger.warning("API %s: database unavailable", request.path, exc_info=True)
            return _error(
                503,
                "The database cannot be reached; nothing was stored. "
                "Try again after Retry-After seconds.",
                Retry_After=str(UNAVAILABLE_RETRY_AFTER_SECONDS),
            )

    return wrapper


def token_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 401 unless the request carries an unrevoked API token."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        raw = _bearer_token(request)
        if raw is None:
            return _unauthorized("Send an API token: Authorization: Bearer <token>.", invalid=False)
        token = selectors.api_token_get_active(raw=raw)
        if token is None:
            return _unauthorized("The API token is unknown or revoked.", invalid=True)
        services.api_token_touch(token=token)
        return view(request, *args, **kwargs)

    return wrapper


def _read_json_object(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    """The request's JSON object, or the error response that explains why not."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error(400, "Content-Length is not a number.")
    if declared > MAX_REQUEST_BYTES:
        return _error(413, f"The request body is limited to {MAX_REQUEST_BYTES} bytes.")
    if request.content_type != "application/json":
        return _error(415, "Send the ticket as JSON with Content-Type: application/json.")
    charset = request.content_params.get("charset", "utf-8").lower()
    if charset not in {"utf-8", "utf8"}:
        return _error(415, "JSON is UTF-8; other charsets are not accepted.")
    body = request.body
    if len(body) > MAX_REQUEST_BYTES:
        return _error(413, f"The request body is limited to {MAX_REQUEST_BYTES} bytes.")
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return _error(400, "The body is not valid UTF-8.")
    except json.JSONDecodeError as exc:
        return _error(400, f"The body is not valid JSON: {exc.msg} at line {exc.lineno}.")
    except RecursionError:
        return _error(400, "The body is not a ticket: its JSON is nested too deeply.")
    except ValueError:
        # Python refuses integers of more than 4300 digits (int_max_str_digits).
        return _error(400, "The body is not a ticket: it holds a number with too many digits.")
    if not isinstance(payload, dict):
        return _error(400, "The body must be a JSON object.")
    return payload


@login_not_required
@csrf_exempt
@allow_methods("POST")
@database_required
@token_required
def tickets_create(request: HttpRequest) -> JsonResponse:
    """Submit a ticket; 201 with new ids, or 200 with the first ids for a known external_id."""
    payload = _read_json_object(request)
    if isinstance(payload, JsonResponse):
        return payload
    form = TicketSubmitForm(payload)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors_by_field()}, status=400)
    submission = services.ticket_submit(**form.cleaned_data, source=Ticket.Source.API)
    return JsonResponse(
        {
            "ticket_id": str(submission.ticket.code),
            "run_id": str(submission.run.code),
            "status": submission.run.status,
        },
        status=201 if submission.created else 200,
    )


@login_not_required
@csrf_exempt
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other path under /api/: a JSON 404, not the login page or an HTML one."""
    return _error(404, "No such API endpoint. There are POST /api/tickets and GET /api/runs/<id>.")


@login_not_required
@csrf_exempt
@allow_methods("GET")
@database_required
@token_required
def run_detail(request: HttpRequest, run_id: str) -> JsonResponse:
    """A run's status, cost and the outline of its steps, effects and pending actions."""
    run = selectors.run_get_for_api(code=run_id)
    if run is None:
        return _error(404, "No run with this id.")
    return JsonResponse(run_as_json(run))


def run_as_json(run: Run) -> dict[str, Any]:
    return {
        "id": str(run.code),
        "ticket_id": str(run.ticket.code),
        "status": run.status,
        "model": run.model,
        # A string: JSON numbers are floats to most clients, and money is not.
        "cost": str(run.cost),
        "steps": [
            {
                "kind": span.kind,
                "name": span.name,
                "status": span.status,
                "error_class": span.error_class,
                "attempt": span.attempt,
            }
            for span in run.spans.all()
        ],
        "effects": [
            {
                "tool": effect.tool,
                "idempotency_key": effect.idempotency_key,
                "status": effect.status,
            }
            for effect in run.effects.all()
        ],
        "pending_actions": [
            {
                "id": str(action.code),
                "tool": action.tool,
                "amount_cents": action.amount_cents,
                "status": action.status,
            }
            for action in run.pending_actions.all()
        ],
    }
