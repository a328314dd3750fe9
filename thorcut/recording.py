"""Recordings: JSON Lines of what was seen on the wire (DESIGN.md, "Recordings").

The first line is the header ``{"thorcut_recording": 1, "created": …, "manifest": {…}}``; every
other line is one of::

    {"at": "…", "src": "ws", "msg": {…}}             a WebSocket frame that was JSON
    {"at": "…", "src": "ws", "raw": "…"}             a frame that was not JSON (kept, never lost)
    {"at": "…", "src": "rest", "feature": "positions", "type": "positions", "key": "DU1234",
     "for_seq": 4812, "url": "/api/account/positions?account=DU1234", "status": 200,
     "elapsed_ms": 3.1, "body": {…} | "raw": "…" | "error": "timeout"}

``type``, ``key`` and ``for_seq`` on a REST line say which message the request was made for
(``for_seq`` may be absent or null: a response not made for one message); ``body`` is the parsed
response, ``raw`` a response that was not JSON, ``error`` a request that got no response.
A malformed line is a :class:`RecordingError` that names its line number (exit 2).

**The data-last layout.** Lines that thorcut writes carry ``"data_last":1`` and put the envelope's
``data`` member last (key order means nothing in JSON, so they are the same records). The reader
then splits such a line at ``,"data":`` inside the envelope, parses only the small head, and keeps
the ``data`` text as :class:`Body`: a WebSocket and a REST body with identical text are equal under
any rule, so equal pairs are judged without parsing their bodies at all (docs/benchmarks.md). A
split is taken only when the head then parses with the envelope closed exactly there (a
``,"data":`` nested deeper leaves braces open and fails); otherwise, and for every line without the
marker, the line is parsed whole. A line must not carry the marker unless ``data`` is last.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from thorcut.compare.verdict import now_iso
from thorcut.errors import UsageError

FORMAT_VERSION = 1


class RecordingError(UsageError):
    """A recording that cannot be read; exit 2 like any other bad input."""


class Body:
    """The text of an envelope's ``data`` member, parsed only when needed (the data-last layout)."""

    __slots__ = ("_value", "text")

    def __init__(self, text: bytes) -> None:
        self.text = text
        self._value: Any = _UNPARSED

    def value(self) -> Any:
        """Return the parsed value; raise :class:`RecordingError` if the text is not one JSON value."""
        if self._value is _UNPARSED:
            from thorcut.jsonfast import loads

            try:
                self._value = loads(self.text)
            except ValueError as exc:
                raise RecordingError(f"a data-last line's data is not one JSON value ({exc.args[0]})") from None
        return self._value


_UNPARSED = object()


def body_value(body: Any) -> Any:
    """``body`` itself, or the parsed value of a :class:`Body`."""
    return body.value() if type(body) is Body else body


@dataclass(frozen=True)
class WsRecord:
    """One WebSocket frame: ``msg`` if it was JSON, else ``raw`` holds its text."""

    at: str
    msg: Any = None
    raw: str | None = None
    data: Body | None = None  # data-last lines: ``msg`` lacks "data", which is here

    @property
    def message(self) -> Any:
        """The whole message as it was received (``data`` put back in place, parsed)."""
        return self.msg if self.data is None else {**self.msg, "data": self.data.value()}


@dataclass(frozen=True)
class RestRecord:
    """One REST request made to pair a message of ``type``/``key``."""

    at: str
    feature: str
    type: str
    key: str
    url: str
    status: int | None
    elapsed_ms: float
    body: Any = None
    raw: str | None = None
    error: str | None = None
    for_seq: int | None = None
    data: Body | None = None  # data-last lines: ``body`` lacks "data", which is here

    @property
    def response(self) -> Any:
        """The whole response body (``data`` put back in place, parsed)."""
        return self.body if self.data is None else {**self.body, "data": self.data.value()}


Record = WsRecord | RestRecord


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

    def ws(self, at: str, msg: Any = None, raw: str | None = None) -> None:
        """Record a frame: its parsed JSON as ``msg``, or its text as ``raw`` when it was not JSON."""
        if raw is not None:
            self._write({"at": at, "src": "ws", "raw": raw})
        else:
            self._write_data_last({"at": at, "src": "ws"}, "msg", msg)

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


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _bad(path: Path, line: int, why: str) -> RecordingError:
    return RecordingError(f"{path}, line {line}: {why}")


def _str(obj: dict[str, Any], name: str, path: Path, line: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise _bad(path, line, f"{name!r} must be a string")
    return value


def _parse(obj: Any, path: Path, line: int, data: Body | None = None) -> Record:
    if not isinstance(obj, dict):
        raise _bad(path, line, "expected a JSON object")
    at = _str(obj, "at", path, line)
    src = obj.get("src")
    if src == "ws":
        if "msg" in obj:
            return WsRecord(at, msg=obj["msg"], data=data)
        if isinstance(obj.get("raw"), str):
            return WsRecord(at, raw=obj["raw"])
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
        return RestRecord(at, _str(obj, "feature", path, line), _str(obj, "type", path, line),
                          _str(obj, "key", path, line), _str(obj, "url", path, line), status, float(elapsed),
                          body=obj.get("body"), raw=raw, error=error, for_seq=for_seq, data=data)  # fmt: skip
    raise _bad(path, line, f'\'src\' must be "ws" or "rest", not {src!r}')


class RecordingReader:
    """Read a recording lazily: :attr:`header` first, then iterate the records (flat memory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file: IO[bytes] = path.open("rb")
        except OSError as exc:
            raise RecordingError(f"cannot read recording {path}: {exc.strerror or exc}") from None
        first = self._file.readline()
        if not first.strip():
            self._file.close()
            raise _bad(path, 1, "empty file; expected the thorcut_recording header")
        try:
            head = json.loads(first)
        except ValueError as exc:
            self._file.close()
            raise _bad(path, 1, f"not JSON ({exc.args[0]})") from None
        if not isinstance(head, dict) or "thorcut_recording" not in head:
            self._file.close()
            raise _bad(path, 1, "not a thorcut recording (no thorcut_recording header)")
        if head["thorcut_recording"] != FORMAT_VERSION:
            self._file.close()
            raise _bad(path, 1, f"recording format {head['thorcut_recording']!r} is not supported "
                                f"(this thorcut reads {FORMAT_VERSION})")  # fmt: skip
        manifest = head.get("manifest", {})
        if not isinstance(manifest, dict):
            self._file.close()
            raise _bad(path, 1, "'manifest' must be an object")
        self.header = Header(str(head.get("created", "")), manifest)

    def __iter__(self) -> Iterator[Record]:
        from thorcut.jsonfast import loads

        path = self.path
        try:
            for number, line in enumerate(self._file, start=2):
                if not line.strip():
                    continue
                split = _split_data_last(line, loads)
                if split is not None:
                    yield _parse(split[0], path, number, split[1])
                    continue
                try:
                    obj = loads(line)
                except ValueError as exc:
                    raise _bad(path, number, f"not JSON ({exc.args[0]})") from None
                yield _parse(obj, path, number)
        finally:
            self._file.close()

    def close(self) -> None:
        self._file.close()


_MARK = b'"data_last":1,'
_DATA = b',"data":'


def _split_data_last(line: bytes, loads: Any) -> tuple[Any, Body] | None:
    """Split a data-last line into its parsed head and the ``data`` text, or None to parse whole."""
    if line.find(_MARK, 0, 200) < 0:
        return None
    end = len(line.rstrip())
    start = max(line.find(b',"msg":{'), line.find(b',"body":{'))
    if start < 0 or line[end - 2 : end] != b"}}":
        return None
    cut = line.find(_DATA, start)
    if cut < 0:
        return None
    try:
        head = loads(line[:cut] + b"}}")
    except ValueError:
        return None  # the ,"data": found was nested deeper: parse the line whole
    envelope = head.get("msg", head.get("body")) if isinstance(head, dict) else None
    if not isinstance(envelope, dict) or "data" in envelope:
        return None
    return head, Body(line[cut + len(_DATA) : end - 2])
