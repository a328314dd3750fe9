"""Settings: a command-line flag wins, then a ``THORCUT_*`` environment variable, then the file.

The file is ``thorcut.toml`` (top level) or ``[tool.thorcut]`` in ``pyproject.toml``, found in the
current directory or the nearest parent, or named by ``--config`` / ``THORCUT_CONFIG``.
"""

from __future__ import annotations

import getpass
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from thorcut.errors import ConfigError
from thorcut.manifest import DEFAULT_MANIFEST, Manifest, build_manifest

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_BACKEND_URL = "http://127.0.0.1:8000"

#: setting name -> (environment variable, type)
_SETTINGS: dict[str, tuple[str, type]] = {
    "redis_url": ("THORCUT_REDIS_URL", str),
    "backend_url": ("THORCUT_BACKEND_URL", str),
    "ws_url": ("THORCUT_WS_URL", str),
    "token": ("THORCUT_TOKEN", str),
    "prefix": ("THORCUT_PREFIX", str),
    "timeout": ("THORCUT_TIMEOUT", float),
    "operator": ("THORCUT_OPERATOR", str),
    "verdict_validity": ("THORCUT_VERDICT_VALIDITY", float),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object, name: str) -> float:
    """Return seconds from a number or a string like ``"24h"``/``"500ms"``; raise ConfigError."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(f"{name} must be a duration such as 2, 2s, 500ms or 24h, not {value!r}")
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{name} must be positive, not {value!r}")
    return seconds


def redact_url(url: str) -> str:
    """Return ``url`` with any password (and token-like query values) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else userinfo
        # A lone userinfo with no colon is a password in redis:// URLs ("redis://secret@host").
        netloc = (f"{user}:***@{host}" if user else f":***@{host}") if ":" in userinfo else f"***@{host}"
    query = re.sub(r"(?i)((?:password|token|secret|key)=)[^&]*", r"\1***", parts.query)
    # Built by hand: urlunsplit would turn unix:///path into unix:/path.
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def find_config_file(start: Path | None = None) -> Path | None:
    """Return the nearest ``thorcut.toml`` or ``pyproject.toml`` with ``[tool.thorcut]``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "thorcut.toml"
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.thorcut" in pyproject.read_text(errors="replace"):
            return pyproject
    return None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        section = data.get("tool", {}).get("thorcut", {})
        return section if isinstance(section, dict) else {}
    return data


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one invocation."""

    redis_url: str = DEFAULT_REDIS_URL
    backend_url: str = DEFAULT_BACKEND_URL
    ws_url: str = ""  # default: backend_url with ws(s):// and /ws/stream/
    token: str = ""  # sent as ``Authorization: Bearer <token>``; never printed
    prefix: str = "thorcut"
    timeout: float = 2.0
    operator: str = ""
    verdict_validity: float = 24 * 3600.0
    config_file: Path | None = None
    manifest: Manifest = field(default=DEFAULT_MANIFEST)

    @property
    def features(self) -> tuple[str, ...]:
        return self.manifest.names


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid:{os.getuid()}"


def load_settings(
    flags: dict[str, Any] | None = None,
    *,
    config: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Return settings from ``flags`` (None = not given), the environment, then the file.

    Raises :class:`ConfigError` for an unreadable or malformed file or a bad value.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    config = config or environ.get("THORCUT_CONFIG")
    path = Path(config) if config else find_config_file()
    if config and not Path(config).is_file():
        raise ConfigError(f"config file {config} does not exist")
    file_data = _read_file(path) if path else {}
    where = str(path) if path else "config"

    unknown = set(file_data) - set(_SETTINGS) - {"features"}
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)}; known: {sorted(_SETTINGS)}, features")

    values: dict[str, Any] = {}
    for name, (var, kind) in _SETTINGS.items():
        if name in flags:
            raw, source = flags[name], f"--{name.replace('_', '-')}"
        elif environ.get(var):
            raw, source = environ[var], var
        elif name in file_data:
            raw, source = file_data[name], f"{where}: {name}"
        else:
            continue
        if kind is float:
            values[name] = parse_duration(raw, source)
        elif not isinstance(raw, str) or not raw:
            raise ConfigError(f"{source} must be a non-empty string")
        else:
            values[name] = raw
    values.setdefault("operator", _default_operator())
    prefix = values.get("prefix", "thorcut")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", prefix):
        raise ConfigError(f"prefix {prefix!r} may hold only letters, digits and _ . : -")
    manifest = build_manifest(file_data.get("features"))
    return Settings(config_file=path, manifest=manifest, **values)
