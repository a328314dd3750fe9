"""Reading a recording is bounded and strict (issue 9): whatever the file holds, the reader reads
it or raises RecordingError (exit 2) naming a line, never another exception, never unbounded
memory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.parity.build import envelope, steady
from tests.runner import Run
from thorcut.compare.shadow import ShadowJudge
from thorcut.manifest import DEFAULT_MANIFEST
from thorcut.parity.replay import replay
from thorcut.wire.recording import RecordingError, RecordingReader

HEADER = '{"thorcut_recording": 1}\n'
AT = "2026-11-24T14:00:00.000Z"
NAMES_A_LINE = re.compile(r", line \d+: ")


def cli_fails(run: Run, path: Path | str, *expect: str) -> str:
    result = run("check", "--replay", str(path))
    assert result.exit_code == 2, result.stdout + result.stderr
    for text in expect:
        assert text in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return result.stderr


def test_a_line_nested_200000_deep_is_bad_input_not_a_recursion_error(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    deep = "[" * 200_000 + "]" * 200_000
    path.write_text(HEADER + json.dumps({"at": AT, "src": "ws", "msg": None})[:-5] + deep + "}\n")
    cli_fails(run, path, "line 2: not JSON (nested 200001 deep, deeper than the limit of 128)")


def test_nesting_within_the_limit_reads(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    value: object = 1
    for _ in range(120):
        value = {"a": value}
    path.write_text(HEADER + json.dumps({"at": AT, "src": "ws", "msg": value}) + "\n")
    assert len(list(RecordingReader(path))) == 1
    with pytest.raises(RecordingError, match="line 2: not JSON \\(nested 121 deep, deeper than the limit of 50\\)"):
        list(RecordingReader(path, max_depth=50))


def test_a_line_longer_than_the_limit_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    line = json.dumps({"at": AT, "src": "ws", "raw": "x" * 500})
    path.write_text(HEADER + line + "\n" + line + "\n")
    assert len(list(RecordingReader(path, max_line=len(line)))) == 2  # exactly the limit is fine
    with pytest.raises(RecordingError, match=r"line 2: longer than the limit of 100 bytes"):
        list(RecordingReader(path, max_line=100))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_before_reading(run: Run, device: str) -> None:
    cli_fails(run, device, f"cannot read recording {device}: it is a device; a recording is a file (or a pipe)")


def test_a_directory_is_refused(run: Run, tmp_path: Path) -> None:
    cli_fails(run, tmp_path, "it is a directory")


def test_a_fifo_without_a_writer_ends_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # A separate process, bounded by a timeout: a reader that waited for a writer would hang.
    proc = subprocess.run([sys.executable, "-m", "thorcut", "check", "--replay", str(fifo)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "line 1: empty file" in proc.stderr


def test_a_fifo_fed_a_recording_is_judged(run: Run, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    text = "\n".join(steady(n=61).lines) + "\n"

    def feed() -> None:
        with fifo.open("w") as f:  # blocks until the reader opens it
            f.write(text)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        result = run("check", "--replay", str(fifo))
    finally:
        writer.join(30)
    assert result.exit_code == 0, result.stdout + result.stderr


def test_a_fifo_fed_endless_zeros_stops_at_the_line_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = ("import sys; from pathlib import Path; from thorcut.wire.recording import RecordingReader\n"
            "try:\n    RecordingReader(Path(sys.argv[1]), max_line=1 << 20)\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code, str(fifo)], stdout=subprocess.PIPE, text=True)

    def endless() -> None:
        with fifo.open("wb") as f:
            while True:
                f.write(b"\0" * 65536)

    with pytest.raises(BrokenPipeError):  # the reader stopped at the limit and closed the pipe
        endless()
    out, _ = proc.communicate(timeout=60)
    assert out.startswith("RecordingError")
    assert "line 1: longer than the limit of 1,048,576 bytes" in out


def test_a_binary_file_is_bad_input(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "bin.jsonl"
    path.write_bytes(bytes(range(256)) * 64)
    cli_fails(run, path, "line 1: not JSON")
    path.write_bytes(HEADER.encode() + b'{"at": "\xff\xfe", "src": "ws", "raw": "x"}\n')
    cli_fails(run, path, "line 2: not JSON (")


def test_a_truncated_last_line_is_bad_input_and_says_so(run: Run, tmp_path: Path) -> None:
    text = "\n".join(steady(n=3).lines)
    path = tmp_path / "cut.jsonl"
    path.write_text(text[:-40])
    cli_fails(run, path, "line 7: not JSON (", "the file ends inside this line (truncated?)")
    path.write_text(text)  # a last line without its newline, but whole, is fine
    assert run("check", "--replay", str(path)).exit_code == 5


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_json_numbers_are_bad_input_even_on_lines_never_paired(run: Run, tmp_path: Path, literal: str) -> None:
    rec = steady(n=61)
    heartbeat = json.dumps({"at": AT, "src": "ws", "msg": {"type": "heartbeat", "n": 0}}).replace("0}", literal + "}")
    rec.lines.insert(3, heartbeat)
    cli_fails(run, rec.write(tmp_path / "r.jsonl"), "line 4: not JSON (")


def test_a_data_last_line_whose_data_is_not_json_is_bad_input(run: Run, tmp_path: Path) -> None:
    rec = steady(n=61)
    rec.lines.append(f'{{"at":"{AT}","src":"ws","data_last":1,"msg":{{"type":"positions","seq":1,"data":{{bad}}}}}}')
    cli_fails(run, rec.write(tmp_path / "r.jsonl"), "line 124: not JSON (")


def test_websocket_frames_keep_accepting_nan() -> None:
    """Only the recording reader is strict; a backend that sends NaN is compared, not refused."""
    from thorcut.wire.jsonfast import loads

    assert loads(b'{"x": NaN}')["x"] != loads(b'{"x": NaN}')["x"]


# -- properties ---------------------------------------------------------------------------------

VALID = "\n".join([*steady(n=3).lines, json.dumps({"at": AT, "src": "ws", "msg": envelope("positions", "K", 1, 2)})])
JSONISH = st.text(alphabet='{}[]":,0123456789.eE+-truefalsnNaIfiy \\abc\t\u00e9\ud7ff', max_size=80)


def read_all(path: Path, **limits: int) -> None:
    """Read ``path`` as `check --replay` does: the reader, then the judge (which derives targets)."""
    try:
        replay(ShadowJudge(DEFAULT_MANIFEST, DEFAULT_MANIFEST.names, strict_json=True), path, named=False, **limits)
    except RecordingError as exc:
        message = str(exc)
    else:
        return
    assert NAMES_A_LINE.search(message), message


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPS
@given(lines=st.lists(JSONISH, max_size=6))
def test_random_lines_read_or_name_a_line(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    read_all(path)


@PROPS
@given(data=st.binary(max_size=300), header=st.booleans())
def test_random_bytes_read_or_name_a_line(tmp_path: Path, data: bytes, header: bool) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes((HEADER.encode() if header else b"") + data)
    read_all(path)


@PROPS
@given(cut=st.integers(min_value=0, max_value=len(VALID)))
def test_truncation_anywhere_reads_or_names_a_line(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(VALID[:cut])
    read_all(path)


@PROPS
@given(depth=st.integers(min_value=0, max_value=3000), opener=st.sampled_from(["[", '{"a":', '[{"b":[']),
       limit=st.integers(min_value=1, max_value=200))  # fmt: skip
def test_deep_nesting_reads_or_names_a_line(tmp_path: Path, depth: int, opener: str, limit: int) -> None:
    closer = "".join({"[": "]", "{": "}"}[c] for c in opener if c in "[{")[::-1]
    msg = opener * depth + "1" + closer * depth
    path = tmp_path / "r.jsonl"
    path.write_text(HEADER + f'{{"at": "{AT}", "src": "ws", "msg": {msg}}}\n')
    read_all(path, max_depth=limit)


@PROPS
@given(size=st.integers(min_value=0, max_value=4000), limit=st.integers(min_value=1, max_value=2000))
def test_huge_lines_under_a_small_limit_read_or_name_a_line(tmp_path: Path, size: int, limit: int) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(HEADER + json.dumps({"at": AT, "src": "ws", "raw": "x" * size}) + "\n")
    read_all(path, max_line=max(limit, len(HEADER)))
