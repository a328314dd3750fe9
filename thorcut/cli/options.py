"""Options shared by several commands, defined once; the groups sibling commands take whole
(:func:`with_options`); and the parameter type behind every seconds option."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer

from thorcut.errors import ConfigError
from thorcut.values import parse_seconds


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
        help="Redis URL: redis://, rediss:// (TLS) or unix://, with user:password if needed, or through "
        "Sentinel: redis+sentinel://host:port,host:port,.../service/db. Else THORCUT_REDIS_URL, else "
        "thorcut.toml, else redis://127.0.0.1:6379/0.",
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


# -- option groups ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option of a group: the parameter the command receives, its annotated type, its default."""

    name: str
    annotation: Any
    default: Any


#: How a command that changes flags is told to change them: --reason, --expect-version, --dry-run, --wait.
CHANGE_OPTIONS = (
    Option("reason", ReasonOpt, ""),
    Option("expect_version", ExpectVersionOpt, None),
    Option("dry_run", DryRunOpt, False),
    Option("wait", WaitOpt, None),
)
#: Where the output goes and which store is read: --json, --redis-url, --timeout, --config.
STORE_OPTIONS = (
    Option("as_json", JsonOpt, False),
    Option("redis_url", RedisUrlOpt, None),
    Option("timeout", TimeoutOpt, None),
    Option("config", ConfigOpt, None),
)

_Command = TypeVar("_Command", bound=Callable[..., Any])


def with_options(*options: Option) -> Callable[[_Command], _Command]:
    """Give the decorated command ``options`` after its own parameters, in that order.

    The command declares only what is its own and takes the rest as ``**options``; Typer reads the
    combined signature, so ``--help`` lists the group's options as if each were written out.
    Put it under ``@app.command()``::

        @app.command()
        @with_options(*CHANGE_OPTIONS, *STORE_OPTIONS)
        def off(feature: FeatureArg, **options: Any) -> None: ...
    """

    def decorate(command: _Command) -> _Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        if len(own) == len(signature.parameters):
            raise TypeError(f"{command.__name__} must take **options to receive the shared options")
        clash = sorted({p.name for p in own} & {o.name for o in options})
        if clash:
            raise TypeError(f"{command.__name__} declares {clash} itself and takes them as shared options")
        added = [
            inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=o.annotation)
            for o in options
        ]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            return command(*args, **kwargs)

        run.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return cast(_Command, run)

    return decorate
