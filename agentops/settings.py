"""Every setting comes from the environment, with an embedded default that runs the demo.

`.env.example` lists them all. A bad value fails here, at start-up, with
ImproperlyConfigured, never at the first request.
"""

import re
from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("AGENTOPS_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


class StrictEnv(environ.Env):
    """django-environ, but a value that does not parse stops start-up with its name.

    Plain django-environ raises a bare ValueError for RUN_MAX_STEPS=abc and reads
    DEBUG=maybe as False; here both are ImproperlyConfigured.
    """

    _BOOLEAN_FALSE_STRINGS = ("false", "off", "no", "n", "0", "")

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        raw = self.ENVIRON.get(f"{self.prefix}{var}")
        if cast is bool and raw is not None:
            allowed = self.BOOLEAN_TRUE_STRINGS + self._BOOLEAN_FALSE_STRINGS
            if raw.strip().lower() not in allowed:
                raise ImproperlyConfigured(f"{var} must be true or false, got {raw!r}")
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise ImproperlyConfigured(f"{var} has an invalid value {raw!r}: {exc}") from exc


env = StrictEnv()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _fraction(name: str, default: float) -> float:
    value = env.float(name, default=default)
    if not 0.0 <= value <= 1.0:
        raise ImproperlyConfigured(f"{name} must be between 0 and 1, got {value}")
    return value


def _positive(value: float, name: str) -> float:
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be greater than 0, got {value}")
    return value


# --- Django core -----------------------------------------------------------

DEBUG = env.bool("DEBUG", default=False)
# The embedded key is for the demo only; production sets SECRET_KEY. Its
# "django-insecure-" prefix makes `check --deploy` refuse it (security.W009).
SECRET_KEY = env.str(
    "SECRET_KEY", default="django-insecure-agentops-demo-only-change-me-in-production"
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "agentops",
    "agentops.shop",
    "agentops.simgateway",
    "agentops.routing",
    "approvals",
    "traces",
    "evals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "agentops.middleware.HtmxLoginRedirectMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "agentops.urls"
WSGI_APPLICATION = "agentops.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "agentops.context_processors.navigation",
            ],
            "builtins": ["django_htmx.templatetags.django_htmx"],
        },
    },
]

# "none" behind a pooler that cannot keep prepared statements (PgBouncer before 1.21
# in transaction mode); see agentops.db.batch.
_prepare = env.str("PREPARE_THRESHOLD", default="5").strip().lower()
if _prepare != "none" and not _prepare.isdigit():
    raise ImproperlyConfigured(
        f"PREPARE_THRESHOLD must be a whole number or none, got {_prepare!r}"
    )
PREPARE_THRESHOLD = None if _prepare == "none" else int(_prepare)

# SQLite (WAL) by default; PostgreSQL through DATABASE_URL.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'agentops.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db.setdefault("OPTIONS", {}).update(
        {
            # WAL lets the web server read while a worker writes; IMMEDIATE makes a
            # writer take the lock up front instead of failing half-way on upgrade.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    _db["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db["ENGINE"] = "agentops.db.postgresql"  # Django's, JSON written by orjson
    # Workers keep their connection between tasks; health checks drop dead ones.
    _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
    # The hot path's statements (agentops.db.batch, sent by agentops.db.libpq, which
    # reads the connection's prepare_threshold) are prepared from their
    # PREPARE_THRESHOLD-th run on a connection; the ORM's queries bind client-side
    # and are never prepared.
    _db.setdefault("OPTIONS", {})["prepare_threshold"] = PREPARE_THRESHOLD

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise serves from here once collectstatic ran
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            # Production runs collectstatic and turns this on for cache-busting names.
            if env.bool("STATIC_MANIFEST", default=False)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Serve from the finders when no collectstatic has run (demo and tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- HTTPS: production turns this on; the demo runs over plain http on localhost.
HTTPS = env.bool("HTTPS", default=False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Replies to customers go out through this mailer; the demo prints them to the console.
# Production sets EMAIL_URL (smtp+tls://user:password@host:587) or another EMAIL_BACKEND.
_email_url = env.str("EMAIL_URL", default="")
if _email_url:
    _email = environ.Env.email_url_config(_email_url)
    MAILERS = {
        "default": {
            "BACKEND": _email["EMAIL_BACKEND"],
            "OPTIONS": {
                "host": _email.get("EMAIL_HOST"),
                "port": _email.get("EMAIL_PORT"),
                "username": _email.get("EMAIL_HOST_USER"),
                "password": _email.get("EMAIL_HOST_PASSWORD"),
                "use_tls": _email.get("EMAIL_USE_TLS", False),
                "use_ssl": _email.get("EMAIL_USE_SSL", False),
                "timeout": 10,
            },
        }
    }
else:
    MAILERS = {
        "default": {
            "BACKEND": env.str(
                "EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
            )
        }
    }
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="support@agentops.local")

# "json": one JSON object a line, with the trace and run ids of the run being worked on.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "traces.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Celery ----------------------------------------------------------------

# The embedded broker is kombu's filesystem transport: no server to run.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Longer than any task's hard time limit, so a slow task is not redelivered
    # while it still runs (Redis and SQS redeliver unacked messages after this).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- The agent -------------------------------------------------------------

ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
ANTHROPIC_TIMEOUT_SECONDS = _positive(
    env.float("ANTHROPIC_TIMEOUT_SECONDS", default=60.0), "ANTHROPIC_TIMEOUT_SECONDS"
)
# With no API key the offline model runs the agent: deterministic, no network.
AGENT_MODEL = env.str(
    "AGENT_MODEL", default="claude-sonnet-4-6" if ANTHROPIC_API_KEY else "offline"
)
TRIAGE_MODEL = env.str(
    "TRIAGE_MODEL", default="claude-haiku-4-5" if ANTHROPIC_API_KEY else "offline"
)
OFFLINE_MODEL_LATENCY_MS = env.int("OFFLINE_MODEL_LATENCY_MS", default=0)

RUN_MAX_STEPS = env.int("RUN_MAX_STEPS", default=12)
# A run's progress (its claim, the steps written before the next model call, its
# resolution) commits without waiting for the WAL flush on PostgreSQL; the ledger's
# writes, escalations and approvals always wait. True: progress waits too.
RUN_PROGRESS_DURABLE = env.bool("RUN_PROGRESS_DURABLE", default=False)

RUN_LEASE_SECONDS = env.int("RUN_LEASE_SECONDS", default=120)
RUN_TASK_SOFT_TIME_LIMIT = env.int("RUN_TASK_SOFT_TIME_LIMIT", default=300)
RUN_TASK_TIME_LIMIT = env.int("RUN_TASK_TIME_LIMIT", default=360)
# Runs queued longer than this, or whose lease expired, are re-enqueued by beat.
RUN_STALE_SECONDS = env.int("RUN_STALE_SECONDS", default=180)
# Malformed model output (unknown tool, bad arguments, empty or truncated responses)
# is handed back for correction at most this many times per run, then escalated.
RUN_MAX_CORRECTIONS = env.int("RUN_MAX_CORRECTIONS", default=4)

# Budget caps, checked before every model call; 0 turns a cap off.
RUN_MAX_TOKENS = env.int("RUN_MAX_TOKENS", default=200_000)
RUN_MAX_COST_USD = env("RUN_MAX_COST_USD", cast=Decimal, default=Decimal("1.00"))
DAILY_MAX_COST_USD = env("DAILY_MAX_COST_USD", cast=Decimal, default=Decimal("50.00"))
for _name in ("RUN_MAX_TOKENS", "RUN_MAX_COST_USD", "DAILY_MAX_COST_USD"):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 (off) or positive")

# Transient errors: bounded exponential backoff with full jitter.
RETRY_MAX_ATTEMPTS = env.int("RETRY_MAX_ATTEMPTS", default=4)
RETRY_BASE_DELAY_SECONDS = env.float("RETRY_BASE_DELAY_SECONDS", default=0.25)
RETRY_MAX_DELAY_SECONDS = env.float("RETRY_MAX_DELAY_SECONDS", default=8.0)

# A circuit breaker and a retry budget per downstream (model provider, payment gateway),
# kept in each worker process (agentops.runtime.breaker). The breaker opens when, within
# the window, at least THRESHOLD calls failed and they are at least RATE of the calls;
# runs then park instead of calling, and one probe is let through after the cool-down.
BREAKER_FAILURE_THRESHOLD = int(
    _positive(env.int("BREAKER_FAILURE_THRESHOLD", default=5), "BREAKER_FAILURE_THRESHOLD")
)
BREAKER_FAILURE_RATE = _fraction("BREAKER_FAILURE_RATE", 0.5)
BREAKER_WINDOW_SECONDS = _positive(
    env.float("BREAKER_WINDOW_SECONDS", default=30.0), "BREAKER_WINDOW_SECONDS"
)
BREAKER_COOL_DOWN_SECONDS = _positive(
    env.float("BREAKER_COOL_DOWN_SECONDS", default=30.0), "BREAKER_COOL_DOWN_SECONDS"
)
# Retries allowed per downstream and window: this share of first attempts, or the minimum.
RETRY_BUDGET_RATIO = _fraction("RETRY_BUDGET_RATIO", 0.2)
RETRY_BUDGET_MIN_RETRIES = env.int("RETRY_BUDGET_MIN_RETRIES", default=10)
if RETRY_BUDGET_MIN_RETRIES < 0:
    raise ImproperlyConfigured(
        f"RETRY_BUDGET_MIN_RETRIES must be 0 or more, got {RETRY_BUDGET_MIN_RETRIES}"
    )
# A run parked this many times by an open breaker or a spent budget is escalated.
RUN_MAX_PARKS = int(_positive(env.int("RUN_MAX_PARKS", default=40), "RUN_MAX_PARKS"))

# Refunds above this (minor units, in the order's currency) wait for a person
# unless an admin-edited RiskPolicy for the currency says otherwise.
DEFAULT_APPROVAL_THRESHOLD_CENTS = env.int("DEFAULT_APPROVAL_THRESHOLD_CENTS", default=5000)
# The share of new tickets (0-100) the agent handles when no admin setting exists;
# the rest go straight to a person. The admin's "autonomy share" overrides it.
AUTONOMY_SHARE_PERCENT = env.int("AUTONOMY_SHARE_PERCENT", default=100)
if not 0 <= AUTONOMY_SHARE_PERCENT <= 100:
    raise ImproperlyConfigured(
        f"AUTONOMY_SHARE_PERCENT must be 0 to 100, got {AUTONOMY_SHARE_PERCENT}"
    )
# A pending action older than this expires (beat checks every minute) and its run escalates.
APPROVAL_EXPIRE_AFTER_SECONDS = int(
    _positive(
        env.int("APPROVAL_EXPIRE_AFTER_SECONDS", default=86400), "APPROVAL_EXPIRE_AFTER_SECONDS"
    )
)
# The approvals queue colours an action amber after half of this and red after all of it.
APPROVAL_SLA_SECONDS = int(
    _positive(env.int("APPROVAL_SLA_SECONDS", default=3600), "APPROVAL_SLA_SECONDS")
)
# A Slack-compatible incoming webhook told about each new pending action; empty: none.
APPROVALS_WEBHOOK_URL = env.str("APPROVALS_WEBHOOK_URL", default="")
# The site's address, for links in notifications and alerts.
SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")

# --- Traces ----------------------------------------------------------------

# Export spans over OTLP/HTTP (Jaeger, Tempo, Langfuse, Phoenix...) when set,
# e.g. http://localhost:4318; /v1/traces is appended. Unset: no export.
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="agentops")
# More secrets to redact from spans, as regular expressions separated by ";;"
# (API keys, bearer tokens and card numbers are always redacted).
TRACE_REDACT_PATTERNS = [
    p for p in env.str("TRACE_REDACT_PATTERNS", default="").split(";;") if p.strip()
]
for _pattern in TRACE_REDACT_PATTERNS:
    try:
        re.compile(_pattern)
    except re.error as exc:
        raise ImproperlyConfigured(
            f"TRACE_REDACT_PATTERNS has an invalid pattern {_pattern!r}: {exc}"
        ) from exc

# Alerts (thresholds are set in the admin): who is told, and where links point.
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
if ALERT_WEBHOOK_URL and not ALERT_WEBHOOK_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"ALERT_WEBHOOK_URL must be an http(s) URL, got {ALERT_WEBHOOK_URL!r}"
    )

# --- Payments --------------------------------------------------------------

PAYMENTS_BACKEND = env.str("PAYMENTS_BACKEND", default="simulated")
if PAYMENTS_BACKEND not in {"simulated", "stripe"}:
    raise ImproperlyConfigured(
        f"PAYMENTS_BACKEND must be 'simulated' or 'stripe', got {PAYMENTS_BACKEND!r}"
    )
# Stripe (PAYMENTS_BACKEND=stripe): a secret or restricted key; the API base may
# point at a proxy (or, in tests, a local fake).
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
STRIPE_TIMEOUT_SECONDS = _positive(
    env.float("STRIPE_TIMEOUT_SECONDS", default=30.0), "STRIPE_TIMEOUT_SECONDS"
)
if PAYMENTS_BACKEND == "stripe" and not STRIPE_API_KEY:
    raise ImproperlyConfigured("PAYMENTS_BACKEND=stripe needs STRIPE_API_KEY")
# Fault injection for the simulated gateway (probabilities per call).
GATEWAY_TIMEOUT_AFTER_COMMIT = _fraction("GATEWAY_TIMEOUT_AFTER_COMMIT", 0.0)
GATEWAY_RATE_LIMIT = _fraction("GATEWAY_RATE_LIMIT", 0.0)
GATEWAY_SERVER_ERROR = _fraction("GATEWAY_SERVER_ERROR", 0.0)
GATEWAY_LATENCY_MS = env.int("GATEWAY_LATENCY_MS", default=0)
# Seed for the random faults, so a fault run can be reproduced.
GATEWAY_FAULT_SEED = env.int("GATEWAY_FAULT_SEED", default=None)
# A provider that ignores idempotency keys (a repeated call pays again): the chaos run's
# proof that the effect ledger alone prevents duplicates.
GATEWAY_LEGACY = env.bool("GATEWAY_LEGACY", default=False)

# --- Tests of crashes --------------------------------------------------------

# A worker kills itself with SIGKILL at this point of a run (agentops.runtime.crashpoints).
# Never in production: refused with HTTPS or a real payment provider.
CRASH_POINT = env.str("CRASH_POINT", default="")
if CRASH_POINT:
    from agentops.runtime.crashpoints import POINTS as _CRASH_POINTS

    if CRASH_POINT not in _CRASH_POINTS:
        raise ImproperlyConfigured(
            f"CRASH_POINT must be one of {', '.join(_CRASH_POINTS)}, got {CRASH_POINT!r}"
        )
    if HTTPS or PAYMENTS_BACKEND != "simulated":
        raise ImproperlyConfigured(
            "CRASH_POINT is a test hook that kills workers; it is refused with HTTPS=true "
            "or a real payment provider (production)"
        )
