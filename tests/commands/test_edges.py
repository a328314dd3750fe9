"""Issue 9, "Hold at the edges": input that used to end in a traceback (or silently in a default)
exits with a documented code and a message naming the fix; a bug exits 70, never 1.

Each case runs in-process (CliRunner on ``thorcut.cli.app.app``) and the important ones again through
the console script ``.venv/bin/thorcut`` (``thorcut.cli.app.main``), the way CI runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import set_flag
from tests.redis_snapshot import snapshot
from tests.runner import Run
from thorcut.dev.stack import EmbeddedRedis
from thorcut.redisconn import Keys

THORCUT = Path(sys.executable).with_name("thorcut")


def thorcut(*args: str, env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the console script as CI does; no terminal (pipes)."""
    return subprocess.run(
        [str(THORCUT), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, **kw
    )


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
    assert "╭" not in text, text  # no Rich/Typer pretty traceback panel either


# -- the boundary: a bug is exit 70 -----------------------------------------------------------------


def _plant_a_bug(client: redis.Redis, keys: Keys) -> None:
    # A key of the wrong type where status reads worker registrations: Redis answers WRONGTYPE,
    # which no code path expects: a real unexpected exception, no mock needed.
    client.set(keys.workers, "not a sorted set")


def test_unexpected_exception_exits_70_with_a_hint_not_1(run: Run, client: redis.Redis, keys: Keys) -> None:
    _plant_a_bug(client, keys)
    result = run("status")
    assert result.exit_code == 70
    assert result.stderr.startswith("Error: internal error (ResponseError: WRONGTYPE")
    assert "this is a bug in thorcut" in result.stderr
    assert "Re-run with --traceback (or THORCUT_TRACEBACK=1)" in result.stderr
    assert_no_traceback(result.stderr)


@pytest.mark.parametrize("how", ["flag-before", "flag-after", "env"])
def test_traceback_flag_or_variable_shows_the_traceback_and_still_exits_70(
    run: Run, client: redis.Redis, keys: Keys, how: str
) -> None:
    _plant_a_bug(client, keys)
    args, env = {"flag-before": (["--traceback", "status"], None), "flag-after": (["status", "--traceback"], None),
                 "env": (["status"], {"THORCUT_TRACEBACK": "1"})}[how]  # fmt: skip
    result = run(*args, env=env)
    assert result.exit_code == 70
    assert "Traceback (most recent call last)" in result.stderr
    assert "zrangebyscore" in result.stderr
    assert "Error: internal error (ResponseError: WRONGTYPE" in result.stderr
    assert "╭" not in result.stderr  # the plain traceback, never Typer's panel with locals


def test_internal_error_through_the_console_script_exits_70_without_traceback(
    cli_env: dict[str, str], client: redis.Redis, keys: Keys
) -> None:
    _plant_a_bug(client, keys)
    result = thorcut("status", env=cli_env)
    assert result.returncode == 70
    assert result.stderr.startswith("Error: internal error (ResponseError: WRONGTYPE")
    assert_no_traceback(result.stderr)
    shown = thorcut("status", "--traceback", env=cli_env)
    assert shown.returncode == 70
    assert "Traceback (most recent call last)" in shown.stderr
    assert "╭" not in shown.stderr


def test_internal_error_during_parameter_conversion_exits_70(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    # A bug in a parser runs inside Click's parameter conversion, before any command code.
    def broken(*args: object, **kwargs: object) -> float:
        raise RuntimeError("parser bug")

    monkeypatch.setattr("thorcut.cli.options.parse_seconds", broken)
    result = run("status", "--timeout", "1")
    assert result.exit_code == 70
    assert result.stderr.startswith("Error: internal error (RuntimeError: parser bug)")
    assert_no_traceback(result.stderr)


def test_internal_error_message_redacts_passwords(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("failed on redis://ops:hunter2@db:6379/0")

    monkeypatch.setattr("thorcut.commands.status.read_snapshot", broken)
    result = run("status")
    assert result.exit_code == 70
    assert "redis://ops:***@db:6379/0" in result.stderr
    assert "hunter2" not in result.stderr


def test_pretty_exceptions_are_off_in_every_app_built() -> None:
    from thorcut.cli.app import build_app

    for only in (None, "status", "tail"):
        app = build_app(only)
        assert app.pretty_exceptions_enable is False
        assert app.pretty_exceptions_show_locals is False


# -- numbers that used to end in a traceback ---------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e309", "0", "abc"])
def test_timeout_that_is_not_a_finite_positive_number_exits_2(run: Run, value: str) -> None:
    result = run("status", "--timeout", value)
    assert result.exit_code == 2
    assert "Invalid value for '--timeout'" in result.stderr
    assert "31536000 (365 days)" in result.stderr or "number of seconds" in result.stderr
    assert_no_traceback(result.stderr)


@pytest.mark.parametrize("value", ["nan", "inf", "1e309"])
def test_timeout_nan_inf_through_the_console_script_exits_2(cli_env: dict[str, str], value: str) -> None:
    result = thorcut("status", "--timeout", value, env=cli_env)
    assert result.returncode == 2
    assert f"must be a finite number of seconds, from 0.01 to 31536000 (365 days), not {value}" in " ".join(
        result.stderr.replace("│", " ").split()
    )
    assert_no_traceback(result.stderr)


@pytest.mark.parametrize("variable", ["THORCUT_TIMEOUT", "THORCUT_VERDICT_VALIDITY"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e309", "99999999999d"])
def test_duration_variables_that_are_not_finite_exit_2(run: Run, variable: str, value: str) -> None:
    result = run("status", env={variable: value})
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {variable} must be")
    assert_no_traceback(result.stderr)


@pytest.mark.parametrize("text", ["timeout = nan", "timeout = inf", "timeout = 1e309", "verdict_validity = -inf"])
def test_duration_settings_in_the_file_that_are_not_finite_exit_2(run: Run, tmp_path: Path, text: str) -> None:
    (tmp_path / "thorcut.toml").write_text(text + "\n")
    result = run("status")
    assert result.exit_code == 2
    assert "thorcut.toml: " in result.stderr
    assert_no_traceback(result.stderr)


@pytest.mark.parametrize("command", ["shadow", "enable", "disable", "off", "complete"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_wait_nan_or_inf_exits_2_and_changes_nothing(
    run: Run, client: redis.Redis, keys: Keys, prefix: str, command: str, value: str
) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    before = snapshot(client, prefix)
    result = run(command, "positions", "--wait", value)
    assert result.exit_code == 2
    assert "Invalid value for '--wait'" in result.stderr
    assert "finite number of seconds" in " ".join(result.stderr.replace("│", " ").split())
    assert snapshot(client, prefix) == before


def test_wait_nan_through_the_console_script_exits_2(
    cli_env: dict[str, str], client: redis.Redis, keys: Keys, prefix: str
) -> None:
    set_flag(client, keys, "positions", "live", 3, 100)
    before = snapshot(client, prefix)
    result = thorcut("disable", "positions", "--wait", "nan", env=cli_env)
    assert result.returncode == 2
    assert "Invalid value for '--wait'" in result.stderr
    assert_no_traceback(result.stderr)
    assert snapshot(client, prefix) == before


def test_rollback_wait_inf_exits_2(run: Run) -> None:
    result = run("rollback", "--all", "--wait", "inf")
    assert result.exit_code == 2
    assert "Invalid value for '--wait'" in result.stderr


# -- Redis URLs -------------------------------------------------------------------------------------


def test_redis_db_beyond_the_servers_databases_exits_2_naming_the_fix(run: Run, redis_server: EmbeddedRedis) -> None:
    result = run("status", "--redis-url", f"redis://127.0.0.1:{redis_server.port}/99")
    assert result.exit_code == 2
    assert f"Error: Redis at redis://127.0.0.1:{redis_server.port}/99 has no such database" in result.stderr
    assert "DB index is out of range" in result.stderr
    assert "below the server's `databases` setting" in result.stderr


@pytest.mark.parametrize(("db", "shown"), [("-1", "'-1'"), ("abc", "'abc'"), ("0/1", "'0/1'"), ("1?db=x", "'x'")])
def test_redis_db_that_is_not_a_whole_number_exits_2(
    run: Run, redis_server: EmbeddedRedis, db: str, shown: str
) -> None:
    result = run("status", "--redis-url", f"redis://127.0.0.1:{redis_server.port}/{db}")
    assert result.exit_code == 2
    assert "Error: bad Redis URL in --redis-url: the database index must be a whole number" in result.stderr
    assert f"not {shown}" in result.stderr


def test_redis_db_errors_through_the_console_script(cli_env: dict[str, str], redis_server: EmbeddedRedis) -> None:
    for db, message in (("99", "has no such database"), ("-1", "must be a whole number"), ("abc", "whole number")):
        result = thorcut("status", env={**cli_env, "THORCUT_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{db}"})
        assert result.returncode == 2, db
        assert message in result.stderr, db
        assert "THORCUT_REDIS_URL" in result.stderr or "Redis at" in result.stderr
        assert_no_traceback(result.stderr)


def test_redis_url_with_a_db_in_range_still_works(run: Run, redis_server: EmbeddedRedis) -> None:
    base = f"redis://127.0.0.1:{redis_server.port}"
    for url in (f"{base}/3", base, f"{base}/", f"{base}/0?db=2"):
        assert run("status", "--json", "--redis-url", url).exit_code == 0, url


def _no_key_on_the_default_redis(prefix: str) -> None:
    """Read-only: the Redis a silent fallback would have used holds nothing of this test."""
    try:
        default = redis.Redis(port=6379, socket_connect_timeout=0.2, socket_timeout=0.5, decode_responses=True)
        assert list(default.scan_iter(match=f"{{{prefix}}}*", count=1000)) == []
    except redis.ConnectionError:
        pass  # no Redis there: nothing could have been written either


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "THORCUT_REDIS_URL is set but empty (an unset CI secret gives exactly that)"),
        ("   ", "THORCUT_REDIS_URL is set but empty"),
        ("redis://", "bad Redis URL in THORCUT_REDIS_URL: it names no host (redis://)"),
        ("rediss://:pw@", "bad Redis URL in THORCUT_REDIS_URL: it names no host"),
        ("unix://", "bad Redis URL in THORCUT_REDIS_URL: it names no socket path"),
    ],
)
def test_redis_url_never_falls_back_to_the_default(
    cli_env: dict[str, str], prefix: str, value: str, message: str
) -> None:
    result = thorcut("shadow", "positions", env={**cli_env, "THORCUT_REDIS_URL": value})
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert "pw" not in result.stderr
    assert_no_traceback(result.stderr)
    _no_key_on_the_default_redis(prefix)


@pytest.mark.parametrize(
    "variable",
    ["THORCUT_PREFIX", "THORCUT_OPERATOR", "THORCUT_TIMEOUT", "THORCUT_VERDICT_VALIDITY", "THORCUT_CONFIG"],
)
def test_every_thorcut_variable_set_but_empty_exits_2_naming_it(run: Run, prefix: str, variable: str) -> None:
    result = run("shadow", "positions", env={variable: ""})
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {variable} is set but empty")
    assert "unset it to use the default" in result.stderr
    _no_key_on_the_default_redis(prefix)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("THORCUT_TOKEN", ""), ("THORCUT_BACKEND_URL", ""), ("THORCUT_WS_URL", " "), ("THORCUT_BACKEND_URL", "http://[")],
)
def test_a_bad_backend_variable_never_blocks_a_rollback_but_stops_what_reaches_the_backend(
    run: Run, client: redis.Redis, keys: Keys, variable: str, value: str
) -> None:
    # The backend's settings matter only to tail/diff/check; `disable` must work whatever they hold.
    set_flag(client, keys, "positions", "live", 3)
    rollback = run("disable", "positions", "--reason", "incident", env={variable: value})
    assert rollback.exit_code == 0, rollback.stderr
    assert client.hget(keys.flag("positions"), "stage") == "shadow"
    tail = run("tail", "--duration", "1", env={variable: value})
    assert tail.exit_code == 2
    assert variable in tail.stderr
    assert_no_traceback(tail.stderr)


def test_empty_token_never_sends_an_empty_bearer(run: Run) -> None:
    # Refused before any connection: an unset CI secret must not become `Authorization: Bearer `.
    result = run("tail", "--url", "ws://127.0.0.1:1/", "--duration", "1", env={"THORCUT_TOKEN": ""})
    assert result.exit_code == 2
    assert "THORCUT_TOKEN is set but empty" in result.stderr


# -- backend URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tail", "--url", "ws://[", "--duration", "1"], "bad WebSocket URL in --url: Invalid IPv6 URL (ws://[)"),
        (["tail", "--url", "ws://:80/", "--duration", "1"], "bad WebSocket URL in --url: it names no host"),
        (["tail", "--url", "ws://h:99999/", "--duration", "1"], "bad WebSocket URL in --url: Port out of range"),
        (["diff", "positions", "--backend-url", "http://[", "--duration", "1"],
         "bad backend URL in --backend-url: Invalid IPv6 URL (http://[)"),
        (["check", "positions", "--backend-url", "http://", "--duration", "1"],
         "bad backend URL in --backend-url: it names no host"),
    ],
)  # fmt: skip
def test_malformed_backend_urls_exit_2(run: Run, args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert_no_traceback(result.stderr)


def test_malformed_urls_through_the_console_script(cli_env: dict[str, str]) -> None:
    tail = thorcut("tail", "--url", "ws://[", "--duration", "1", env=cli_env)
    assert tail.returncode == 2
    assert tail.stderr.startswith("Error: bad WebSocket URL in --url")
    diff = thorcut("diff", "positions", "--backend-url", "http://[", "--duration", "1", env=cli_env)
    assert diff.returncode == 2
    assert diff.stderr.startswith("Error: bad backend URL in --backend-url")
    via_env = thorcut("tail", "--duration", "1", env={**cli_env, "THORCUT_BACKEND_URL": "http://["})
    assert via_env.returncode == 2
    assert via_env.stderr.startswith("Error: bad backend URL in THORCUT_BACKEND_URL")
    for result in (tail, diff, via_env):
        assert_no_traceback(result.stderr)


@pytest.mark.parametrize("value", ["inf", "nan", "1e309", "0"])
def test_tail_duration_that_is_not_finite_positive_exits_2(run: Run, value: str) -> None:
    result = run("tail", "--url", "ws://127.0.0.1:1/", "--duration", value)
    assert result.exit_code == 2
    assert "Invalid value for '--duration'" in result.stderr
    assert_no_traceback(result.stderr)


def test_tail_duration_inf_through_the_console_script(cli_env: dict[str, str]) -> None:
    result = thorcut("tail", "--url", "ws://127.0.0.1:1/", "--duration", "inf", env=cli_env)
    assert result.returncode == 2
    assert "Invalid value for '--duration'" in result.stderr
    assert_no_traceback(result.stderr)


# -- config files that are not text -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("thorcut.toml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"),
        ("thorcut.toml", 'prefix = "caf\xe9"\n'.encode("latin-1")),
        ("pyproject.toml", b'[tool.thorcut]\nprefix = "x"\n# \xff\xfe\n'),
    ],
    ids=["binary", "latin-1", "pyproject-latin-1"],
)
def test_config_file_that_is_not_utf8_exits_2_naming_it(
    cli_env: dict[str, str], tmp_path: Path, name: str, content: bytes
) -> None:
    (tmp_path / name).write_bytes(content)
    result = thorcut("status", env=cli_env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: {tmp_path / name} is not UTF-8 text (byte 0x")
    assert "TOML files must be UTF-8" in result.stderr
    assert_no_traceback(result.stderr)


def test_binary_config_named_with_config_exits_2(run: Run, tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_bytes(bytes(range(256)))
    result = run("status", "--config", str(tmp_path / "x.toml"))
    assert result.exit_code == 2
    assert "is not UTF-8 text" in result.stderr


def test_pyproject_whose_tool_table_is_not_a_table_is_ignored(run: Run, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('tool = "x"\n# [tool.thorcut]\n')
    result = run("status", "--json")
    assert result.exit_code == 0, result.stderr


# -- found by the hostile-input tests -----------------------------------------------------------------


def test_reason_that_is_not_utf8_exits_2_and_writes_nothing(
    cli_env: dict[str, str], client: redis.Redis, prefix: str
) -> None:
    before = snapshot(client, prefix)
    result = subprocess.run([os.fsencode(THORCUT), b"shadow", b"positions", b"--reason", b"caf\xe9"],
                            env={**os.environ, **cli_env}, capture_output=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(b"Error: --reason is not valid UTF-8 text")
    assert snapshot(client, prefix) == before


@pytest.mark.parametrize("url", ["user:s3cret@127.0.0.1:1", "redis://h\x01:1/0", "redis://h :1/0"])
def test_redis_url_without_scheme_or_with_control_characters_exits_2_without_the_password(run: Run, url: str) -> None:
    result = run("status", env={"THORCUT_REDIS_URL": url})
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: bad Redis URL in THORCUT_REDIS_URL")
    assert "s3cret" not in result.stderr


def test_stored_count_that_is_a_unicode_digit_does_not_break_status(run: Run, client: redis.Redis, keys: Keys) -> None:
    client.hset(keys.parity("positions"), mapping={"verdict": "PASS", "judged_at": "x", "paired": "²"})
    assert run("status", "--json").exit_code == 0
    assert run("shadow", "positions").exit_code == 0


# -- found by tests/commands/test_hostile_inputs.py ------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("socket_timeout=nan", "socket_timeout must be a finite number of seconds"),
        ("socket_connect_timeout=inf", "socket_connect_timeout must be a finite number of seconds"),
        ("ssl_cert_reqs=none", "ssl_cert_reqs is a TLS option; use rediss://"),
        ("foo=bar", "unknown option 'foo'"),
    ],
)
def test_redis_url_options_redis_py_would_choke_on_exit_2(
    run: Run, redis_server: EmbeddedRedis, query: str, message: str
) -> None:
    result = run("status", "--redis-url", f"redis://u:pw@127.0.0.1:{redis_server.port}/0?{query}")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "pw" not in result.stderr
    assert_no_traceback(result.stderr)


def test_redis_url_options_that_are_valid_still_connect(run: Run, redis_server: EmbeddedRedis) -> None:
    result = run("status", "--json", "--redis-url", f"redis://127.0.0.1:{redis_server.port}/0?socket_timeout=1.5")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("name", ["[/]", "[bold]x", "\x1b[2Jx"])
def test_an_error_quoting_user_input_prints_it_as_text(run: Run, name: str) -> None:
    result = run("shadow", name)
    assert result.exit_code == 2
    assert "unknown feature" in result.stderr
    assert "\x1b" not in result.stderr
    assert_no_traceback(result.stderr)


def test_a_config_file_nested_too_deeply_exits_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[\n" * 5000 + "]" * 5000 + "\n")  # one level a line: only the parser sees the depth
    result = thorcut("status", "--config", str(deep), env=cli_env)
    assert result.returncode == 2
    assert "nested too deeply" in result.stderr
    assert_no_traceback(result.stderr)


def test_a_backend_url_with_an_impossible_ipv4_address_exits_2(run: Run) -> None:
    result = run("diff", "positions", "--learn-noise", "--backend-url", "http://256.1.1.1:1", "--duration", "1",
                 "--url", "ws://127.0.0.1:1/")  # fmt: skip
    assert result.exit_code == 2
    assert "256.1.1.1 is not an IPv4 address" in result.stderr


def test_a_config_file_with_a_dotted_key_of_100000_parts_exits_2_at_once(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # tomllib is quadratic in a dotted key's parts: this file used to keep `status` busy for minutes.
    dotted = tmp_path / "dotted.toml"
    dotted.write_text("a.b" * 100_000 + " = 1\n")
    result = thorcut("status", "--config", str(dotted), env=cli_env)
    assert result.returncode == 2
    assert "nested more than 256 deep" in result.stderr
    assert_no_traceback(result.stderr)
