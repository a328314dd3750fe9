"""Settings precedence, the config file, and the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from thorcut.config import load_settings
from thorcut.errors import ConfigError
from thorcut.manifest import DEFAULT_MANIFEST, Tolerance


def test_flag_beats_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thorcut.toml").write_text('redis_url = "redis://file:1/0"\ntimeout = "5s"\nprefix = "fromfile"\n')
    env = {"THORCUT_REDIS_URL": "redis://env:2/0", "THORCUT_TIMEOUT": "300ms"}
    s = load_settings({"redis_url": "redis://flag:3/0"}, env=env)
    assert (s.redis_url, s.timeout, s.prefix) == ("redis://flag:3/0", 0.3, "fromfile")
    s = load_settings({}, env=env)
    assert s.redis_url == "redis://env:2/0"
    s = load_settings({}, env={})
    assert (s.redis_url, s.timeout) == ("redis://file:1/0", 5.0)
    assert s.config_file == tmp_path / "thorcut.toml"


def test_pyproject_tool_section_is_read_from_a_parent_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.thorcut]\nprefix = "proj"\nverdict_validity = "2h"\n')
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    s = load_settings({}, env={})
    assert (s.prefix, s.verdict_validity) == ("proj", 7200.0)


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({}, env={"THORCUT_OPERATOR": "alice"})
    assert (s.redis_url, s.prefix, s.timeout, s.verdict_validity, s.operator) == (
        "redis://127.0.0.1:6379/0",
        "thorcut",
        2.0,
        86400.0,
        "alice",
    )
    assert s.features == ("account_balance", "positions", "intraday", "global_market")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("redis_ur = 'x'", "unknown settings ['redis_ur']"),
        ("prefix = 'has space'", "may hold only"),
        ("timeout = -1", "must be positive"),
        ("[features.positions]\nthresholds = {min_paired = 'many'}", "min_paired must be a non-negative number"),
        ("[features.positions]\nignore_paths = ['a']", "unknown keys ['ignore_paths']"),
        ("[features.orders]\ntypes = ['order']", "needs ['rest']"),
        ("[features.positions]\nws = {seq = 'seq', id = 'x'}", "unknown keys ['id']"),
        ("[features.positions]\nrest = [{path = '/x'}]", "features.positions.rest is malformed"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thorcut.toml").write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings({}, env={})


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, config=tmp_path / "nope.toml", env={})


def test_manifest_overrides_merge_onto_defaults_and_add_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thorcut.toml").write_text(
        "[features.positions]\n"
        "ignore = ['positions[*].updated_at']\n"
        "tolerance = {'positions[*].avg_price' = {abs = 0.01, rel = 1e-6}}\n"
        "thresholds = {min_paired = 10}\n"
        "[features.orders]\n"
        "types = ['order']\n"
        "rest = [{type = 'order', path = '/api/orders/{key}'}]\n"
    )
    m = load_settings({}, env={}).manifest
    positions = m.get("positions")
    assert positions.ignore == ("positions[*].updated_at",)
    assert positions.tolerance == (("positions[*].avg_price", Tolerance(0.01, 1e-6)),)
    assert positions.thresholds.min_paired == 10
    assert positions.thresholds.min_duration == 60.0
    assert positions.keyed_lists == (("positions", "symbol"),)  # untouched default kept
    assert m.names[-1] == "orders"
    assert m.get("orders").env_override == "WS_FEATURE_ORDERS"


def test_default_manifest_describes_the_reference_backend() -> None:
    intraday = DEFAULT_MANIFEST.get("intraday")
    assert intraday.types == ("intraday_bar", "vwap")
    assert [e.path for e in intraday.rest] == ["/api/intraday/{key}/bar", "/api/intraday/{key}/vwap"]
    assert DEFAULT_MANIFEST.get("global_market").env_override == "WS_FEATURE_GLOBAL_MARKET"
    t = DEFAULT_MANIFEST.get("positions").thresholds
    assert (t.min_paired, t.min_duration, t.max_mismatch_rate, t.max_gaps) == (50, 60.0, 0.0, 0)
    assert DEFAULT_MANIFEST.to_dict()["features"]["positions"]["keyed_lists"] == {"positions": "symbol"}


def test_the_stream_table_says_whether_the_backend_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``[stream] resume`` (docs/contracts.md, "Resuming a stream"): true for the reference backend."""
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_MANIFEST.stream.resume is True
    assert DEFAULT_MANIFEST.to_dict()["stream"] == {"resume": True}
    assert DEFAULT_MANIFEST.get("positions").thresholds.max_resyncs == 3
    toml = "[stream]\nresume = false\n[features.positions.thresholds]\nmax_resyncs = 0\n"
    (tmp_path / "thorcut.toml").write_text(toml)
    m = load_settings({}, env={}).manifest
    assert m.stream.resume is False
    assert m.get("positions").thresholds.max_resyncs == 0
    assert m.names == DEFAULT_MANIFEST.names
    (tmp_path / "thorcut.toml").write_text("[stream]\nresume = false\n")
    assert load_settings({}, env={}).manifest.features == DEFAULT_MANIFEST.features
    (tmp_path / "thorcut.toml").unlink()
    (tmp_path / "pyproject.toml").write_text("[tool.thorcut.stream]\nresume = false\n")
    assert load_settings({}, env={}).manifest.stream.resume is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[stream]\nresume = "no"\n', "stream.resume must be true or false, not 'no'"),
        ("[stream]\nresume = 1\n", "stream.resume must be true or false, not 1"),
        ("[stream]\nreplay = true\n", "stream: unknown keys ['replay']; expected ['resume']"),
        ("stream = 5\n", "[stream] must be a table"),
        ("[features.positions.thresholds]\nmax_resyncs = -1\n", "max_resyncs must be a non-negative number"),
    ],
)
def test_a_bad_stream_table_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thorcut.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, env={})
    assert message in str(caught.value)


# -- issue 9: nothing falls back silently, nothing overflows later ----------------------------------


def test_set_but_empty_variable_is_an_error_not_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("THORCUT_REDIS_URL", "THORCUT_PREFIX", "THORCUT_CONFIG"):
        with pytest.raises(ConfigError, match=f"{var} is set but empty"):
            load_settings({}, env={var: " "})
    # The backend's settings are refused where they are used, so they never block a rollback.
    for var, name in (("THORCUT_TOKEN", "token"), ("THORCUT_BACKEND_URL", "backend_url"), ("THORCUT_WS_URL", "ws_url")):
        settings = load_settings({}, env={var: " "})
        with pytest.raises(ConfigError, match=f"{var} is set but empty"):
            settings.require(name)
    assert load_settings({}, env={}).redis_url == "redis://127.0.0.1:6379/0"  # unset: the default, as documented


def test_bad_urls_in_the_file_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thorcut.toml").write_text('backend_url = "http://["\n')
    with pytest.raises(ConfigError, match=r"bad backend URL in .*thorcut.toml: backend_url"):
        load_settings({}, env={}).require("backend_url")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('env_override = ["WS_X"]', "env_override must be the name of an environment variable"),
        ('types = "positions"', "types must be a list of strings"),
        ("ignore = [1, 2]", "ignore must be a list of strings"),
    ],
)
def test_feature_fields_of_the_wrong_type_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, message: str
) -> None:
    # Found by tests/commands/test_hostile_inputs.py: a list as env_override reached `status` as a TypeError.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thorcut.toml").write_text(f"[features.positions]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings({}, env={})
