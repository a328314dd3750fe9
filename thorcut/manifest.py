"""The manifest: what each feature looks like on the wire and how parity is judged.

Built-in defaults (``reference_manifest.toml``, data in the same format) describe the reference
backend (docs/contracts.md, "The features"); ``thorcut.toml``
(or ``[tool.thorcut]`` in ``pyproject.toml``) may override any field of a feature or add new
features. Paths are dotted with ``[*]`` wildcards over list items, relative to the compared
body (``positions[*].updated_at``). The ``[stream]`` table says what the backend's WebSocket
stream supports (:class:`StreamSpec`).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

from thorcut.errors import ConfigError


@dataclass(frozen=True)
class Endpoint:
    """One REST endpoint: the message type it mirrors and its path template."""

    type: str
    path: str  # ``{key}`` is replaced by the message key


@dataclass(frozen=True)
class Locators:
    """Where the ``seq``, ``key`` and compared body sit in a payload (dotted paths; "" = whole)."""

    seq: str = "seq"
    key: str = "key"
    body: str = "data"


@dataclass(frozen=True)
class Tolerance:
    """Numeric tolerance for one path: equal when ``|a-b| <= max(abs, rel*max(|a|,|b|))``."""

    abs: float = 0.0
    rel: float = 0.0


@dataclass(frozen=True)
class Thresholds:
    """When a verdict may be PASS (docs/contracts.md, "The parity verdict")."""

    min_paired: int = 50
    min_duration: float = 60.0
    max_mismatch_rate: float = 0.0
    max_gaps: int = 0
    max_duplicates: int = 0
    max_out_of_order: int = 0
    max_resyncs: int = 3  # a resync is staleness that healed, not a silent loss (docs/contracts.md)


@dataclass(frozen=True)
class StreamSpec:
    """What the backend's WebSocket stream supports (the manifest's ``[stream]`` table).

    ``resume``: after a reconnect thorcut sends ``{"action": "resume", "since": [...]}`` and judges
    what follows against the last ``seq`` it held (docs/contracts.md, "Resuming a stream"); false
    for a backend without the command: each stream then starts afresh after a reconnect.
    """

    resume: bool = True


@dataclass(frozen=True)
class FeatureSpec:
    """Everything thorcut knows about one feature."""

    name: str
    types: tuple[str, ...]
    rest: tuple[Endpoint, ...]
    env_override: str
    ws: Locators = Locators()
    rest_locators: Locators = Locators()
    ignore: tuple[str, ...] = ()
    tolerance: tuple[tuple[str, Tolerance], ...] = ()
    keyed_lists: tuple[tuple[str, str], ...] = ()
    thresholds: Thresholds = Thresholds()

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain JSON-able data (for recordings and ``--json``)."""
        out = asdict(self)
        out["tolerance"] = {p: asdict(t) for p, t in self.tolerance}
        out["keyed_lists"] = dict(self.keyed_lists)
        out["rest_locators"] = out.pop("rest_locators")
        return out


@dataclass(frozen=True)
class Manifest:
    """The features, in display order."""

    features: tuple[FeatureSpec, ...] = field(default_factory=tuple)
    stream: StreamSpec = StreamSpec()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def get(self, name: str) -> FeatureSpec:
        """Return the spec of ``name``; raise :class:`ConfigError` if unknown."""
        for spec in self.features:
            if spec.name == name:
                return spec
        raise ConfigError(f"unknown feature {name!r}; valid features: {', '.join(self.names)}")

    def to_dict(self) -> dict[str, Any]:
        return {"features": {f.name: f.to_dict() for f in self.features}, "stream": asdict(self.stream)}


_SIMPLE = {"types", "env_override", "ignore"}


def _locators(raw: Any, where: str) -> Locators:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table with seq, key and body paths")
    unknown = set(raw) - {"seq", "key", "body"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected seq, key, body")
    if not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError(f"{where}: paths must be strings")
    return replace(Locators(), **raw)


def _thresholds(raw: Any, base: Thresholds, where: str) -> Thresholds:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    names = {f.name: f.type for f in fields(Thresholds)}
    unknown = set(raw) - set(names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected {sorted(names)}")
    values = dict(raw)
    for k, v in raw.items():
        if k == "min_duration" and isinstance(v, str):
            from thorcut.values import parse_duration

            values[k] = v = parse_duration(v, f"{where}.{k}")
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{where}.{k} must be a non-negative number, not {v!r}")
    return replace(base, **values)


def _feature(name: str, raw: Any, base: FeatureSpec | None) -> FeatureSpec:
    where = f"features.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    known = {f.name for f in fields(FeatureSpec)} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    if base is None:
        missing = {"types", "rest"} - set(raw)
        if missing:
            raise ConfigError(f"{where} is a new feature and needs {sorted(missing)}")
        base = FeatureSpec(name=name, types=(), rest=(), env_override=f"WS_FEATURE_{name.upper()}")
    spec = base
    try:
        for key, value in raw.items():
            if key == "env_override":
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError(f"{where}.env_override must be the name of an environment variable, "
                                      f"such as \"WS_FEATURE_{name.upper()}\", not {value!r}")  # fmt: skip
                spec = replace(spec, env_override=value)
            elif key in _SIMPLE:  # lists of strings: a lone string would be read letter by letter
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{where}.{key} must be a list of strings, such as [\"a\", \"b\"], "
                                      f"not {value!r}")  # fmt: skip
                spec = replace(spec, **cast(dict[str, Any], {key: tuple(value)}))
            elif key == "rest":
                spec = replace(spec, rest=tuple(Endpoint(str(e["type"]), str(e["path"])) for e in value))
            elif key in ("ws", "rest_locators"):
                spec = replace(spec, **cast(dict[str, Any], {key: _locators(value, f"{where}.{key}")}))
            elif key == "tolerance":
                spec = replace(
                    spec,
                    tolerance=tuple(
                        (str(p), Tolerance(float(t.get("abs", 0)), float(t.get("rel", 0)))) for p, t in value.items()
                    ),
                )
            elif key == "keyed_lists":
                spec = replace(spec, keyed_lists=tuple((str(p), str(k)) for p, k in value.items()))
            elif key == "thresholds":
                spec = replace(spec, thresholds=_thresholds(value, spec.thresholds, f"{where}.thresholds"))
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{where}.{key} is malformed ({exc})") from None
    return spec


def _stream(raw: Any, base: StreamSpec) -> StreamSpec:
    if not isinstance(raw, dict):
        raise ConfigError("[stream] must be a table, such as [stream] resume = false")
    names = [f.name for f in fields(StreamSpec)]
    unknown = set(raw) - set(names)
    if unknown:
        raise ConfigError(f"stream: unknown keys {sorted(unknown)}; expected {names}")
    for k, v in raw.items():
        if not isinstance(v, bool):
            raise ConfigError(f"stream.{k} must be true or false, not {v!r}")
    return replace(base, **raw)


def build_manifest(raw_features: Any, base: Manifest | None = None, *, stream: Any = None) -> Manifest:
    """Return ``base`` (default: the built-in manifest) with ``raw_features`` (the ``[features]``
    table) and ``stream`` (the ``[stream]`` table) applied.

    Raises :class:`ConfigError` naming the first malformed entry.
    """
    base = DEFAULT_MANIFEST if base is None else base
    spec = base.stream if stream is None else _stream(stream, base.stream)
    if raw_features is None:
        return base if spec == base.stream else replace(base, stream=spec)
    if not isinstance(raw_features, dict):
        raise ConfigError("[features] must be a table of feature tables")
    specs = {f.name: f for f in base.features}
    for name, raw in raw_features.items():
        specs[name] = _feature(name, raw, specs.get(name))
    return Manifest(tuple(specs.values()), spec)


def _reference_manifest() -> Manifest:
    """The built-in manifest, read from ``reference_manifest.toml`` beside this module through the
    same parser as a project's own ``[features]`` table."""
    data = tomllib.loads((Path(__file__).parent / "reference_manifest.toml").read_text(encoding="utf-8"))
    return build_manifest(data["features"], Manifest(), stream=data.get("stream"))


#: The features of the reference backend, in display order (``reference_manifest.toml``).
DEFAULT_MANIFEST = _reference_manifest()
