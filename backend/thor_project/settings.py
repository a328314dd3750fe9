"""Settings for the Thor backend, all from the environment (defaults suit `thorcut dev up`).

THOR_SECRET_KEY, THOR_DEBUG, THOR_ALLOWED_HOSTS, DATABASE_URL (SQLite by default),
THORCUT_REDIS_URL / THORCUT_PREFIX (flags), THOR_CHANNEL_REDIS_URL (channel layer; defaults to
the flags Redis), THOR_CHANNEL_LAYER (pubsub|core), THOR_TICK (heartbeat seconds),
THOR_SEED, THOR_FAULTS, THOR_WS_QUEUE (per-connection send buffer), THOR_WS_MAX_MESSAGE,
THOR_FRONTEND_DIST (the built page served at ``/``; default ``<repo>/frontend/dist``),
THOR_ALLOWED_ORIGINS (browser origins, ``scheme://host:port``, that may open a WebSocket besides
the server's own; default: the dev front end and ``dev up``'s port).

Resuming a stream (docs/contracts.md, "Resuming a stream"): THOR_HISTORY_SIZE (envelopes kept per
stream, 100), THOR_HISTORY_TTL (seconds a stream's history outlives its last message, 120),
THOR_RESUME_REPLAY_MAX (most envelopes one stream replays; more missing answer with a resync, 50),
THOR_LAYER_PROBE (seconds between a worker's probes of its own channel-layer path, 0.25),
THOR_LAYER_PROBE_TIMEOUT (seconds after which a probe not back means the path broke, 1.0).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


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
CHANNEL_LAYER = env("THOR_CHANNEL_LAYER", "pubsub")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": (
            "channels_redis.pubsub.RedisPubSubChannelLayer"
            if CHANNEL_LAYER == "pubsub"
            else "channels_redis.core.RedisChannelLayer"
        ),
        "CONFIG": {"hosts": [CHANNEL_REDIS_URL], "prefix": f"{THORCUT_PREFIX}.thor"},
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
