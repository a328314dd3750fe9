"""``diff``/``check`` against a small hand-built backend (real sockets): noisy REST fields for
``--learn-noise``, a stream that drops mid-run, garbage frames, and REST errors.

The backend (``tests/small_backend.py``) is a ``websockets`` server and an ``http.server`` in
threads of this process. The stream sends a ``positions`` envelope every 50 ms; REST answers with
the current state.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import redis

from tests.conftest import set_flag, start_redis
from tests.runner import Run
from tests.small_backend import THRESHOLDS, Backend, backend_fixture  # noqa: F401 (the fixture)
from thorcut.redisconn import Keys


def test_learn_noise_proposes_ignore_rules(run: Run, backend: Backend) -> None:
    backend.noise = True
    result = run("diff", "positions", "--learn-noise", "--duration", "1.5")
    assert result.exit_code == 0, result.stderr
    assert "request_id" in result.stdout
    assert '[features.positions]\nignore = ["request_id"]' in result.stdout
    as_json = json.loads(run("diff", "positions", "--learn-noise", "--duration", "1", "--json").stdout)
    assert as_json["positions"]["paths"] == {"request_id": as_json["positions"]["compared"]}


def test_the_learned_rule_makes_the_noisy_feature_pass(run: Run, backend: Backend, tmp_path: Path) -> None:
    backend.noise = True
    noisy = json.loads(run("check", "positions", "--duration", "1.5", "--json", "--no-store").stdout)
    assert noisy["features"]["positions"]["verdict"] == "FAIL"
    assert {p["path"] for p in noisy["features"]["positions"]["paths"]} == {"request_id"}
    (tmp_path / "thorcut.toml").write_text(THRESHOLDS + '[features.positions]\nignore = ["request_id"]\n')
    result = run("check", "positions", "--duration", "1.5", "--json", "--no-store")
    assert result.exit_code == 0, result.stdout


def test_a_stream_that_drops_mid_run_reconnects_without_counting_a_gap(run: Run, backend: Backend) -> None:
    backend.close_after = 5
    result = run("check", "positions", "--duration", "2.5", "--json", "--no-store")
    body = json.loads(result.stdout)
    assert any(n.startswith("disconnected") for n in body["notices"]), body["notices"]
    f = body["features"]["positions"]
    assert f["counts"]["gaps"] == 0
    assert f["verdict"] == "PASS", f["reasons"]
    assert f["counts"]["samples"] > 5  # messages kept coming after the reconnect


def test_garbage_frames_are_counted_never_fatal(run: Run, backend: Backend) -> None:
    backend.garbage = True
    result = run("check", "positions", "--duration", "1.5", "--json", "--no-store")
    body = json.loads(result.stdout)
    assert result.exit_code == 0, result.stdout
    assert body["non_json_frames"] >= 2


def test_rest_errors_are_counted_by_status(run: Run, backend: Backend) -> None:
    backend.rest_status = 503
    result = run("check", "positions", "--duration", "1", "--json", "--no-store")
    f = json.loads(result.stdout)["features"]["positions"]
    assert result.exit_code == 5  # no pair at all: PENDING, never PASS
    assert set(f["rest_errors"]) == {"http_503"}
    assert f["rest_errors"]["http_503"] == f["counts"]["samples"]


def test_verdicts_are_stored_unless_told_not_to(run: Run, backend: Backend, client: redis.Redis, keys: Keys) -> None:
    assert run("check", "positions", "--duration", "1.5", "--no-store").exit_code == 0
    assert client.exists(keys.parity("positions")) == 0
    assert run("check", "positions", "--duration", "1.5").exit_code == 0
    stored = client.hgetall(keys.parity("positions"))
    assert stored["verdict"] == "PASS"
    assert int(stored["paired"]) >= 5
    assert stored["source"] == "live"
    status = json.loads(run("status", "--json").stdout)
    row = next(r for r in status["features"] if r["feature"] == "positions")
    assert row["parity"]["verdict"] == "PASS"
    assert row["parity"]["stream"] == "ok"


def test_mismatch_examples_land_in_the_bounded_list(
    run: Run, backend: Backend, client: redis.Redis, keys: Keys
) -> None:
    backend.noise = True
    assert run("check", "positions", "--duration", "1.5").exit_code == 1
    examples = [json.loads(e) for e in client.lrange(keys.mismatches("positions"), 0, -1)]
    assert examples
    assert all(e["differences"][0]["path"] == "request_id" for e in examples)
    assert "request_id" in client.hget(keys.parity("positions"), "last_mismatch")


def test_unreachable_redis_before_a_live_run_exits_4_at_once(run: Run, backend: Backend) -> None:
    """The stages are read first: no Redis, no sampling (its verdicts could not be stored either)."""
    from thorcut.dev.stack import free_port

    result = run("check", "positions", "--duration", "30", "--redis-url", f"redis://u:pw@127.0.0.1:{free_port()}/0",
                 "--timeout", "0.5")  # fmt: skip
    assert result.exit_code == 4
    assert "Redis at redis://u:***@127.0.0.1" in result.stderr
    assert "--no-store judges without Redis" in result.stderr
    assert result.stdout == ""  # nothing was sampled
    assert backend.sent == 0
    assert ":pw@" not in result.stderr + result.stdout


def test_no_store_judges_without_redis(run: Run, backend: Backend) -> None:
    from thorcut.dev.stack import free_port

    result = run("check", "positions", "--duration", "1.5", "--no-store", "--json",
                 "--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--timeout", "0.5")  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "cannot read the features' stages" in result.stderr
    assert json.loads(result.stdout)["features"]["positions"]["verdict"] == "PASS"


def test_redis_lost_during_a_live_run_exits_4_but_shows_the_report(run: Run, backend: Backend, tmp_path: Path) -> None:
    import redis

    from thorcut.redisconn import Keys

    private = start_redis(tmp_path / "redis")
    try:
        c = redis.Redis(port=private.port, decode_responses=True)
        set_flag(c, Keys("lost"), "positions", "shadow", 1)
        c.close()
        # The stages are read at once; Redis is gone when the run ends and stores its verdict.
        threading.Timer(1.0, private.stop).start()
        result = run("check", "positions", "--duration", "2.5", "--redis-url", private.url, "--timeout", "0.5",
                     env={"THORCUT_PREFIX": "lost"})  # fmt: skip
    finally:
        private.stop()
    assert result.exit_code == 4, result.stdout + result.stderr
    assert "positions" in result.stdout
    assert "PASS" in result.stdout
    assert "Redis at" in result.stderr


def test_named_off_feature_is_refused_at_once(run: Run, backend: Backend, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "off", 2)
    result = run("check", "positions", "--duration", "30")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: positions is off: the backend broadcasts nothing to judge — `thorcut shadow positions` starts "
        "broadcasting it"
    )
    assert backend.sent == 0  # nothing was sampled
    diff = run("diff", "positions", "--duration", "30")
    assert diff.exit_code == 2
    assert "thorcut shadow positions" in diff.stderr


def test_all_skips_off_features_and_says_so(run: Run, backend: Backend) -> None:
    result = run("check", "--all", "--duration", "1.5", "--json", "--no-store")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert list(json.loads(result.stdout)["features"]) == ["positions"]
    assert "skipping account_balance, intraday, global_market: off, nothing is broadcast" in result.stderr


def test_every_feature_off_is_refused(run: Run, backend: Backend, client: redis.Redis, keys: Keys) -> None:
    set_flag(client, keys, "positions", "off", 2)
    for args in (("check",), ("check", "--all"), ("diff", "--all")):
        result = run(*args, "--duration", "30")
        assert result.exit_code == 2, args
        assert "every feature is off" in result.stderr
        assert "thorcut shadow F" in result.stderr
    assert backend.sent == 0
