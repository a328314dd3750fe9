"""Resuming the stream after a reconnect, over real sockets (docs/contracts.md, "Resuming a stream"):
``thorcut tail`` against a small server that answers ``resume`` (tests/wire/ws_server.py,
:class:`Resumable`). A drop, a reconnect, the exact resume frame thorcut sends, replayed envelopes
counted as the next versions, a marked jump as a resync, an unmarked one still a gap; a refused
resume, a server that heals itself, and a manifest that says ``[stream] resume = false``. The
recording ``tail --record`` writes replays to the same counts.

Every CLI run passes ``--duration`` as a safety net, so a regression fails instead of hanging.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection

from tests.runner import Run
from tests.wire.ws_server import Resumable, StartWsServer, ndjson
from thorcut.wire.recording import RecordingReader, WsRecord


def shown(stdout: str) -> list[tuple[str, Any]]:
    """(type, seq) of each NDJSON line, with the resync mark: ``("vwap", "9 resync")``."""
    out = []
    for doc in ndjson(stdout):
        msg = doc["msg"]
        seq = msg.get("seq", "-")
        out.append((msg["type"], f"{seq} resync" if msg.get("resync") else seq))
    return out


def replayed(run: Run, path: Path) -> dict[str, dict[str, int]]:
    result = run("check", "positions", "intraday", "--replay", str(path), "--json")
    assert result.exit_code in (1, 5), result.stdout + result.stderr
    return {name: f["counts"] for name, f in json.loads(result.stdout)["features"].items()}


def test_a_reconnect_resumes_from_the_last_seq_seen(run: Run, ws_server: StartWsServer, tmp_path: Path) -> None:
    streams = Resumable()

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            for type_, key in [("positions", "DU1")] * 3 + [("vwap", "ES")] * 2:
                await streams.send(ws, type_, key)
            await ws.close(1012, "restart")
            return
        for _ in range(2):  # while thorcut was away: positions kept in history, vwap's lost
            streams.publish("positions", "DU1")
        for _ in range(7):
            streams.publish("vwap", "ES")
        streams.forget("vwap", "ES")
        await streams.next_command(ws)  # the resume: positions 4, 5 replayed, vwap 9 resynced, resumed
        await streams.send(ws, "positions", "DU1")  # 6: the next version
        await streams.send(ws, "positions", "DU1", 9)  # 7 and 8 never sent, not marked: a gap
        await streams.send(ws, "vwap", "ES")  # 10

    server = ws_server(handler)
    record = tmp_path / "tail.jsonl"
    result = run("tail", "--url", server.url, "--json", "--count", "12", "--record", str(record), "--duration", "30")
    assert result.exit_code == 0, result.stderr
    assert streams.received == [
        '{"action":"resume","since":[{"type":"positions","key":"DU1","seq":3},{"type":"vwap","key":"ES","seq":2}]}'
    ]
    assert shown(result.stdout) == [
        ("positions", 1), ("positions", 2), ("positions", 3), ("vwap", 1), ("vwap", 2),
        ("positions", 4), ("positions", 5), ("vwap", "9 resync"), ("resumed", "-"),
        ("positions", 6), ("positions", 9), ("vwap", 10),
    ]  # fmt: skip
    err = result.stderr
    assert "; resuming 2 streams from the last seq seen" in err
    assert "resumed: 2 replayed, 1 resynced" in err
    assert "warning: vwap ES: resync: 6 skipped before #9" in err
    assert "warning: positions DU1: gap: 2 missed before #9" in err
    assert "gap: " not in err.replace("gap: 2 missed before #9", "")  # the replay is no gap
    assert "gaps 1 (2 missed) · resyncs 1 (6 skipped) · duplicates 0 · out of order 0" in err
    assert "resumes 1 sent, 1 answered (2 replayed, 1 resynced)" in err
    assert "reconnections 1" in err

    lines = list(RecordingReader(record))
    marks = [(r.msg.get("type"), r.msg.get("seq"), r.reconnected) for r in lines if isinstance(r, WsRecord)]
    assert marks[5] == ("positions", 4, "resume")  # the first frame after the reconnect
    assert all(m[2] is None for i, m in enumerate(marks) if i != 5)
    counts = replayed(run, record)
    assert (counts["positions"]["gaps"], counts["positions"]["missed"], counts["positions"]["resyncs"]) == (1, 2, 0)
    assert (counts["intraday"]["gaps"], counts["intraday"]["resyncs"], counts["intraday"]["resynced_missed"]) == (
        0, 1, 6,
    )  # fmt: skip


def test_an_envelope_pushed_before_the_answer_is_no_gap_when_the_replay_brings_what_it_skipped(
    run: Run, ws_server: StartWsServer
) -> None:
    """The server pushed 8 before it read the resume (held: 3), then replayed 4..8: no gap, no duplicate."""
    streams = Resumable()

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            for _ in range(3):
                await streams.send(ws, "positions", "DU1")
            await ws.close(1012, "restart")
            return
        for _ in range(4):
            streams.publish("positions", "DU1")
        await streams.send(ws, "positions", "DU1")  # 8, before the resume is read
        await streams.next_command(ws)  # 4..8 replayed
        await streams.send(ws, "positions", "DU1")  # 9

    server = ws_server(handler)
    result = run("tail", "--url", server.url, "--json", "--count", "11", "--duration", "30")
    assert result.exit_code == 0, result.stderr
    assert [seq for _, seq in shown(result.stdout)] == [1, 2, 3, 8, 4, 5, 6, 7, 8, "-", 9]
    assert "warning: positions DU1: ahead: 4 before #8 not replayed yet" in result.stderr
    assert "warning: positions DU1: resent #8" in result.stderr
    assert "gaps 0 (0 missed) · resyncs 0 (0 skipped) · duplicates 0 · out of order 0" in result.stderr


def test_a_jump_ahead_that_the_replay_leaves_is_a_gap(run: Run, ws_server: StartWsServer) -> None:
    streams = Resumable()

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await streams.send(ws, "positions", "DU1")
            await ws.close(1012, "restart")
            return
        await ws.send(json.dumps(streams.publish("positions", "DU1", 5)))  # 2..4 never existed for the server
        await streams.next_command(ws)  # replays 5 only (its history)

    server = ws_server(handler)
    result = run("tail", "--url", server.url, "--json", "--count", "4", "--duration", "30")
    assert result.exit_code == 0, result.stderr
    assert "warning: positions DU1: gap: 3 missed before #5 (not replayed by the resume)" in result.stderr
    assert "gaps 1 (3 missed)" in result.stderr


def test_a_refused_resume_falls_back_to_a_new_baseline(run: Run, ws_server: StartWsServer) -> None:
    streams = Resumable(refuse=True)

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await streams.send(ws, "positions", "DU1")
            await ws.close(1012, "restart")
            return
        await streams.next_command(ws)  # answered with an error
        await streams.send(ws, "positions", "DU1", 40)
        await streams.send(ws, "positions", "DU1")

    server = ws_server(handler)
    result = run("tail", "--url", server.url, "--json", "--count", "4", "--duration", "30")
    assert result.exit_code == 0, result.stderr
    assert len(streams.resumes) == 1
    assert [m for m, _ in shown(result.stdout)] == ["positions", "error", "positions", "positions"]
    assert "the server refused the resume (bad resume: the server does not know the command)" in result.stderr
    assert "gaps 0 (0 missed) · resyncs 0 (0 skipped)" in result.stderr
    assert "resumes 1 sent, 0 answered (0 replayed, 0 resynced), 1 refused" in result.stderr


def test_a_server_that_heals_itself_resumes_unasked(run: Run, ws_server: StartWsServer) -> None:
    streams = Resumable()

    async def handler(ws: ServerConnection, n: int) -> None:
        await streams.send(ws, "positions", "DU1")
        await streams.send(ws, "vwap", "ES")
        for _ in range(3):  # its path to Redis broke: these never reached the client
            streams.publish("positions", "DU1")
        streams.forget("positions", "DU1")
        streams.publish("vwap", "ES")
        await streams.answer(ws, [{"type": "positions", "key": "DU1", "seq": 1}, {"type": "vwap", "key": "ES",
                                                                                   "seq": 1}], healed=True)  # fmt: skip

    server = ws_server(handler)
    result = run("tail", "--url", server.url, "--json", "--count", "5", "--duration", "30")
    assert result.exit_code == 0, result.stderr
    assert shown(result.stdout) == [("positions", 1), ("vwap", 1), ("positions", "4 resync"), ("vwap", 2),
                                    ("resumed", "-")]  # fmt: skip
    assert streams.received == []  # nothing asked
    assert "the server healed its stream and resumed it unasked: 1 replayed, 1 resynced" in result.stderr
    assert "gaps 0 (0 missed) · resyncs 1 (2 skipped)" in result.stderr
    assert "resumes 0 sent, 0 answered (1 replayed, 1 resynced), 1 healed" in result.stderr


def test_manifest_resume_false_sends_nothing_and_starts_each_stream_afresh(
    run: Run, ws_server: StartWsServer, tmp_path: Path
) -> None:
    (tmp_path / "thorcut.toml").write_text("[stream]\nresume = false\n")  # the run's current folder
    streams = Resumable()

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            for _ in range(3):
                await streams.send(ws, "positions", "DU1")
            await ws.close(1012, "restart")
            return
        assert await streams.next_command(ws, timeout=0.5) is None  # nothing is sent
        await streams.send(ws, "positions", "DU1", 10)  # what was sent while away is the connection's loss
        await streams.send(ws, "positions", "DU1")

    server = ws_server(handler)
    record = tmp_path / "tail.jsonl"
    result = run("tail", "--url", server.url, "--json", "--count", "5", "--record", str(record), "--duration", "30")
    assert result.exit_code == 0, result.stderr
    assert streams.received == []
    assert [seq for _, seq in shown(result.stdout)] == [1, 2, 3, 10, 11]
    assert "resuming" not in result.stderr
    assert "gaps 0 (0 missed)" in result.stderr
    assert "resumes " not in result.stderr
    marks = [r.reconnected for r in RecordingReader(record) if isinstance(r, WsRecord)]
    assert marks == [None, None, None, "reset", None]
    assert replayed(run, record)["positions"]["gaps"] == 0  # its replay starts afresh there too


def test_a_filtered_tail_still_counts_and_records_the_answer(
    run: Run, ws_server: StartWsServer, tmp_path: Path
) -> None:
    """``--feature`` leaves ``resumed`` out of the output, not out of the count or the recording."""
    streams = Resumable()

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await streams.send(ws, "positions", "DU1")
            await ws.close(1012, "restart")
            return
        for _ in range(3):
            streams.publish("positions", "DU1")
        await streams.send(ws, "positions", "DU1")  # 5, before the resume is read
        await streams.next_command(ws)  # 2..5 replayed
        await streams.send(ws, "positions", "DU1")  # 6

    server = ws_server(handler)
    record = tmp_path / "tail.jsonl"
    result = run("tail", "--url", server.url, "--feature", "positions", "--json", "--count", "7", "--record",
                 str(record), "--duration", "30")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [seq for _, seq in shown(result.stdout)] == [1, 5, 2, 3, 4, 5, 6]
    assert "resumed: 4 replayed, 0 resynced" in result.stderr
    assert "gaps 0 (0 missed) · resyncs 0 (0 skipped) · duplicates 0 · out of order 0" in result.stderr
    recorded = [r.msg["type"] for r in RecordingReader(record) if isinstance(r, WsRecord)]
    assert recorded == ["positions"] * 6 + ["resumed", "positions"]
    counts = replayed(run, record)["positions"]
    assert (counts["gaps"], counts["duplicates"], counts["out_of_order"]) == (0, 0, 0)
