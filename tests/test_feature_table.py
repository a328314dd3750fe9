"""The features are described three times, once per program, and the three must agree.

thorcut's built-in manifest (``thorcut.manifest.DEFAULT_MANIFEST``) says how thorcut reads the
reference backend; the backend's feature table (``backend/thor_trading/features.py``) is what the
backend serves; the page's ``frontend/src/types.ts`` is what the page expects. A feature or message
type that one of them gains or loses, or a REST path or env override that differs, fails here.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.backend_fixtures import BACKEND
from thorcut.manifest import DEFAULT_MANIFEST

TYPES_TS = Path(__file__).resolve().parents[1] / "frontend" / "src" / "types.ts"


@pytest.fixture(scope="module")
def backend() -> Iterator[ModuleType]:
    """The backend's feature table (plain Python: no Django set-up needed)."""
    added = str(BACKEND) not in sys.path
    if added:
        sys.path.insert(0, str(BACKEND))
    try:
        from thor_trading import features

        yield features
    finally:
        if added:
            sys.path.remove(str(BACKEND))


def _ts_const(text: str, name: str, open_: str, close: str) -> str:
    """The body between ``open_`` and ``close`` of ``export const <name> … = <open_> … <close>``."""
    match = re.search(rf"export const {name}\b[^=]*=\s*\{open_}(.*?)\{close}", text, re.S)
    assert match, f"{TYPES_TS.name} no longer declares `export const {name} = {open_}…{close}`: update this test"
    return match.group(1)


def _strings(body: str) -> list[str]:
    return re.findall(r'"([^"\\]*)"', body)


@pytest.fixture(scope="module")
def page() -> dict[str, Any]:
    """What ``types.ts`` declares: the features in order, the message types, and type -> feature."""
    text = TYPES_TS.read_text()
    pairs = re.findall(r'(\w+|"[^"]*")\s*:\s*"([^"]*)"', _ts_const(text, "TYPE_FEATURE", "{", "}"))
    return {
        "features": _strings(_ts_const(text, "FEATURES", "[", "]")),
        "types": _strings(_ts_const(text, "ENVELOPE_TYPES", "[", "]")),
        "type_feature": {key.strip('"'): feature for key, feature in pairs},
    }


def test_the_three_name_the_same_features_in_the_same_order(backend: ModuleType, page: dict[str, Any]) -> None:
    manifest = list(DEFAULT_MANIFEST.names)
    assert list(backend.NAMES) == manifest, "the backend's feature table and thorcut's manifest differ"
    assert page["features"] == manifest, "types.ts FEATURES and thorcut's manifest differ"


def test_the_three_map_the_same_message_types_to_the_same_features(backend: ModuleType, page: dict[str, Any]) -> None:
    manifest = {t: f.name for f in DEFAULT_MANIFEST.features for t in f.types}
    assert manifest == backend.TYPE_FEATURE, "the backend's feature table and thorcut's manifest differ"
    assert page["type_feature"] == manifest, "types.ts TYPE_FEATURE and thorcut's manifest differ"
    assert page["types"] == list(manifest), "types.ts ENVELOPE_TYPES and thorcut's manifest differ"
    for feature in backend.FEATURES:  # and each feature lists its types in the same order
        assert feature.types == DEFAULT_MANIFEST.get(feature.name).types, feature.name


def test_backend_and_manifest_agree_on_rest_paths_and_env_overrides(backend: ModuleType) -> None:
    ours = {f.name: ({(e.type, e.path) for e in f.rest}, f.env_override) for f in backend.FEATURES}
    theirs = {f.name: ({(e.type, e.path) for e in f.rest}, f.env_override) for f in DEFAULT_MANIFEST.features}
    assert ours == theirs, "REST paths or env overrides differ between the backend's table and thorcut's manifest"


def test_every_message_type_has_one_rest_endpoint(backend: ModuleType) -> None:
    """Each type's state can be read over REST: that is what thorcut pairs a pushed message with."""
    endpoints = [e.type for f in backend.FEATURES for e in f.rest]
    assert sorted(endpoints) == sorted(backend.TYPE_FEATURE)
