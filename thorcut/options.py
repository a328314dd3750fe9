"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    typer.Option("--timeout", help="Seconds to wait for Redis before exit 4 (default 2; THORCUT_TIMEOUT).", min=0.01),
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
        help="Wait until every registered backend worker has applied the change (default 10 s).",
        min=0.0,
    ),
]
