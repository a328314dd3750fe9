"""Settings for the Thor backend, all from the environment (defaults suit `thorcut dev up`).

THOR_SECRET_KEY, THOR_DEBUG, THOR_ALLOWED_HOSTS, DATABASE_URL (SQLite by default),
THORCUT_REDIS_URL / THORCUT_PREFIX (flags), THOR_CHANNEL_REDIS_URL (channel layer; defaults to
the flags Redis), THOR_CHANNEL_LAYER (pubsub|core), THOR_TICK (heartbeat seconds),
THOR_SEED, THOR_FAULTS, THOR_WS_QUEUE (per-connection send buffer), THOR_WS_MAX_MESSAGE,
THOR_FRONTEND_DIST (the built page served at ``/``; default ``<repo>/frontend/dist``),
THOR_ALLOWED_ORIGINS (browser origins, ``scheme://host:port``, that may open a WebSocket besides
the server's own; default: the dev front end and ``dev up``'s port).

Counting REST reads (docs/contracts.md, "Retiring REST"; ``thor_trading.rest_reads``):
THOR_REST_COUNTING (1: count each feature's REST reads per client in Redis; 0: off, no keys),
THOR_REST_COUNT_FLUSH (seconds between writes of a process's counts to Redis, 1.0; more than 0,
at most 60).

Resuming a stream (docs/contracts.md, "Resuming a stream"): THOR_HISTORY_SIZE (envelopes kept per
stream, 100), THOR_HISTORY_TTL (seconds a stream's history outlives its last message, 120),
THOR_RESUME_REPLAY_MAX (most envelopes one stream replays; more missing answer with a resync, 50),
THOR_LAYER_PROBE (seconds between a worker's probes of its own channel-layer path, 0.25),
THOR_LAYER_PROBE_TIMEOUT (seconds after which a probe not back means the path broke, 1.0).

Redis through Sentinel (issue 13): both Redis URLs may be Sentinel URLs,
``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` (thorcut's
``parse_redis_url``; docs in ``thorcut/redisurl.py``), and then every connection the backend makes
(flag watcher, leader lock, channel layer, stream history, outage probe) asks the Sentinels for the
current primary whenever it connects, so a failover needs no restart. Each query to a Sentinel is
bounded (the URL's ``sentinel_timeout``, 0.25 s), so one unreachable Sentinel delays a reconnect by
that much, never longer than a broadcaster's send timeout.

With Sentinel use the **pubsub** layer (the default); it needs no setting of its own. Its state,
the channels and groups a worker listens to, lives in the worker: redis-py re-subscribes every one
of them on each new connection, and a new connection goes to the primary the Sentinels name. In
tests/backend/test_sentinel.py (the primary killed with ``kill -9``; Sentinels that judge it down
after 1 s) the replica was promoted about 2.2 s after the kill, and each worker's layer was
receiving on it again within about 1 s (channels_redis's receive task retries once a second): every
client was current again 0.7-1.1 s after the promotion. What was published meanwhile is lost, not
delayed, and never silently: each worker's hub saw its probes fail during the outage and healed
every stream (replayed or resynced, ``global_markets/hub.py``) once its first probe came back.

The core layer (``THOR_CHANNEL_LAYER=core``) is not for Sentinel. It keeps group memberships and
queued messages in the primary's data, which reaches the replica asynchronously: a ``group_add``
the old primary acknowledged but had not yet replicated is gone after a failover with no error,
and no probe notices (probes go to the hub's own channel, not through a group), so that worker's
clients would silently stop getting the group's messages. (A core layer on its own, sending and
receiving 10 messages a second, did carry on through the same failover; under this backend's hub
and jobs it falls behind even on a plain Redis: probes refused with ChannelFull.)
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from thorcut.flags import parse_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def env_switch(name: str, default: bool) -> bool:
    """A yes/no variable: 1/true/yes/on or 0/false/no/off; anything else stops the process naming it."""
    raw = env(name, "1" if default else "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: use 1 (on) or 0 (off)")


def env_seconds(name: str, default: float, *, most: float) -> float:
    """Seconds from a variable: a number more than 0 and at most ``most``; else stop naming it."""
    raw = env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= most:  # also NaN and infinity
        raise ImproperlyConfigured(f"{name}={raw!r}: give seconds, more than 0 and at most {most:g}")
    return value


SECRET_KEY = env("THOR_SECRET_KEY", "thor-dev-only-not-secret")
DEBUG = env("THOR_DEBUG", "0") == "1"
ALLOWED_HOSTS = [h.strip() for h in env("THOR_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "thor_trading",
    "global_markets",
    "thor_runner",
]

MIDDLEWARE = [
    # First, so that requests refused before their view (CSRF, 405) are counted too.
    "thor_trading.rest_reads.count_rest_reads",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "thor_project.urls"
ASGI_APPLICATION = "thor_project.asgi.application"
TEMPLATES: list[dict[str, object]] = []

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'thor.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The heartbeat writes while workers read: WAL keeps readers from blocking the writer.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

THORCUT_REDIS_URL = env("THORCUT_REDIS_URL", "redis://127.0.0.1:6379/0")
THORCUT_PREFIX = env("THORCUT_PREFIX", "thorcut")
CHANNEL_REDIS_URL = env("THOR_CHANNEL_REDIS_URL", THORCUT_REDIS_URL)
# Parsed here too, so a malformed URL stops the process at start-up naming the variable to fix.
parse_redis_url(THORCUT_REDIS_URL, "THORCUT_REDIS_URL")
_channel_redis = parse_redis_url(CHANNEL_REDIS_URL, "THOR_CHANNEL_REDIS_URL")
CHANNEL_LAYER = env("THOR_CHANNEL_LAYER", "pubsub")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": (
            "channels_redis.pubsub.RedisPubSubChannelLayer"
            if CHANNEL_LAYER == "pubsub"
            else "channels_redis.core.RedisChannelLayer"
        ),
        "CONFIG": {"hosts": [_channel_redis.channel_layer_host()], "prefix": f"{THORCUT_PREFIX}.thor"},
    }
}

THOR_TICK = float(env("THOR_TICK", "1.0"))
THOR_SEED = int(env("THOR_SEED", "7"))
THOR_FAULTS = env("THOR_FAULTS", "")
THOR_WS_QUEUE = int(env("THOR_WS_QUEUE", "256"))
THOR_WS_MAX_MESSAGE = int(env("THOR_WS_MAX_MESSAGE", "65536"))
THOR_HISTORY_SIZE = int(env("THOR_HISTORY_SIZE", "100"))
THOR_HISTORY_TTL = int(env("THOR_HISTORY_TTL", "120"))
THOR_RESUME_REPLAY_MAX = int(env("THOR_RESUME_REPLAY_MAX", "50"))
THOR_LAYER_PROBE = float(env("THOR_LAYER_PROBE", "0.25"))
THOR_LAYER_PROBE_TIMEOUT = float(env("THOR_LAYER_PROBE_TIMEOUT", "1.0"))
THOR_REST_COUNTING = env_switch("THOR_REST_COUNTING", True)
THOR_REST_COUNT_FLUSH = env_seconds("THOR_REST_COUNT_FLUSH", 1.0, most=60.0)
THOR_FRONTEND_DIST = env("THOR_FRONTEND_DIST", str(BASE_DIR.parent / "frontend" / "dist"))
THOR_ALLOWED_ORIGINS = [o.strip() for o in env(
    "THOR_ALLOWED_ORIGINS", "http://localhost:5173,http://127.0.0.1:5173,http://localhost:8000,http://127.0.0.1:8000"
).split(",") if o.strip()]  # fmt: skip

SESSION_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "thor_trading.views.csrf_failure"  # JSON, like every other API error
CSRF_TRUSTED_ORIGINS = [f"http://{h}" for h in ALLOWED_HOSTS] + [f"http://{h}:8000" for h in ALLOWED_HOSTS]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("THOR_LOG_LEVEL", "WARNING")},
}
