"""Options shared by several commands, defined once, and the parameter type behind every seconds option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from thorcut.config import parse_seconds
from thorcut.errors import ConfigError


class Seconds:
    """Parse a finite number of seconds in a range: ``nan``, ``inf`` and ``1e309`` are usage errors (exit 2).

    Use it for any option that becomes a timer (``--timeout``, ``--wait``, ``--duration``):
    ``typer.Option("--duration", parser=Seconds(minimum=0.001), metavar="SECONDS")``. ``minimum``
    is exclusive unless ``allow_minimum``; the maximum is :data:`thorcut.config.MAX_SECONDS`. The
    check itself is :func:`thorcut.config.parse_seconds`, shared with the ``THORCUT_*`` variables
    and the file's duration settings (:func:`thorcut.config.parse_duration`).
    """

    def __init__(self, minimum: float = 0.0, *, allow_minimum: bool = False) -> None:
        self.minimum = minimum
        self.allow_minimum = allow_minimum
        self.__name__ = "seconds"  # Typer names the parameter type after the parser

    def __call__(self, value: Any) -> float:
        if isinstance(value, float):
            return value  # a default, or already converted
        try:
            return parse_seconds(value, "it", minimum=self.minimum, allow_minimum=self.allow_minimum)
        except ConfigError as exc:
            # Click adds "Invalid value for '--timeout':" in front and exits 2.
            raise typer.BadParameter(str(exc).removeprefix("it ")) from None


JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON instead of a table.")]
RedisUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help="Redis URL: redis://, rediss:// (TLS) or unix://, with user:password if needed. "
        "Else THORCUT_REDIS_URL, else thorcut.toml, else redis://127.0.0.1:6379/0.",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        parser=Seconds(minimum=0.01, allow_minimum=True),
        metavar="SECONDS",
        help="Seconds to wait for Redis before exit 4 (default 2; THORCUT_TIMEOUT).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="thorcut.toml to read (default: nearest thorcut.toml or pyproject.toml)."),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; recorded in the audit log.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")]
ExpectVersionOpt = Annotated[
    int | None,
    typer.Option("--expect-version", help="Refuse (exit 3) unless the feature is at this version.", min=0),
]
WaitOpt = Annotated[
    float | None,
    typer.Option(
        "--wait",
        metavar="[SECONDS]",
        parser=Seconds(minimum=0.0, allow_minimum=True),
        help="Wait until every registered backend worker has applied the change (default 10 s).",
    ),
]
