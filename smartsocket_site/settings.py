"""Django settings: every knob comes from the environment, with safe embedded defaults."""
import ipaddress
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SMARTSOCKET_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, "") or default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "")
    if value not in ("", "True", "False"):
        raise ImproperlyConfigured(f"{name}={value!r}: use True or False")
    return default if value == "" else value == "True"


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return default if value == "" else float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r}: not a number") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "")
    return default if value == "" else [item.strip() for item in value.split(",") if item.strip()]


def env_networks(name: str, default: list[str]) -> list[str]:
    """Comma-separated IP networks (CIDR or single addresses); `none` for no network at all."""
    values = [] if os.environ.get(name, "").strip().lower() == "none" else env_list(name, default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an IP network") from exc
    return values


def embedded_secret_key(path: Path) -> str:
    """The embedded default's key: made once, kept in var/ (mode 0600), the same for every process that shares var/."""
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(50))
    except FileExistsError:
        pass
    return path.read_text().strip()


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "") or embedded_secret_key(VAR_DIR / "secret_key")
if SECRET_KEY.startswith("change-me") and not DEBUG:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is still the placeholder from .env.example: set a long random value, e.g. the output of "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'` (or leave it unset to use a key kept in var/)"
    )
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# Behind TLS (a reverse proxy): secure cookies and HSTS. HTTP is never redirected to HTTPS by the
# service itself: CPEE fails on redirects, so that is the proxy's choice (security.W008 silenced).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = int(env_float("DJANGO_HSTS_SECONDS", 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_TLS_PROXY", False) else None
SILENCED_SYSTEM_CHECKS = ["security.W008"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "audit",  # before rest_framework.authtoken: its drf_create_token records the token in the ledger
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "smartsocket_site",
    "sockets",
    "instances",
]

MIDDLEWARE = [
    "smartsocket_site.health.OperationsMiddleware",  # /healthz, /readyz, /metrics on any Host
    "smartsocket_site.metrics.RequestLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's CSS/JS from STATIC_ROOT (`collectstatic`) under gunicorn with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# CPEE strips trailing slashes and fails on redirects: routes match both forms instead.
APPEND_SLASH = False

ROOT_URLCONF = "smartsocket_site.urls"
WSGI_APPLICATION = "smartsocket_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # First, so its drf_spectacular/redoc.html (no CDN fonts) wins over the app's own.
        "DIRS": [BASE_DIR / "smartsocket_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

SQLITE_PATH = VAR_DIR / "db.sqlite3"
# Persistent connections (a new PostgreSQL connection cost ~15 ms a request), checked before reuse.
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", f"sqlite:///{SQLITE_PATH}"), conn_max_age=600, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE: every atomic() takes the write lock at BEGIN, so per-socket decisions
    # serialize on SQLite as select_for_update() does on PostgreSQL. WAL with synchronous=NORMAL:
    # a commit is not fsynced, so it costs microseconds instead of ~1.6 ms under the write lock.
    # Durability (README "Configuration"): a crashed or killed process loses nothing committed;
    # a power loss or OS crash can lose the last transactions committed before it (never corrupts).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE", "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file test DB: the in-memory one cannot be shared by threads with IMMEDIATE locking.
    # One per test process, so parallel runs never share a file.
    DATABASES["default"]["TEST"] = {"NAME": env_str("SMARTSOCKET_TEST_DB", str(VAR_DIR / f"test_db_{os.getpid()}.sqlite3"))}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TZ_NAME", "UTC")
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["smartsocket_site.formats"]  # the admin shows times to the second
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "smartsocket_site.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Token first: its `WWW-Authenticate: Token` makes a refused anonymous call a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["smartsocket_site.access.TokenOrTrustedNetwork"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "smartsocket_site.api.api_exception_handler",
    # `format` is the download's own argument (json/csv), not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
    # OPTIONS answers 405 like any other unsupported method (DRF's metadata needs querysets we do not have).
    "DEFAULT_METADATA_CLASS": None,
    "DEFAULT_SCHEMA_CLASS": "smartsocket_site.schema.SmartSocketSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Smart Socket Service API",
    "DESCRIPTION": "Share smart plugs safely between lab-automation processes.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: /api/docs works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["smartsocket_site.api.schema_without_slash_twins"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "smartsocket_site.schema.document_errors_and_access"],
}

# Devices
SMARTSOCKET_DEVICE_CONNECT_TIMEOUT = env_float("SMARTSOCKET_DEVICE_CONNECT_TIMEOUT", 2.0)
SMARTSOCKET_DEVICE_READ_TIMEOUT = env_float("SMARTSOCKET_DEVICE_READ_TIMEOUT", 3.0)
# mqtts:// brokers are verified against this PEM file of CA certificates (empty: the system's CAs).
SMARTSOCKET_MQTT_CA_FILE = env_str("SMARTSOCKET_MQTT_CA_FILE", "")
SMARTSOCKET_SIMULATOR_PORT = int(env_float("SMARTSOCKET_SIMULATOR_PORT", 8765))
SMARTSOCKET_DEFAULT_SOCKET_NAME = env_str("SMARTSOCKET_DEFAULT_SOCKET_NAME", "default")
SMARTSOCKET_DEFAULT_SOCKET_DRIVER = env_str("SMARTSOCKET_DEFAULT_SOCKET_DRIVER", "tasmota_http")
SMARTSOCKET_DEFAULT_SOCKET_ADDRESS = env_str(
    "SMARTSOCKET_DEFAULT_SOCKET_ADDRESS", f"http://127.0.0.1:{SMARTSOCKET_SIMULATOR_PORT}"
)
SMARTSOCKET_DEFAULT_SOCKET_USERNAME = env_str("SMARTSOCKET_DEFAULT_SOCKET_USERNAME", "")
SMARTSOCKET_DEFAULT_SOCKET_PASSWORD = env_str("SMARTSOCKET_DEFAULT_SOCKET_PASSWORD", "")
# The service's own base URL as the plugs reach it (e.g. http://10.0.0.5:8000): Shelly plugs get webhooks
# to <it>/api/push/shelly/<secret> so a press is recorded at once. Empty = no webhooks (polling only).
SMARTSOCKET_PUBLIC_URL = env_str("SMARTSOCKET_PUBLIC_URL", "").rstrip("/")
SMARTSOCKET_DEFAULT_SOCKET_CHANNEL = int(env_float("SMARTSOCKET_DEFAULT_SOCKET_CHANNEL", 1))
if not 1 <= SMARTSOCKET_DEFAULT_SOCKET_CHANNEL <= 32:
    raise ImproperlyConfigured("SMARTSOCKET_DEFAULT_SOCKET_CHANNEL: a relay number from 1 to 32")
# Ceiling (seconds) for holders of the default socket without an emergencyStopTimeout; empty = none.
SMARTSOCKET_DEFAULT_SOCKET_MAX_ON = env_float("SMARTSOCKET_DEFAULT_SOCKET_MAX_ON", 0.0) or None
# The on-device failsafe (README "Safety"): the plug's own off-timer ends this long after the
# latest running deadline; off = the service never arms a timer on any plug.
SMARTSOCKET_FAILSAFE = env_bool("SMARTSOCKET_FAILSAFE", True)
SMARTSOCKET_FAILSAFE_MARGIN = env_float("SMARTSOCKET_FAILSAFE_MARGIN", 5.0)
# Upper bound for emergencyStopTimeout (ms) and wait durations (s): 7 days.
SMARTSOCKET_MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000

# Access control (README "Access control"): callers from these networks need no token.
LOOPBACK_NETWORKS = ["127.0.0.0/8", "::1/128"]
SMARTSOCKET_TRUSTED_NETWORKS = env_networks("SMARTSOCKET_TRUSTED_NETWORKS", LOOPBACK_NETWORKS)
# Callback URLs (SSRF guard): a host name listed here (".example.org" = any subdomain) or
# an IP address in one of these networks; host names are never resolved for the check.
SMARTSOCKET_CALLBACK_ALLOWED_HOSTS = env_list("SMARTSOCKET_CALLBACK_ALLOWED_HOSTS", ["localhost"])
SMARTSOCKET_CALLBACK_ALLOWED_NETWORKS = env_networks("SMARTSOCKET_CALLBACK_ALLOWED_NETWORKS", LOOPBACK_NETWORKS)

# Background work (README "Background work"). Intervals and delays are in seconds.
SMARTSOCKET_SAMPLE_INTERVAL_ON = env_float("SMARTSOCKET_SAMPLE_INTERVAL_ON", 5.0)  # per-socket override: Socket.sample_interval_on
SMARTSOCKET_SAMPLE_INTERVAL_OFF = env_float("SMARTSOCKET_SAMPLE_INTERVAL_OFF", 30.0)
SMARTSOCKET_MONITOR_TICK = env_float("SMARTSOCKET_MONITOR_TICK", 1.0)  # how often beat looks for sockets due
# Sockets due at one tick are sampled in tasks of up to this many, each socket in a thread of its own.
SMARTSOCKET_MONITOR_BATCH = int(env_float("SMARTSOCKET_MONITOR_BATCH", 10))
SMARTSOCKET_DEADLINE_SWEEP = env_float("SMARTSOCKET_DEADLINE_SWEEP", 1.0)  # backstop of the per-instance timers
SMARTSOCKET_RECONCILE_SWEEP = env_float("SMARTSOCKET_RECONCILE_SWEEP", 1.0)
SMARTSOCKET_RECONCILE_BACKOFF_MAX = env_float("SMARTSOCKET_RECONCILE_BACKOFF_MAX", 60.0)
# A socket that must be OFF is retried at least this often, however long it was unreachable.
SMARTSOCKET_RECONCILE_OFF_BACKOFF_MAX = env_float("SMARTSOCKET_RECONCILE_OFF_BACKOFF_MAX", 2.0)
# The must-be-OFF watch: how often the relay of a socket nobody holds (or emergency-locked) is checked.
SMARTSOCKET_OFF_WATCH_INTERVAL = env_float("SMARTSOCKET_OFF_WATCH_INTERVAL", 1.0)
SMARTSOCKET_CALLBACK_SWEEP = env_float("SMARTSOCKET_CALLBACK_SWEEP", 1.0)
SMARTSOCKET_CALLBACK_MAX_ATTEMPTS = int(env_float("SMARTSOCKET_CALLBACK_MAX_ATTEMPTS", 10))
SMARTSOCKET_CALLBACK_BACKOFF = env_float("SMARTSOCKET_CALLBACK_BACKOFF", 2.0)  # doubles per attempt
SMARTSOCKET_CALLBACK_BACKOFF_MAX = env_float("SMARTSOCKET_CALLBACK_BACKOFF_MAX", 300.0)
SMARTSOCKET_CALLBACK_TIMEOUT = env_float("SMARTSOCKET_CALLBACK_TIMEOUT", 5.0)  # connect and read, each
# Worker, safety worker and beat heartbeats (/readyz): sent this often, stale after 3 intervals + 2 s.
SMARTSOCKET_HEARTBEAT_INTERVAL = env_float("SMARTSOCKET_HEARTBEAT_INTERVAL", 5.0)

# The audit ledger (README "Audit"): exports are signed with this Ed25519 key (base64 of the 32-byte
# private key, or a PKCS#8 PEM); empty = one generated on first use and kept in the database.
SMARTSOCKET_SIGNING_KEY = env_str("SMARTSOCKET_SIGNING_KEY", "")
SMARTSOCKET_LEDGER_VERIFY_INTERVAL = env_float("SMARTSOCKET_LEDGER_VERIFY_INTERVAL", 60.0)  # the beat task's incremental check
# Raw samples are kept this many days, then rolled up into per-minute and per-hour rollups (kept for good)
# by a beat task every SMARTSOCKET_ROLLUP_INTERVAL seconds, at most SMARTSOCKET_ROLLUP_MAX_SAMPLES a run.
SMARTSOCKET_SAMPLE_RETENTION_DAYS = env_float("SMARTSOCKET_SAMPLE_RETENTION_DAYS", 30.0)
if SMARTSOCKET_SAMPLE_RETENTION_DAYS <= 0:
    raise ImproperlyConfigured("SMARTSOCKET_SAMPLE_RETENTION_DAYS must be more than 0")
SMARTSOCKET_ROLLUP_INTERVAL = env_float("SMARTSOCKET_ROLLUP_INTERVAL", 300.0)
SMARTSOCKET_ROLLUP_MAX_SAMPLES = int(env_float("SMARTSOCKET_ROLLUP_MAX_SAMPLES", 500_000))

# Celery: Redis when REDIS_URL (or CELERY_BROKER_URL) is set, else the embedded broker:
# message files under SMARTSOCKET_BROKER_DIR, no server needed. Results are never read.
REDIS_URL = env_str("REDIS_URL", "")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "embedded://")
SMARTSOCKET_BROKER_DIR = Path(env_str("SMARTSOCKET_BROKER_DIR", str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("embedded://"):
    SMARTSOCKET_BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(SMARTSOCKET_BROKER_DIR), "data_folder_out": str(SMARTSOCKET_BROKER_DIR),
        "control_folder": str(SMARTSOCKET_BROKER_DIR / "control"),
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False  # no broadcast on a folder of files
else:
    # Deadline and callback timers are sent with an ETA up to SMARTSOCKET_MAX_TIMEOUT_MS ahead;
    # Redis would redeliver them every visibility timeout. A message lost in a crash costs
    # nothing: the beat sweeps find the work in the database.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": SMARTSOCKET_MAX_TIMEOUT_MS // 1000 + 3600, "socket_connect_timeout": 3}
CELERY_TASK_DEFAULT_QUEUE = env_str("SMARTSOCKET_CELERY_QUEUE", "celery")
# Safety work (deadlines, the must-be-OFF watch, reconcile towards OFF) has a queue and a
# worker pool of its own (Procfile `safety`), so callbacks and sampling never delay it.
SMARTSOCKET_SAFETY_QUEUE = env_str("SMARTSOCKET_CELERY_SAFETY_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}-safety")
CELERY_TASK_ROUTES = {
    task: {"queue": SMARTSOCKET_SAFETY_QUEUE}
    for task in ("instances.tasks.enforce_deadline", "instances.tasks.enforce_deadlines", "instances.tasks.watch_sockets",
                 "instances.tasks.watch_socket_batch", "instances.tasks.stop_planned", "sockets.tasks.reconcile_sockets")
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")


def _tick(task: str, seconds: float) -> dict:
    """A beat entry whose stale copies (piled up while no worker ran) are dropped, not run."""
    return {"task": task, "schedule": seconds, "options": {"expires": max(2 * seconds, 2.0)}}


CELERY_BEAT_SCHEDULE = {
    "monitor-sockets": _tick("instances.tasks.monitor_sockets", SMARTSOCKET_MONITOR_TICK),
    "enforce-deadlines": _tick("instances.tasks.enforce_deadlines", SMARTSOCKET_DEADLINE_SWEEP),
    "reconcile-sockets": _tick("sockets.tasks.reconcile_sockets", SMARTSOCKET_RECONCILE_SWEEP),
    "watch-sockets": _tick("instances.tasks.watch_sockets", SMARTSOCKET_OFF_WATCH_INTERVAL),
    "deliver-callbacks": _tick("instances.tasks.deliver_callbacks", SMARTSOCKET_CALLBACK_SWEEP),
    "verify-ledger": _tick("audit.tasks.verify_ledger", SMARTSOCKET_LEDGER_VERIFY_INTERVAL),
    "roll-up-samples": _tick("sockets.tasks.roll_up_samples", SMARTSOCKET_ROLLUP_INTERVAL),
    # One heartbeat per queue: the worker that runs it shows its queue is served; beat's sending shows beat runs.
    "heartbeat-worker": {**_tick("smartsocket_site.tasks.heartbeat", SMARTSOCKET_HEARTBEAT_INTERVAL), "args": ("worker",)},
    "heartbeat-safety": {**_tick("smartsocket_site.tasks.heartbeat", SMARTSOCKET_HEARTBEAT_INTERVAL), "args": ("safety",)},
}
CELERY_BEAT_SCHEDULE["heartbeat-worker"]["options"]["queue"] = CELERY_TASK_DEFAULT_QUEUE
CELERY_BEAT_SCHEDULE["heartbeat-safety"]["options"]["queue"] = SMARTSOCKET_SAFETY_QUEUE

# Logs: one INFO line per business event (start, stop, deadline, emergency, hand on the plug,
# reconcile); sweeps and Celery's per-task chatter stay below INFO. LOG_FORMAT=json: one JSON
# object per line (python-json-logger), from web, workers and beat alike.
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use text or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                 "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}},
    },
    "filters": {"quiet_celery": {"()": "smartsocket_site.logs.QuietCelery"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["quiet_celery"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "urllib3": {"level": "ERROR"},  # retry chatter; device faults are logged once, by the services
    },
}
# The worker and beat log through LOGGING above, not Celery's own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
