"""Hand-made recordings: write exactly the traffic a test needs, line by line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from thorcut.clock import now_iso
from thorcut.manifest import DEFAULT_MANIFEST

T0 = datetime(2026, 11, 24, 14, 0, 0, tzinfo=UTC)
FEATURE_OF = {t: s.name for s in DEFAULT_MANIFEST.features for t in s.types}
URL = {"account_balance": "/api/account/balance?account={key}", "positions": "/api/account/positions?account={key}",
       "intraday_bar": "/api/intraday/{key}/bar", "vwap": "/api/intraday/{key}/vwap",
       "market_status": "/api/markets/status?market={key}"}  # fmt: skip


def at(seconds: float) -> str:
    return now_iso(T0 + timedelta(seconds=seconds))


def envelope(type_: str, key: str, seq: int, data: Any, t: float = 0.0) -> dict[str, Any]:
    return {"type": type_, "feature": FEATURE_OF.get(type_, type_), "key": key, "seq": seq, "ts": at(t), "data": data}


class Recording:
    """Lines of a recording; ``pair`` adds a message and the REST response made for it."""

    def __init__(self) -> None:
        self.lines: list[str] = [json.dumps({"thorcut_recording": 1, "created": at(0), "manifest": {}})]

    def ws(self, t: float, msg: Any) -> Recording:
        self.lines.append(json.dumps({"at": at(t), "src": "ws", "msg": msg}))
        return self

    def raw_ws(self, t: float, text: str) -> Recording:
        self.lines.append(json.dumps({"at": at(t), "src": "ws", "raw": text}))
        return self

    def rest(self, t: float, type_: str, key: str, for_seq: int | None, body: Any = None, *, status: int = 200,
             error: str | None = None, raw: str | None = None) -> Recording:  # fmt: skip
        line: dict[str, Any] = {"at": at(t), "src": "rest", "feature": FEATURE_OF[type_], "type": type_, "key": key,
                                "for_seq": for_seq, "url": URL[type_].format(key=key), "status": status,
                                "elapsed_ms": 1.5}  # fmt: skip
        if error is not None:
            line["error"] = error
            line["status"] = None
        elif raw is not None:
            line["raw"] = raw
        else:
            line["body"] = body
        self.lines.append(json.dumps(line))
        return self

    def pair(self, t: float, type_: str, key: str, seq: int, ws_data: Any, rest_data: Any = None, *,
             rest_seq: int | None = None) -> Recording:  # fmt: skip
        """A message at ``seq`` and the REST response made for it (same data unless ``rest_data``)."""
        self.ws(t, envelope(type_, key, seq, ws_data, t))
        body = envelope(type_, key, seq if rest_seq is None else rest_seq, ws_data if rest_data is None else rest_data)
        return self.rest(t + 0.01, type_, key, seq, body)

    def write(self, path: Path) -> Path:
        path.write_text("\n".join(self.lines) + "\n")
        return path


def balance(equity: float = 100_000.0, **extra: Any) -> dict[str, Any]:
    return {"account": "DU1234", "currency": "USD", "cash": 50_000.0, "equity": equity, "margin_used": 1_200.5,
            **extra}  # fmt: skip


def positions(rows: list[tuple[str, int, float]]) -> dict[str, Any]:
    return {"account": "DU1234", "positions": [{"symbol": s, "quantity": q, "last_price": p} for s, q, p in rows]}


def steady(feature_type: str = "account_balance", key: str = "DU1234", n: int = 60, every: float = 1.0,
           data: Any = None) -> Recording:  # fmt: skip
    """``n`` equal pairs, one per ``every`` seconds (the default thresholds: 50 pairs over 60 s)."""
    rec = Recording()
    for i in range(n):
        rec.pair(i * every, feature_type, key, i + 1, data if data is not None else balance(100_000.0 + i))
    return rec


def plain_lines(rec: Recording, *, seed: int = 0) -> list[str]:
    """The lines of ``rec`` as another tool would write them: only the fields docs/contracts.md requires
    (REST lines lose ``type``, ``key`` and ``for_seq``), keys shuffled, ``json.dumps`` defaults."""
    import random

    rnd = random.Random(seed)

    def shuffled(obj: Any) -> Any:
        if isinstance(obj, dict):
            items = [(k, shuffled(v)) for k, v in obj.items()]
            rnd.shuffle(items)
            return dict(items)
        if isinstance(obj, list):
            return [shuffled(v) for v in obj]
        return obj

    out = [rec.lines[0]]
    for line in rec.lines[1:]:
        obj = json.loads(line)
        if obj.get("src") == "rest":
            for name in ("type", "key", "for_seq"):
                obj.pop(name, None)
        out.append(json.dumps(shuffled(obj)))
    return out


def write_plain(rec: Recording, path: Path, *, seed: int = 0) -> Path:
    path.write_text("\n".join(plain_lines(rec, seed=seed)) + "\n")
    return path


def write_thorcut(rec: Recording, path: Path) -> Path:
    """The lines of ``rec`` written through :class:`RecordingWriter`, as `diff --record` writes them."""
    from thorcut.wire.recording import RecordingWriter, RestRecord

    with RecordingWriter(path, {}, created=at(0)) as w:
        for line in rec.lines[1:]:
            obj = json.loads(line)
            if obj["src"] == "ws":
                w.ws(obj["at"], msg=obj.get("msg"), raw=obj.get("raw"))
            else:
                w.rest(RestRecord(obj["at"], obj["feature"], obj["type"], obj["key"], obj["url"], obj["status"],
                                  obj["elapsed_ms"], body=obj.get("body"), raw=obj.get("raw"),
                                  error=obj.get("error"), for_seq=obj["for_seq"]))  # fmt: skip
    return path
