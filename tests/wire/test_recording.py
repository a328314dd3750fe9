"""Recordings as written and read (``thorcut.wire.recording``): every record kind, the data-last marker,
and exact JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.parity.build import balance, envelope, steady
from tests.runner import Run
from thorcut.wire.recording import RecordingError, RecordingReader, RecordingWriter, RestRecord, WsRecord

AT = "2026-11-24T14:00:00.000Z"


def roundtrip(tmp_path: Path, write: Callable[[RecordingWriter], object]) -> list[Any]:
    path = tmp_path / "r.jsonl"
    with RecordingWriter(path, {"features": {}}) as w:
        write(w)
    reader = RecordingReader(path)
    assert reader.header.manifest == {"features": {}}
    return list(reader)


def test_every_record_kind_reads_back(tmp_path: Path) -> None:
    msg = envelope("positions", "DU1234", 7, {"positions": [{"symbol": "ES", "quantity": 2**70}]})

    def write(w: RecordingWriter) -> None:
        w.ws(AT, msg=msg)
        w.ws(AT, raw="not json {")
        w.ws(AT, msg=[1, 2])
        w.rest(RestRecord(AT, "positions", "positions", "DU1234", "/p", 200, 1.5, body=msg, for_seq=7))
        w.rest(RestRecord(AT, "positions", "positions", "DU1234", "/p", 502, 2.0, raw="<html>", for_seq=8))
        w.rest(RestRecord(AT, "positions", "positions", "DU1234", "/p", None, 2000.0, error="timeout"))

    ws, raw, plain, ok, bad, err = roundtrip(tmp_path, write)
    assert isinstance(ws, WsRecord)
    assert ws.msg == ws.message == msg
    assert list(ws.msg) == list(msg)  # the key order as received
    assert ws.msg["data"]["positions"][0]["quantity"] == 2**70  # exact, not a float
    assert (raw.raw, raw.msg) == ("not json {", None)
    assert plain.msg == [1, 2]
    assert isinstance(ok, RestRecord)
    assert (ok.status, ok.for_seq, ok.type, ok.key, ok.body) == (200, 7, "positions", "DU1234", msg)
    assert (bad.status, bad.raw, bad.for_seq) == (502, "<html>", 8)
    assert (err.status, err.error, err.for_seq) == (None, "timeout", None)


def test_data_last_lines_put_data_last_and_say_so(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with RecordingWriter(path, {}) as w:
        w.ws(AT, msg={"data": {"x": 1}, "type": "t", "seq": 1})
    line = path.read_text().splitlines()[1]
    assert line.startswith('{"at":"2026-11-24T14:00:00.000Z","src":"ws","data_last":1,')
    assert line.endswith(',"data":{"x":1}}}')
    assert json.loads(line)["msg"] == {"type": "t", "seq": 1, "data": {"x": 1}}  # still plain JSON


@pytest.mark.parametrize(
    "msg",
    [
        {"data": {"x": 1}},  # data is the only member
        {"type": "t", "meta": {"q": 1, "data": 2}, "data": {"x": 1}},  # a nested "data" comes first
        {"type": "t", "data": {"data": {"data": 1}}},
        {"type": 'a,"data":b', "data": 5},  # the separator inside a string
    ],
)
def test_awkward_envelopes_read_back_exactly(tmp_path: Path, msg: dict) -> None:  # type: ignore[type-arg]
    (rec,) = roundtrip(tmp_path, lambda w: w.ws(AT, msg=msg))
    assert rec.msg == msg


def test_a_hand_made_line_without_the_marker_is_parsed_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"thorcut_recording": 1}\n' + json.dumps({"at": AT, "src": "ws", "msg": envelope("x", "k", 1, 3)})
                    + "\n")  # fmt: skip
    (rec,) = list(RecordingReader(path))
    assert isinstance(rec, WsRecord)
    assert rec.msg["data"] == 3


def test_a_data_last_line_with_a_member_after_data_is_bad_input(run: Run, tmp_path: Path) -> None:
    rec = steady(n=2)
    bad = (
        '{"at":"%s","src":"ws","data_last":1,"msg":{"type":"account_balance","key":"DU1234","seq":3,'
        '"data":{"a":1},"x":2}}'
    )  # claims data last, but "x" follows it
    rec.lines.append(bad % AT)
    rec.rest(1, "account_balance", "DU1234", 3, envelope("account_balance", "DU1234", 3, balance()))
    result = run("check", "account_balance", "--replay", str(rec.write(tmp_path / "r.jsonl")))
    assert result.exit_code == 2
    assert "line 6: the line is marked data_last, but 'data' is not the last member" in result.stderr


def test_unwritable_recording_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot write recording"):
        RecordingWriter(tmp_path / "missing" / "r.jsonl", {})
