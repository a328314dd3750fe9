"""Recordings: JSON Lines of what was seen on the wire (docs/contracts.md, "Recordings").

The first line is the header ``{"thorcut_recording": 1, "created": …, "manifest": {…}}`` (it may
list the features it holds, ``"features": [...]``); every other line is one of::

    {"at": "…", "src": "ws", "msg": {…}}             a WebSocket frame that was JSON
    {"at": "…", "src": "ws", "raw": "…"}             a frame that was not JSON (kept, never lost)
    {"at": "…", "src": "rest", "feature": "positions", "url": "/api/account/positions?account=DU1234",
     "status": 200, "elapsed_ms": 3.1, "body": {…} | "raw": "…" | "error": "timeout"}

``body`` is the parsed response, ``raw`` a response that was not JSON, ``error`` a request that got
no response. That is the whole required format; key order and layout mean nothing. A ws line may
also carry ``"reconnected": "resume"`` or ``"reconnected": "reset"``: the stream reconnected just
before it, and resumed (judged against the kept baseline) or not (each stream starts afresh), so
that a replay judges it as the live run did; a line without it follows on the same connection. A
message marked ``"resync": true`` is kept as it came, so its replay counts the resync too. thorcut itself
also writes ``type``, ``key`` and ``for_seq`` on REST lines (which message the request was made
for); a line without them is read as well, and :func:`thorcut.parity.replay.replay` derives them
from the body or the URL through the manifest. A line that is not one RFC 8259 JSON object of this
shape is a :class:`RecordingError` naming its line number (exit 2).

**Bounded reading.** Lines are read with ``readline(limit + 1)``: a line longer than
``max_line`` bytes (default 64 MiB), or nested deeper than ``max_depth`` (default 128, well
within what the compare engine's recursion handles), is bad input, so a recording of any size or
content is read in memory bounded by the limit. A recording is a file or a pipe: a directory or a
device (``/dev/zero``) is refused before anything is read, and a FIFO is opened without waiting
for a writer. ``NaN``/``Infinity`` and numbers beyond the double range are not JSON here
(:func:`thorcut.wire.jsonfast.loads_strict`), even on lines that are never paired.

**The data-last marker.** Lines that thorcut writes carry ``"data_last":1`` and put the
envelope's ``data`` member last. Every line is parsed whole (a body must be valid JSON whether
or not it is ever compared), so the marker only promises the layout, and a line that carries it
with a member after ``data`` is bad input.

Everything a recording holds is therefore strict JSON, which is what lets a replay's judge decide
equal pairs without the engine (``ShadowJudge(strict_json=True)``): by ``==`` where the strict scan
found that neither line can hold a bool (a record's ``maybe_bool``), else by canonical bytes.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from thorcut.clock import now_iso
from thorcut.errors import UsageError

FORMAT_VERSION = 1


class RecordingError(UsageError):
    """A recording that cannot be read; exit 2 like any other bad input."""


# Records are plain slotted dataclasses, not frozen ones: a frozen __init__ sets each field through
# object.__setattr__, 2 µs a REST line of a replay.
@dataclass(slots=True)
class WsRecord:
    """One WebSocket frame: ``msg`` if it was JSON, else ``raw`` holds its text."""

    at: str
    msg: Any = None
    raw: str | None = None
    maybe_bool: bool = True  # False: the line certainly holds no true/false (jsonfast.loads_scanned)
    reconnected: str | None = None  # "resume" or "reset": the first frame after a reconnect (module docstring)

    @property
    def message(self) -> Any:
        """The whole message as it was received."""
        return self.msg


@dataclass(slots=True)
class RestRecord:
    """One REST request of ``feature``, made to pair a message of ``type``/``key``.

    ``type``/``key`` are None when the line does not say (a recording not written by thorcut);
    ``for_seq`` is None when it does not say which message the request was made for.
    """

    at: str
    feature: str
    type: str | None
    key: str | None
    url: str
    status: int | None
    elapsed_ms: float
    body: Any = None
    raw: str | None = None
    error: str | None = None
    for_seq: int | None = None
    line: int = 0  # where it was read (0: not read from a file)
    maybe_bool: bool = True  # False: the line certainly holds no true/false (jsonfast.loads_scanned)
    text: bytes | None = None  # the line as read, when read from a file (body_of parses its body anew)

    @property
    def response(self) -> Any:
        """The whole response body."""
        return self.body


Record = WsRecord | RestRecord

#: the values of a ws line's ``reconnected``
RECONNECTED = ("resume", "reset")


def body_of(text: bytes) -> Any:
    """The ``body`` of a REST line that was read already (:attr:`RestRecord.text`), parsed anew."""
    from thorcut.wire.jsonfast import loads_strict

    return loads_strict(text)["body"]


class RecordingWriter:
    """Append records to a file; the header is written on open. Lines are flushed as written."""

    def __init__(self, path: Path, manifest: dict[str, Any], *, created: str | None = None) -> None:
        self.path = path
        try:
            self._file: IO[str] = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise RecordingError(f"cannot write recording {path}: {exc.strerror}") from None
        self._write({"thorcut_recording": FORMAT_VERSION, "created": created or now_iso(), "manifest": manifest})

    def _write(self, obj: dict[str, Any]) -> None:
        self._file.write(_dumps(obj) + "\n")
        self._file.flush()

    def _write_data_last(self, obj: dict[str, Any], name: str, envelope: Any) -> None:
        """Write ``obj`` with ``envelope`` (a dict with "data") as its last member, data last."""
        if not isinstance(envelope, dict) or "data" not in envelope:
            self._write({**obj, name: envelope})
            return
        head = _dumps({k: v for k, v in envelope.items() if k != "data"})
        sep = "," if len(head) > 2 else ""
        marked = {"at": obj["at"], "src": obj["src"], "data_last": 1, **obj}  # the marker near the start
        line = _dumps(marked)[:-1] + f',"{name}":' + head[:-1] + f'{sep}"data":'
        self._file.write(line + _dumps(envelope["data"]) + "}}\n")
        self._file.flush()

    def ws(self, at: str, msg: Any = None, raw: str | None = None, *, reconnected: str | None = None) -> None:
        """Record a frame: its parsed JSON as ``msg``, or its text as ``raw`` when it was not JSON.
        ``reconnected``: the first frame after a reconnect, ``"resume"`` or ``"reset"``."""
        head: dict[str, Any] = {"at": at, "src": "ws"}
        if reconnected is not None:
            head["reconnected"] = reconnected
        if raw is not None:
            self._write({**head, "raw": raw})
        else:
            self._write_data_last(head, "msg", msg)

    def rest(self, rec: RestRecord) -> None:
        out: dict[str, Any] = {
            "at": rec.at, "src": "rest", "feature": rec.feature, "type": rec.type, "key": rec.key,
            "for_seq": rec.for_seq, "url": rec.url, "status": rec.status, "elapsed_ms": rec.elapsed_ms,
        }  # fmt: skip
        if rec.error is not None:
            out["error"] = rec.error
        elif rec.raw is not None:
            out["raw"] = rec.raw
        else:
            self._write_data_last(out, "body", rec.body)
            return
        self._write(out)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Header:
    created: str
    manifest: dict[str, Any]
    features: tuple[str, ...] | None = None  # the features the recording says it holds


#: the default bounds of one line (docs/contracts.md, "Recordings": reading is bounded)
DEFAULT_MAX_LINE = 64 * 2**20
DEFAULT_MAX_DEPTH = 128


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _bad(path: Path, line: int, why: str) -> RecordingError:
    return RecordingError(f"{path}, line {line}: {why}")


def _str(obj: dict[str, Any], name: str, path: Path, line: int, *, optional: bool = False) -> Any:
    value = obj.get(name)
    if not isinstance(value, str) and not (optional and value is None):
        raise _bad(path, line, f"{name!r} must be a string" + (" or absent" if optional else ""))
    return value


def _check_data_last(obj: dict[str, Any], envelope: Any, path: Path, line: int) -> None:
    """A line marked ``data_last`` promises that its envelope's ``data`` member comes last."""
    if "data_last" in obj and (not isinstance(envelope, dict) or not envelope or next(reversed(envelope)) != "data"):
        raise _bad(path, line, "the line is marked data_last, but 'data' is not the last member of its envelope")


def _parse(obj: Any, path: Path, line: int, maybe_bool: bool = True, text: bytes | None = None) -> Record:
    # The shapes of nearly every line, tested with exact types (a parsed line holds no subclasses)
    # and built positionally: 1.5 µs a REST line less than the general path below, which takes
    # every other shape and gives the errors.
    if type(obj) is dict and type(at := obj.get("at")) is str and "data_last" not in obj:
        src = obj.get("src")
        if src == "ws" and "msg" in obj and "reconnected" not in obj:
            return WsRecord(at, obj["msg"], None, maybe_bool)
        if src == "rest" and "body" in obj and obj.get("raw") is None and obj.get("error") is None:
            status, elapsed, for_seq = obj.get("status"), obj.get("elapsed_ms", 0.0), obj.get("for_seq")
            feature, type_, key, url = obj.get("feature"), obj.get("type"), obj.get("key"), obj.get("url")
            if ((status is None or type(status) is int) and (type(elapsed) is float or type(elapsed) is int)
                    and (for_seq is None or (type(for_seq) is int and for_seq >= 0)) and type(feature) is str
                    and type(url) is str and (type_ is None or type(type_) is str)
                    and (key is None or type(key) is str)):  # fmt: skip
                return RestRecord(at, feature, type_, key, url, status, float(elapsed), obj["body"], None, None,
                                  for_seq, line, maybe_bool, text)  # fmt: skip
    return _parse_any(obj, path, line, maybe_bool, text)


def _parse_any(obj: Any, path: Path, line: int, maybe_bool: bool, text: bytes | None) -> Record:
    if not isinstance(obj, dict):
        raise _bad(path, line, "expected a JSON object")
    at = _str(obj, "at", path, line)
    src = obj.get("src")
    if src == "ws":
        reconnected = obj.get("reconnected")
        if reconnected is not None and reconnected not in RECONNECTED:
            raise _bad(path, line, f'\'reconnected\' must be "resume" or "reset" or absent, not {reconnected!r}')
        if "msg" in obj:
            _check_data_last(obj, obj["msg"], path, line)
            return WsRecord(at, msg=obj["msg"], maybe_bool=maybe_bool, reconnected=reconnected)
        if isinstance(obj.get("raw"), str):
            return WsRecord(at, raw=obj["raw"], maybe_bool=maybe_bool, reconnected=reconnected)
        raise _bad(path, line, "a ws record needs 'msg' or a string 'raw'")
    if src == "rest":
        status = obj.get("status")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
            raise _bad(path, line, "'status' must be an integer or null")
        elapsed = obj.get("elapsed_ms", 0.0)
        if not isinstance(elapsed, int | float) or isinstance(elapsed, bool):
            raise _bad(path, line, "'elapsed_ms' must be a number")
        if not any(k in obj for k in ("body", "raw", "error")):
            raise _bad(path, line, "a rest record needs 'body', 'raw' or 'error'")
        raw, error, for_seq = obj.get("raw"), obj.get("error"), obj.get("for_seq")
        if for_seq is not None and (not isinstance(for_seq, int) or isinstance(for_seq, bool) or for_seq < 0):
            raise _bad(path, line, "'for_seq' must be a non-negative integer or null")
        if (raw is not None and not isinstance(raw, str)) or (error is not None and not isinstance(error, str)):
            raise _bad(path, line, "'raw' and 'error' must be strings")
        body = obj.get("body")
        if "body" in obj:
            _check_data_last(obj, body, path, line)
        return RestRecord(at, _str(obj, "feature", path, line), _str(obj, "type", path, line, optional=True),
                          _str(obj, "key", path, line, optional=True), _str(obj, "url", path, line), status,
                          float(elapsed), body=body, raw=raw, error=error, for_seq=for_seq, line=line,
                          maybe_bool=maybe_bool, text=text)  # fmt: skip
    raise _bad(path, line, f'\'src\' must be "ws" or "rest", not {src!r}')


def _open(path: Path) -> IO[bytes]:
    """Open a regular file or a pipe for reading; refuse anything else before reading a byte."""
    try:
        # O_NONBLOCK: opening a FIFO that has no writer would otherwise wait for one forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise RecordingError(f"cannot read recording {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        os.close(fd)
        kind = ("a directory" if stat.S_ISDIR(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")  # fmt: skip
        raise RecordingError(f"cannot read recording {path}: it is {kind}; a recording is a file (or a pipe)")
    os.set_blocking(fd, True)
    # A 1 MiB buffer: with the default 8 KiB, reading 7 KB lines cost 3.4 µs a line in read calls
    # and copies (0.14 s for 40,000 lines), with 1 MiB 0.9 µs. A pipe still gives what it has.
    return os.fdopen(fd, "rb", buffering=1 << 20)


class RecordingReader:
    """Read a recording lazily: :attr:`header` first, then iterate the records (flat memory).

    Raises :class:`RecordingError` naming the line for anything that is not a recording: a line
    longer than ``max_line`` bytes or nested deeper than ``max_depth``, text that is not one JSON
    value, a record of the wrong shape.
    """

    def __init__(self, path: Path, *, max_line: int = DEFAULT_MAX_LINE, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.path = path
        self.max_line = max_line
        self.max_depth = max_depth
        self._number = 0
        self._file = _open(path)
        try:
            self.header = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _read_header(self) -> Header:
        path = self.path
        first = self._readline()
        if first is None or not first.strip():
            raise _bad(path, 1, "empty file; expected the thorcut_recording header")
        head, _ = self._loads(first, 1)
        if not isinstance(head, dict) or "thorcut_recording" not in head:
            raise _bad(path, 1, "not a thorcut recording (no thorcut_recording header)")
        if head["thorcut_recording"] != FORMAT_VERSION:
            raise _bad(path, 1, f"recording format {head['thorcut_recording']!r} is not supported "
                                f"(this thorcut reads {FORMAT_VERSION})")  # fmt: skip
        manifest = head.get("manifest", {})
        if not isinstance(manifest, dict):
            raise _bad(path, 1, "'manifest' must be an object")
        features = head.get("features")
        if features is not None and (not isinstance(features, list) or not all(isinstance(f, str) for f in features)):
            raise _bad(path, 1, "'features' must be a list of feature names")
        return Header(str(head.get("created", "")), manifest, tuple(features) if features is not None else None)

    def _readline(self) -> bytes | None:
        """The next line (None at the end), at most ``max_line`` bytes before its newline."""
        line = self._file.readline(self.max_line + 1)
        if not line:
            return None
        self._number += 1
        if len(line) > self.max_line and not line.endswith(b"\n"):
            raise _bad(self.path, self._number, f"longer than the limit of {self.max_line:,} bytes")
        return line

    def _not_json(self, line: bytes, number: int, exc: ValueError) -> RecordingError:
        cut = "" if line.endswith(b"\n") else "; the file ends inside this line (truncated?)"
        return _bad(self.path, number, f"not JSON ({exc}){cut}")

    def _loads(self, line: bytes, number: int) -> tuple[Any, bool]:
        from thorcut.wire.jsonfast import NotJSON, loads_scanned

        try:
            return loads_scanned(line, self.max_depth)
        except NotJSON as exc:
            raise self._not_json(line, number, exc) from None

    def __iter__(self) -> Iterator[Record]:
        from thorcut.wire.jsonfast import NotJSON, loads_scanned

        # _readline and _loads inlined: this loop runs for every line (~1 µs a line less).
        readline, limit, depth, path = self._file.readline, self.max_line, self.max_depth, self.path
        try:
            while line := readline(limit + 1):
                self._number = number = self._number + 1
                if len(line) > limit and not line.endswith(b"\n"):
                    raise _bad(path, number, f"longer than the limit of {limit:,} bytes")
                if line.isspace():
                    continue
                try:
                    obj, maybe_bool = loads_scanned(line, depth)
                except NotJSON as exc:
                    raise self._not_json(line, number, exc) from None
                yield _parse(obj, path, number, maybe_bool, line)
        finally:
            self._file.close()

    def close(self) -> None:
        self._file.close()
