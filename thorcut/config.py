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

from thorcut import redisurl
from thorcut.errors import ConfigError
from thorcut.manifest import DEFAULT_MANIFEST, Manifest, build_manifest
from thorcut.values import check_url, parse_duration

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

#: settings only the commands that talk to the backend use; their problems are raised on use
BACKEND_SETTINGS = frozenset({"backend_url", "ws_url", "token"})


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


#: bounds on a settings file: tomllib is quadratic in a dotted key's parts (`a.b.b.b…` 16,000
#: parts took 2 s, 100,000 over a minute) and recursive in nesting, so refuse the absurd first
MAX_CONFIG_BYTES = 4 * 2**20
MAX_CONFIG_NESTING = 256
_TOML_STRINGS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'')


def _check_toml_size(path: Path, text: str) -> None:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is {len(text):,} characters long; a thorcut settings file is small "
                          f"(limit {MAX_CONFIG_BYTES:,})")  # fmt: skip
    for number, line in enumerate(text.splitlines(), start=1):
        if sum(map(line.count, ".[{")) <= MAX_CONFIG_NESTING:
            continue
        bare = _TOML_STRINGS.sub("", line)
        if sum(map(bare.count, ".[{")) > MAX_CONFIG_NESTING:
            raise ConfigError(f"{path}, line {number}: keys or values nested more than {MAX_CONFIG_NESTING} "
                              "deep; a thorcut settings file needs a few levels")  # fmt: skip


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
        _check_toml_size(path, text)
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}) — "
            "TOML files must be UTF-8; save it as UTF-8, or point --config / THORCUT_CONFIG at the right file"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per level: `a = [[[[…` thousands deep
        raise ConfigError(f"{path} is nested too deeply to be a thorcut settings file") from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        section = tool.get("thorcut", {}) if isinstance(tool, dict) else {}
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
    #: (setting, why it is unusable) for backend settings that only the commands using them check
    deferred: tuple[tuple[str, str], ...] = ()

    def require(self, name: str) -> None:
        """Raise :class:`ConfigError` if setting ``name`` was given but is unusable (empty, malformed)."""
        for setting, why in self.deferred:
            if setting == name:
                raise ConfigError(why)

    @property
    def features(self) -> tuple[str, ...]:
        return self.manifest.names


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _source(name: str, flags: dict[str, Any], environ: Mapping[str, str], where: str) -> str:
    """Return where setting ``name`` came from, as a user would fix it."""
    if name in flags:
        return f"--{name.replace('_', '-')}"
    var = _SETTINGS[name][0]
    return var if var in environ else f"{where}: {name}"


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
    # A variable that is set but empty is what an unset CI secret gives (`${{ secrets.X }}`);
    # falling back to the default would point a CI job at 127.0.0.1 or the default prefix, or
    # send `Authorization: Bearer ` with nothing after it. Say so instead (issue 9).
    # The backend's settings are checked only by the commands that reach the backend (``tail``,
    # ``diff``, ``check``): a stray empty THORCUT_BACKEND_URL must never block a rollback.
    deferred: dict[str, str] = {}
    for var in ("THORCUT_CONFIG", *(v for v, _ in _SETTINGS.values())):
        if var in environ and not environ[var].strip():
            message = (f"{var} is set but empty (an unset CI secret gives exactly that) — set it to a value, "
                       "or unset it to use the default")  # fmt: skip
            name = next((n for n, (v, _) in _SETTINGS.items() if v == var), "")
            if name not in BACKEND_SETTINGS or name in flags:
                raise ConfigError(message)
            deferred[name] = message
    config = config or environ.get("THORCUT_CONFIG")
    path = Path(config) if config else find_config_file()
    if config and not Path(config).is_file():
        raise ConfigError(f"config file {config} does not exist")
    file_data = _read_file(path) if path else {}
    where = str(path) if path else "config"

    unknown = set(file_data) - set(_SETTINGS) - {"features", "stream"}
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)}; known: {sorted(_SETTINGS)}, features, "
                          "stream")  # fmt: skip

    values: dict[str, Any] = {}
    for name, (var, kind) in _SETTINGS.items():
        if name in deferred:
            continue
        if name in flags:
            raw, source = flags[name], f"--{name.replace('_', '-')}"
        elif var in environ:
            raw, source = environ[var], var
        elif name in file_data:
            raw, source = file_data[name], f"{where}: {name}"
        else:
            continue
        if kind is float:
            values[name] = parse_duration(raw, source)
        elif not isinstance(raw, str) or not raw.strip():
            raise ConfigError(f"{source} must be a non-empty string")
        elif not _is_utf8(raw):  # undecodable bytes in the environment arrive as lone surrogates
            raise ConfigError(f"{source} is not valid UTF-8 text — write it in UTF-8")
        else:
            values[name] = raw
    if "redis_url" in values:
        redisurl.parse_redis_url(values["redis_url"], _source("redis_url", flags, environ, where))
    for name, schemes, what in (("backend_url", ("http", "https"), "backend URL"),
                                ("ws_url", ("ws", "wss"), "WebSocket URL")):  # fmt: skip
        if name in values:
            try:
                check_url(values[name], _source(name, flags, environ, where), schemes, what)
            except ConfigError as exc:
                if name in flags:
                    raise
                deferred[name] = str(exc)
                del values[name]
    values.setdefault("operator", _default_operator())
    prefix = values.get("prefix", "thorcut")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", prefix):
        raise ConfigError(f"prefix {prefix!r} may hold only letters, digits and _ . : -")
    manifest = build_manifest(file_data.get("features"), stream=file_data.get("stream"))
    return Settings(config_file=path, manifest=manifest, deferred=tuple(deferred.items()), **values)
