"""Percent rollout buckets and env overrides."""

from __future__ import annotations

import pytest

from thorcut.flags.rollout import bad_override, broadcasts, bucket, env_override, reads_from, reads_websocket
from thorcut.flags.stages import Stage


def test_bucket_is_sticky_and_in_range() -> None:
    assert bucket("positions", "client-42") == bucket("positions", "client-42")
    assert all(0 <= bucket("positions", f"c{i}") < 100 for i in range(1000))


def test_buckets_differ_per_feature_so_canaries_are_not_always_the_same_clients() -> None:
    same = sum(bucket("positions", f"c{i}") == bucket("intraday", f"c{i}") for i in range(2000))
    assert same < 100  # ~1% expected by chance


@pytest.mark.parametrize("percent", [0, 1, 25, 50, 99, 100])
def test_live_percent_selects_about_that_share_of_clients(percent: int) -> None:
    n = 20000
    share = sum(reads_websocket(Stage.LIVE, percent, "positions", f"client-{i}") for i in range(n)) / n * 100
    assert abs(share - percent) < 1.5


def test_a_client_in_at_10_percent_stays_in_at_50() -> None:
    ids = [f"u{i}" for i in range(5000)]
    at10 = {c for c in ids if reads_websocket(Stage.LIVE, 10, "positions", c)}
    at50 = {c for c in ids if reads_websocket(Stage.LIVE, 50, "positions", c)}
    assert at10 <= at50


@pytest.mark.parametrize(("stage", "ws"), [(Stage.OFF, False), (Stage.SHADOW, False), (Stage.COMPLETE, True)])
def test_other_stages_ignore_percent(stage: Stage, ws: bool) -> None:
    assert reads_websocket(stage, 100, "positions", "c") is ws
    assert reads_websocket(stage, 0, "positions", "c") is ws


@pytest.mark.parametrize(
    ("value", "stage", "bad"),
    [("true", Stage.LIVE, None), ("TRUE", Stage.LIVE, None), ("1", Stage.LIVE, None), ("false", Stage.OFF, None),
     ("0", Stage.OFF, None), ("", None, None), ("maybe", None, "maybe")],
)  # fmt: skip
def test_env_override_values(value: str, stage: Stage | None, bad: str | None) -> None:
    env = {"WS_FEATURE_POSITIONS": value}
    assert env_override("WS_FEATURE_POSITIONS", env) is stage
    assert bad_override("WS_FEATURE_POSITIONS", env) == bad


def test_reads_from_text() -> None:
    assert reads_from(Stage.LIVE, 30) == "WS 30% · REST 70%"
    assert reads_from(Stage.LIVE, 100) == "WebSocket"
    assert reads_from(Stage.SHADOW, 0) == "REST (WebSocket shadow)"


@pytest.mark.parametrize(("stage", "pushes"), [(Stage.OFF, False), (Stage.SHADOW, True), (Stage.LIVE, True),
                                               (Stage.COMPLETE, True)])  # fmt: skip
def test_backend_broadcasts_in_every_stage_but_off(stage: Stage, pushes: bool) -> None:
    assert broadcasts(stage) is pushes
