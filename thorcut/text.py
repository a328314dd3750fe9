"""Text for people: network text made inert, times as "12 s ago", tables and lists that fit a width.

Used by the command line and by the parity report alike; Rich objects in, Rich objects out, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table
from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(value: object) -> Text:
    """Return text from Redis or the network as inert Rich text: no markup, no control bytes."""
    text = "" if value is None else str(value)
    return Text(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def ago(iso: str | None, now: datetime | None = None) -> str:
    """Return '12 s ago' style text for an ISO time, '—' if none."""
    from thorcut.clock import parse_iso

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


def fit_table(console: Console, table: Table, width: int | None = None) -> bool:
    """Size ``table``'s columns so that no word and no ``no_wrap`` cell is cut at ``width``.

    Rich squeezes a table that is too wide column by column and cuts words with ``…`` (a
    verdict shown as ``PEND…``, a reason column dropped): unreadable in CI logs and pipes, where
    the width is 80 or whatever ``COLUMNS`` says. This gives every column at least its longest
    word (its whole content if ``no_wrap``), shares what is left by how much each would grow,
    and returns True; it returns False, leaving the table alone, when even that does not fit —
    the caller then shows the same facts as lines instead.
    """
    width = console.width if width is None else width
    wide = console.options.update_width(1_000_000)
    ranges = []
    for column in table.columns:
        m = table._measure_column(console, wide, column)
        ranges.append((m.maximum if column.no_wrap else m.minimum, m.maximum))
    extra = table._extra_width
    if sum(hi for _, hi in ranges) + extra <= width:
        return True  # fits as it is: Rich wraps nothing
    if sum(lo for lo, _ in ranges) + extra > width:
        return False
    spare = width - extra - sum(lo for lo, _ in ranges)
    growth = [hi - lo for lo, hi in ranges]
    total = sum(growth)
    widths = [lo + spare * g // total for (lo, _), g in zip(ranges, growth, strict=True)]
    left = width - extra - sum(widths)
    for i in sorted(range(len(widths)), key=lambda i: growth[i] - (widths[i] - ranges[i][0]), reverse=True):
        if left <= 0:
            break
        if widths[i] < ranges[i][1]:
            widths[i] += 1
            left -= 1
    for column, w in zip(table.columns, widths, strict=True):
        column.width = max(1, w - table._get_padding_width(column._index))
    return True


def pack(pieces: list[str], width: int, indent: str = "  ", sep: str = " · ") -> str:
    """Return ``pieces`` joined by ``sep`` in lines of at most ``width``, never splitting a piece."""
    lines: list[str] = []
    line = ""
    for piece in pieces:
        candidate = f"{line}{sep}{piece}" if line else piece
        if line and len(indent) + len(candidate) > width:
            lines.append(indent + line)
            line = piece
        else:
            line = candidate
    if line:
        lines.append(indent + line)
    return "\n".join(lines)
