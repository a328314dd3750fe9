"""Consoles and printing helpers: data on stdout, diagnostics on stderr, network text escaped."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def out() -> Console:
    """Return a console on the current stdout (looked up each call, so tests can capture it)."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def err() -> Console:
    return Console(file=sys.stderr, highlight=False)


def safe(value: object) -> Text:
    """Return text from Redis or the network as inert Rich text: no markup, no control bytes."""
    text = "" if value is None else str(value)
    return Text(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def print_json(data: Any) -> None:
    """Write one JSON document on stdout (stable key order)."""
    sys.stdout.write(json.dumps(data, sort_keys=True, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def ago(iso: str | None, now: datetime | None = None) -> str:
    """Return '12 s ago' style text for an ISO time, '—' if none."""
    from thorcut.compare.verdict import parse_iso

    at = parse_iso(iso) if iso else None
    if at is None:
        return "—"
    secs = ((now or datetime.now(UTC)) - at).total_seconds()
    if secs < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            return f"{secs / size:.0f} {unit} ago"
    return f"{secs:.0f} s ago"
