"""World exchange hours: each exchange's weekly sessions in its own time zone, and its status at a time.

Pure Python, no database: the market status feature (:class:`thor_trading.jobs.GlobalMarketJob`)
reports what this module computes. Real-looking session hours, without holidays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from thor_trading.market import DAY_SECONDS

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class SessionStatus:
    is_open: bool
    session: str  # pre, regular, post, closed
    next_change: datetime


class Exchange:
    """An exchange's weekly session hours in its local time zone (no holidays).

    ``hours`` maps day ranges to sessions, e.g. ``{"mon-fri": "09:30-16:00 regular"}``; times not
    covered are ``closed``. Only ``regular`` counts as open.
    """

    def __init__(self, code: str, name: str, timezone: str, hours: dict[str, str]) -> None:
        self.code, self.name, self.timezone, self.zone = code, name, timezone, ZoneInfo(timezone)
        self.week: list[list[tuple[int, int, str]]] = [[] for _ in DAYS]
        for days, spec in hours.items():
            first, _, last = days.partition("-")
            for day in range(DAYS.index(first), DAYS.index(last or first) + 1):
                for part in spec.split(","):
                    span, session = part.split()
                    start, end = (int(t[:2]) * 3600 + int(t[3:]) * 60 for t in span.split("-"))
                    self.week[day].append((start, end, session))

    def session_at(self, at: datetime) -> str:
        local = at.astimezone(self.zone)
        second = local.hour * 3600 + local.minute * 60 + local.second
        return next((s for a, b, s in self.week[local.weekday()] if a <= second < b), "closed")

    def status(self, at: datetime) -> SessionStatus:
        """Open/closed state at ``at`` and the next time (UTC) the session changes."""
        current = self.session_at(at)
        day = at.astimezone(self.zone).date()
        for offset in range(9):
            d = day + timedelta(days=offset)
            bounds = sorted({0} | {t for a, b, _ in self.week[d.weekday()] for t in (a, b) if t < DAY_SECONDS})
            for second in bounds:
                local = datetime(d.year, d.month, d.day, second // 3600, second // 60 % 60, tzinfo=self.zone)
                change = local.astimezone(UTC)
                if change > at and self.session_at(change) != current:
                    return SessionStatus(current == "regular", current, change)
        return SessionStatus(current == "regular", current, at + timedelta(days=7))


EXCHANGES: dict[str, Exchange] = {
    e.code: e
    for e in (
        Exchange("CME", "CME Globex", "America/Chicago",
                 {"sun": "17:00-24:00 regular", "mon-thu": "00:00-16:00 regular, 17:00-24:00 regular",
                  "fri": "00:00-16:00 regular"}),
        Exchange("NYSE", "New York Stock Exchange", "America/New_York",
                 {"mon-fri": "04:00-09:30 pre, 09:30-16:00 regular, 16:00-20:00 post"}),
        Exchange("LSE", "London Stock Exchange", "Europe/London",
                 {"mon-fri": "07:00-08:00 pre, 08:00-16:30 regular, 16:30-17:15 post"}),
        Exchange("XETRA", "Xetra (Deutsche Boerse)", "Europe/Berlin",
                 {"mon-fri": "07:30-09:00 pre, 09:00-17:30 regular, 17:30-20:00 post"}),
        Exchange("TSE", "Tokyo Stock Exchange", "Asia/Tokyo",
                 {"mon-fri": "08:00-09:00 pre, 09:00-11:30 regular, 12:30-15:30 regular"}),
        Exchange("HKEX", "Hong Kong Exchanges", "Asia/Hong_Kong",
                 {"mon-fri": "09:00-09:30 pre, 09:30-12:00 regular, 13:00-16:00 regular, 16:00-16:10 post"}),
        Exchange("ASX", "Australian Securities Exchange", "Australia/Sydney",
                 {"mon-fri": "07:00-10:00 pre, 10:00-16:00 regular, 16:00-17:00 post"}),
    )
}  # fmt: skip
