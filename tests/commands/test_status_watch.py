"""Issue 9: ``status --watch`` shows what other processes write within 2 s — verdicts however
written, worker registrations and their expiry — not only stage changes. A real ``thorcut``
process against the real Redis of the test; the test writes with redis-py as another tool would."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from thorcut.clock import now_iso
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.redisconn import Keys

THORCUT = Path(sys.executable).with_name("thorcut")


class Watch:
    """A running ``thorcut status --watch``; its stdout lines arrive in a queue."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def until(self, wanted: Callable[[str], bool], within: float) -> str:
        """Return the first line for which ``wanted`` is true, arriving within ``within`` seconds."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if wanted(line):
                return line
        raise AssertionError(f"not shown within {within} s; output so far: {''.join(self.seen)[-2000:]}")


@contextmanager
def watching(cli_env: dict[str, str], *args: str) -> Iterator[Watch]:
    with subprocess.Popen(
        [str(THORCUT), "status", "--watch", "--watch-for", "30", *args],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            yield Watch(proc)
        finally:
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=10)
            assert proc.returncode == 0, stderr
            assert "Traceback" not in stderr


def _feature(doc: str, name: str) -> dict[str, object]:
    return next(f for f in json.loads(doc)["features"] if f["feature"] == name)


def test_watch_json_shows_a_verdict_written_by_another_tool_within_2s(
    cli_env: dict[str, str], client: redis.Redis, keys: Keys
) -> None:
    with watching(cli_env, "--json") as watch:
        first = watch.until(lambda line: line.startswith("{"), within=10)
        assert _feature(first, "positions")["parity"]["verdict"] is None  # type: ignore[index]
        # The documented hash, written directly, with no change notification.
        client.hset(keys.parity("positions"), mapping={"verdict": "FAIL", "judged_at": now_iso(), "paired": 7,
                                                      "mismatched": 2})  # fmt: skip
        doc = watch.until(lambda line: '"FAIL"' in line, within=2)
        assert _feature(doc, "positions")["parity"]["counts"]["mismatched"] == 2  # type: ignore[index]


def test_watch_json_shows_workers_registering_and_lapsing_within_2s(
    cli_env: dict[str, str], client: redis.Redis, keys: Keys
) -> None:
    with watching(cli_env, "--json") as watch:
        assert json.loads(watch.until(lambda line: line.startswith("{"), within=10))["workers"] == 0
        lapses_at = time.time() + 1.5
        client.zadd(keys.workers, {"worker-a": lapses_at})
        watch.until(lambda line: json.loads(line)["workers"] == 1, within=2)
        watch.until(lambda line: json.loads(line)["workers"] == 0, within=max(lapses_at - time.time(), 0) + 2)


def test_watch_table_without_a_terminal_prints_the_new_state_within_2s(
    cli_env: dict[str, str], client: redis.Redis, keys: Keys
) -> None:
    with watching(cli_env) as watch:
        watch.until(lambda line: "backend worker(s) registered" in line, within=10)
        client.hset(keys.parity("intraday"), mapping={"verdict": "PASS", "judged_at": now_iso(), "paired": 60})
        watch.until(lambda line: "intraday" in line and "PASS" in line, within=2)


def test_watch_for_ends_the_watch_with_exit_0(cli_env: dict[str, str]) -> None:
    result = subprocess.run([str(THORCUT), "status", "--watch", "--json", "--watch-for", "0.5"],
                            env={**os.environ, **cli_env}, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["features"]


def test_status_watch_streams_a_new_document_on_each_change_and_stops_on_ctrl_c(
    cli_env: dict[str, str], store: FlagStore
) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "thorcut", "status", "--watch", "--json"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["features"][2]["stage"] == "off"
        store.change("intraday", Stage.SHADOW, reason="watched")
        second = json.loads(proc.stdout.readline())
        assert second["features"][2]["stage"] == "shadow"
        assert second["features"][2]["reason"] == "watched"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert "Traceback" not in stderr
