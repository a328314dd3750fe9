"""``thorcut tail`` over real sockets: small ``websockets`` servers (tests/wire/ws_server.py) for
what is shown, filtered, recorded and ended, and the real Thor backend (uvicorn + job runner) end to
end. The stream client's own cases (connection errors, reconnects, limits) are in
tests/wire/test_stream.py.

Every CLI run passes ``--duration`` as a safety net, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from websockets.asyncio.server import ServerConnection

from tests.backend_fixtures import BACKEND, Server, stop_process
from tests.runner import Run
from tests.wire.ws_server import Handler, StartWsServer, env, ndjson, sender
from thorcut.clock import now_iso
from thorcut.commands.tail_view import summarize
from thorcut.config import load_settings
from thorcut.dev.stack import free_port
from thorcut.flags.stages import Stage
from thorcut.flags.store import FlagStore
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.redisconn import Keys
from thorcut.wire.recording import RecordingReader, WsRecord

# -- input errors and credentials -----------------------------------------------------------------


def test_tail_unknown_feature_exits_2_listing_valid_features(run: Run) -> None:
    result = run("tail", "--feature", "nope", "--duration", "5")
    assert result.exit_code == 2
    assert "unknown feature 'nope'; valid features: account_balance, positions, intraday, global_market" in (
        result.stderr
    )


def test_tail_non_websocket_url_exits_2(run: Run) -> None:
    result = run("tail", "--url", "http://127.0.0.1:1/", "--duration", "5")
    assert result.exit_code == 2
    assert "must start with ws:// or wss://" in result.stderr


def test_tail_token_rejected_mid_run_prints_the_summary_then_exits_4(run: Run, ws_server: StartWsServer) -> None:
    async def revoke(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps(env("positions", "DU1", 1)))
        await ws.close(4401, "token revoked")

    server = ws_server(revoke)
    result = run("tail", "--url", server.url, "--duration", "10")
    assert result.exit_code == 4
    assert "  positions  DU1  #1" in result.stdout
    assert "1 message in" in result.stderr
    assert result.stderr.rstrip().endswith(
        "— set THORCUT_TOKEN (sent as 'Authorization: Bearer …') or pass --header 'Name: value'"
    )


def test_tail_sends_token_and_headers_but_never_prints_them(run: Run, ws_server: StartWsServer) -> None:
    seen: list[dict[str, str]] = []

    async def echo_headers(ws: ServerConnection, n: int) -> None:
        assert ws.request is not None
        seen.append({k: ws.request.headers.get(k, "") for k in ("Authorization", "X-Trace")})
        await ws.send(json.dumps(env("positions", "DU1", 1)))

    server = ws_server(echo_headers)
    result = run("tail", "--url", server.url, "--header", "X-Trace: abc", "--count", "1", "--duration", "10",
                 env={"THORCUT_TOKEN": "tok-secret"})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert seen == [{"Authorization": "Bearer tok-secret", "X-Trace": "abc"}]
    assert "(headers: Authorization, X-Trace)" in result.stderr
    assert "tok-secret" not in result.stderr + result.stdout


# -- what is shown ---------------------------------------------------------------------------------


def test_tail_shows_one_line_per_envelope_and_a_summary(run: Run, ws_server: StartWsServer) -> None:
    server = ws_server(
        sender(env("positions", "DU1234", 7, account="DU1234", positions=[1, 2, 3]), env("vwap", "ES", 3))
    )
    result = run("tail", "--url", server.url, "--count", "2", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3}  positions  DU1234  #7  \+\S+  account=DU1234 positions=\[3\]", lines[0]
    )
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}  vwap       ES      #3  \+\S+  n=3", lines[1])
    assert re.search(r"^2 messages in [\d.]+ s \([\d.]+ msgs/s\): positions 1, vwap 1$", result.stderr, re.M)
    assert "gaps 0 (0 missed) · resyncs 0 (0 skipped) · duplicates 0 · out of order 0 · non-JSON frames 0" in (
        result.stderr
    )


def test_tail_warns_inline_of_gap_duplicate_and_out_of_order(run: Run, ws_server: StartWsServer) -> None:
    seqs = [1, 2, 5, 5, 3, 6]
    server = ws_server(sender(*(env("positions", "DU1", s) for s in seqs)))
    result = run("tail", "--url", server.url, "--count", "6", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [bool(re.search(r"⚠", line)) for line in lines] == [False, False, True, True, True, False]
    assert "#5  +" in lines[2]
    assert "⚠ gap: 2 missed before #5" in lines[2]
    assert "⚠ duplicate #5" in lines[3]
    assert "⚠ out of order #3" in lines[4]
    assert "gaps 1 (2 missed) · resyncs 0 (0 skipped) · duplicates 1 · out of order 1" in result.stderr


def test_tail_json_puts_health_warnings_on_stderr_only(run: Run, ws_server: StartWsServer) -> None:
    server = ws_server(sender(*(env("positions", "DU1", s) for s in (1, 3, 3))))
    result = run("tail", "--url", server.url, "--json", "--count", "3", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    assert [d["msg"]["seq"] for d in ndjson(result.stdout)] == [1, 3, 3]
    assert "warning: positions DU1: gap: 1 missed before #3" in result.stderr
    assert "warning: positions DU1: duplicate #3" in result.stderr


def test_tail_shows_non_json_and_binary_frames_and_counts_them(run: Run, ws_server: StartWsServer) -> None:
    last = env("positions", "DU1", 1)
    server = ws_server(sender("hello, not json", b"\xff\x00\x01", b'{"type": "positions", "key": "B", "seq": 1}', last))
    result = run("tail", "--url", server.url, "--count", "4", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("  not JSON  hello, not json")
    assert "  binary frame (3 bytes)  \ufffd\\x00\\x01" in lines[1]
    assert "  positions  B  #1" in lines[2]  # a binary frame that holds JSON is parsed
    assert "  positions  DU1  #1" in lines[3]
    assert "non-JSON frames 2" in result.stderr

    result = run("tail", "--url", server.url, "--json", "--count", "4", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    docs = ndjson(result.stdout)
    assert docs[0]["raw"] == "hello, not json"
    assert docs[0]["error"].startswith("not JSON: ")
    assert docs[1]["binary"] is True
    assert docs[1]["error"] == "binary frame (3 bytes)"
    assert docs[2]["msg"] == {"type": "positions", "key": "B", "seq": 1}
    assert docs[3]["msg"] == last
    assert all(set(d) in ({"at", "msg"}, {"at", "raw", "error"}, {"at", "raw", "error", "binary"}) for d in docs)


def test_tail_json_keeps_one_line_per_frame_for_pretty_printed_json(run: Run, ws_server: StartWsServer) -> None:
    msg = env("positions", "DU1", 1, big=2**70)
    server = ws_server(sender(json.dumps(msg, indent=2)))
    result = run("tail", "--url", server.url, "--json", "--count", "1", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert ndjson(result.stdout)[0]["msg"] == msg


def test_tail_shows_json_that_is_not_an_envelope(run: Run, ws_server: StartWsServer) -> None:
    server = ws_server(sender({"hello": "world", "items": [1, 2]}, [1, 2, 3], "42", {"type": "ping"}))
    result = run("tail", "--url", server.url, "--count", "4", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("  json  hello=world items=[2]")
    assert lines[1].endswith("  json  [3 items] 1 2 3")
    assert lines[2].endswith("  json  42")
    assert "  ping    #-" in lines[3]
    assert "(not an envelope) 3, ping 1" in result.stderr


def test_tail_escapes_markup_and_control_characters(run: Run, ws_server: StartWsServer) -> None:
    nasty = "[bold]x[/] \x1b[31mred\x07"
    server = ws_server(sender(env("positions", "DU\x1b[2J", 1, note=nasty), "[red]raw[/]\x1b]0;title\x07"))
    result = run("tail", "--url", server.url, "--count", "2", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert "DU\\x1b[2J" in result.stdout
    assert "note=[bold]x[/] \\x1b[31mred\\x07" in result.stdout
    assert "[red]raw[/]\\x1b]0;title\\x07" in result.stdout


def test_tail_long_lines_are_cut_to_the_terminal_width(run: Run, ws_server: StartWsServer) -> None:
    server = ws_server(sender(env("positions", "DU1", 1, text="y" * 500)))
    result = run("tail", "--url", server.url, "--count", "1", "--duration", "10", env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.stderr
    line = result.stdout.rstrip("\n")
    assert len(line) == 60
    assert line.endswith("…")


def test_tail_filters_by_feature_type_and_key(run: Run, ws_server: StartWsServer) -> None:
    frames = [env("positions", "DU1", 1), env("positions", "DU2", 1), {"type": "heartbeat", "seq": 1, "ts": now_iso()},
              env("vwap", "ES", 1), {"plain": True}, "not json", env("positions", "DU2", 2)]  # fmt: skip
    server = ws_server(sender(*frames))
    result = run("tail", "--url", server.url, "--feature", "positions", "--key", "DU2", "--json", "--count", "3",
                 "--duration", "10")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    docs = ndjson(result.stdout)
    assert [d.get("msg", {}).get("key") for d in docs] == ["DU2", None, "DU2"]
    assert docs[1]["raw"] == "not json"  # frames that are not JSON are never filtered out
    assert "filtered out 4" in result.stderr
    assert server.paths[-1] == "/stream?features=positions"

    result = run("tail", "--url", server.url, "--type", "heartbeat", "--json", "--count", "1", "--duration", "10")
    assert [d["msg"]["type"] for d in ndjson(result.stdout)] == ["heartbeat"]
    assert server.paths[-1] == "/stream"


def test_tail_feature_that_is_off_says_so_on_stderr_and_still_tails(
    run: Run, ws_server: StartWsServer, client: redis.Redis, prefix: str
) -> None:
    # Issue 9: an off feature is broadcast by nobody; a silent tail looks like a broken backend.
    server = ws_server(sender(env("positions", "DU1", 1), env("positions", "DU1", 2)))
    result = run("tail", "--url", server.url, "--feature", "positions", "--count", "2", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    assert "note: positions is off — the backend broadcasts nothing for it" in result.stderr
    assert "run `thorcut shadow positions` to start broadcasting (tailing anyway)" in result.stderr
    assert len(result.stdout.splitlines()) == 2  # and it tailed what did arrive

    FlagStore(client, Keys(prefix), DEFAULT_MANIFEST.names).change("positions", Stage.SHADOW)
    shadowed = run("tail", "--url", server.url, "--feature", "positions", "--count", "1", "--duration", "10")
    assert shadowed.exit_code == 0, shadowed.stderr
    assert "is off" not in shadowed.stderr
    unfiltered = run("tail", "--url", server.url, "--count", "1", "--duration", "10")
    assert "is off" not in unfiltered.stderr  # no --feature: no stage to speak of


def test_tail_feature_note_is_skipped_quietly_when_redis_is_away(run: Run, ws_server: StartWsServer) -> None:
    server = ws_server(sender(env("positions", "DU1", 1)))
    result = run("tail", "--url", server.url, "--feature", "positions", "--count", "1", "--duration", "10",
                 env={"THORCUT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "is off" not in result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_summarize_sketches_scalars_and_sizes_containers() -> None:
    assert (
        summarize({"a": 1, "b": "x", "c": [1, 2], "d": {"e": 1}, "f": None, "g": 1.5})
        == "a=1 b=x c=[2] d={…} f=null g=1.5"
    )
    assert summarize("s" * 60) == "s" * 39 + "…"


# -- how long it runs -----------------------------------------------------------------------------


def test_tail_duration_ends_a_quiet_stream_with_exit_0(run: Run, ws_server: StartWsServer) -> None:
    server = ws_server(sender(env("positions", "DU1", 1)))
    started = time.monotonic()
    result = run("tail", "--url", server.url, "--duration", "0.5")
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - started < 10
    assert len(result.stdout.splitlines()) == 1
    elapsed = re.search(r"^1 message in ([\d.]+) s \(([\d.]+) msgs/s\)", result.stderr, re.M)
    assert elapsed is not None, result.stderr
    assert 0.1 <= float(elapsed.group(1)) < 10  # from the connection to the end, not the process start
    assert float(elapsed.group(2)) < 10


# -- recording ---------------------------------------------------------------------------------------


def test_tail_record_reads_back_with_the_same_frames(run: Run, ws_server: StartWsServer, tmp_path: Path) -> None:
    sent = [env("positions", "DU1", 1, big=2**70), "garbage", env("vwap", "ES", 4)]
    server = ws_server(sender(*sent))
    path = tmp_path / "tail.jsonl"
    result = run("tail", "--url", server.url, "--record", str(path), "--json", "--count", "3", "--duration", "10")
    assert result.exit_code == 0, result.stderr
    reader = RecordingReader(path)
    assert reader.header.manifest == json.loads(json.dumps(load_settings().manifest.to_dict()))
    records = list(reader)
    assert all(isinstance(r, WsRecord) for r in records)
    assert [r.message for r in records] == [sent[0], None, sent[2]]  # type: ignore[union-attr]
    assert records[0].message["data"]["big"] == 2**70  # type: ignore[union-attr]
    assert [r.raw for r in records] == [None, "garbage", None]
    assert [r.at for r in records] == [d["at"] for d in ndjson(result.stdout)]
    assert ndjson(result.stdout)[0]["msg"]["data"]["big"] == 2**70  # exact, never through a float


def test_tail_record_to_an_unwritable_path_exits_2(run: Run, tmp_path: Path) -> None:
    result = run("tail", "--record", str(tmp_path / "missing" / "x.jsonl"), "--duration", "5")
    assert result.exit_code == 2
    assert "cannot write recording" in result.stderr


# -- real processes: pipes and signals ------------------------------------------------------------


def endless(ws_pause: float = 0.001) -> Handler:
    async def handler(ws: ServerConnection, n: int) -> None:
        seq = 0
        while True:
            seq += 1
            await ws.send(json.dumps(env("positions", "DU1", seq)))
            if seq % 50 == 0:
                await asyncio.sleep(ws_pause)

    return handler


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "human"])
def test_tail_piped_to_head_exits_0_without_traceback(
    cli_env: dict[str, str], ws_server: StartWsServer, as_json: bool
) -> None:
    server = ws_server(endless())
    cmd = [sys.executable, "-m", "thorcut", "tail", "--url", server.url, "--duration", "30"] + (
        ["--json"] if as_json else []
    )
    tail = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-n", "2"], stdin=tail.stdout, stdout=subprocess.PIPE)
    assert tail.stdout is not None
    tail.stdout.close()  # head holds the only reader now
    shown, _ = head.communicate(timeout=30)
    _, errors = tail.communicate(timeout=30)
    assert tail.returncode == 0, errors.decode()
    assert b"Traceback" not in errors
    assert b"Exception ignored" not in errors
    assert len(shown.splitlines()) == 2
    if as_json:
        assert [json.loads(line)["msg"]["seq"] for line in shown.splitlines()] == [1, 2]
    assert b"messages in" in errors


def test_tail_ctrl_c_ends_with_the_summary_and_exit_0(cli_env: dict[str, str], ws_server: StartWsServer) -> None:
    server = ws_server(sender(env("positions", "DU1", 1)))
    cmd = [sys.executable, "-m", "thorcut", "tail", "--url", server.url, "--json", "--duration", "60"]
    tail = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tail.stdout is not None
    first = tail.stdout.readline()  # connected and reading: Ctrl-C now lands in the loop
    tail.send_signal(signal.SIGINT)
    rest, errors = tail.communicate(timeout=30)
    assert tail.returncode == 0, errors.decode()
    assert json.loads(first)["msg"]["seq"] == 1
    assert rest == b""
    assert b"1 message in" in errors
    assert b"Traceback" not in errors


# -- the real Thor backend -------------------------------------------------------------------------


@pytest.fixture
def thor_stack(
    thor_env: dict[str, str], demo_users: dict[str, dict[str, str]], thor_server: Server, tmp_path: Path
) -> Iterator[tuple[Server, str, FlagStore]]:
    """The shared Thor server plus a job runner; every feature is put back to ``off`` afterwards."""
    log = (tmp_path / "jobs.log").open("wb")
    jobs = subprocess.Popen([sys.executable, "manage.py", "run_jobs"], cwd=BACKEND, env={**os.environ, **thor_env},
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    client = redis.Redis.from_url(thor_env["THORCUT_REDIS_URL"], decode_responses=True)
    store = FlagStore(client, Keys(thor_env["THORCUT_PREFIX"]), DEFAULT_MANIFEST.names, operator="tests")
    try:
        yield thor_server, demo_users["demo"]["token"], store
    finally:
        try:
            for feature in DEFAULT_MANIFEST.names:  # other tests expect the shared prefix all off
                while (stage := store.read(feature).stage) is not Stage.OFF:
                    store.change(feature, Stage.SHADOW if stage in (Stage.LIVE, Stage.COMPLETE) else Stage.OFF)
        finally:  # the runner is reaped whatever failed, never left running for the GC to find
            stop_process(jobs)
            log.close()
            client.close()


def test_tail_follows_positions_from_the_thor_backend(run: Run, thor_stack: tuple[Server, str, FlagStore]) -> None:
    server, token, store = thor_stack
    if store.read("positions").stage is not Stage.SHADOW:
        store.change("positions", Stage.SHADOW, reason="tail test")
    result = run("tail", "--feature", "positions", "--count", "3", "--json", "--url", server.ws_url,
                 "--timeout", "10", "--duration", "60", env={"THORCUT_TOKEN": token})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    messages = [d["msg"] for d in ndjson(result.stdout)]
    assert [m["type"] for m in messages] == ["positions"] * 3
    assert {m["key"] for m in messages} == {"DU1234"}
    seqs = [m["seq"] for m in messages]
    assert seqs[0] < seqs[1] < seqs[2]
    assert f"connected to {server.ws_url}?features=positions (headers: Authorization)" in result.stderr


def test_tail_without_a_token_is_rejected_by_the_thor_backend(
    run: Run, thor_stack: tuple[Server, str, FlagStore]
) -> None:
    server, _, _ = thor_stack
    result = run("tail", "--url", server.ws_url, "--timeout", "10", "--duration", "30")
    assert result.exit_code == 4
    assert "rejected the credentials (close code 4401)" in result.stderr
    assert "set THORCUT_TOKEN" in result.stderr
