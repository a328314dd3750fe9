"""The ``thorcut`` command: composes one small Typer app per command and holds the error boundary.

Settings come from a command-line flag, then a ``THORCUT_*`` environment variable, then
``thorcut.toml`` (or ``[tool.thorcut]`` in ``pyproject.toml``).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from thorcut import __version__
from thorcut.errors import ExitCode, ThorcutError

#: Options whose value may be left out, and the value they then take. Typer has no optional-value
#: options, so the root group fills the default in before parsing (``--wait`` = ``--wait 10``).
OPTIONAL_VALUES = {"--wait": "10"}


def fill_optional_values(args: list[str]) -> list[str]:
    """Return ``args`` with the default inserted after an optional-value option given bare."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        out.append(arg)
        if arg in OPTIONAL_VALUES:
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is None or not _is_number(nxt):
                out.append(OPTIONAL_VALUES[arg])
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Boundary(TyperGroup):
    """Turns every :class:`ThorcutError` into ``Error: …`` on stderr and its exit code."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return list(super().parse_args(ctx, fill_optional_values(args)))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ThorcutError as exc:
            from thorcut.config import redact_url
            from thorcut.output import err

            # Messages already redact URLs; this is a second line of defence for odd formats.
            message = " ".join(redact_url(w) if "://" in w else w for w in str(exc).split(" "))
            err().print(f"[bold red]Error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


#: command name -> module under thorcut.commands that defines it; "dev" is a sub-app.
COMMANDS = {
    "status": "status",
    "shadow": "stages",
    "enable": "stages",
    "disable": "stages",
    "off": "stages",
    "complete": "stages",
    "rollback": "stages",
    "history": "history",
    "tail": "tail",
    "diff": "parity",
    "check": "parity",
    "dev": "dev",
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"thorcut {__version__}")
        raise typer.Exit()


def build_app(only: str | None = None) -> typer.Typer:
    """Return the ``thorcut`` app; with ``only`` naming a command, just that command is built.

    Typer converts every registered command's signature on each run; ``main`` builds only the
    one invoked so a command pays for itself alone (start-up budget: docs/benchmarks.md).
    """
    app = typer.Typer(
        cls=_Boundary,
        name="thorcut",
        help="Cut a trading backend over from REST polling to WebSocket push, one feature at a time.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    names = [only] if only in COMMANDS else list(COMMANDS)
    for module_name in dict.fromkeys(COMMANDS[n] for n in names):
        module = importlib.import_module(f"thorcut.commands.{module_name}")
        if module_name == "dev":
            app.add_typer(module.app, name="dev")
        else:
            wanted = [c for c in module.app.registered_commands if only is None or c.callback.__name__ == only]
            app.registered_commands += wanted

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    ) -> None:
        """Cut a trading backend over from REST polling to WebSocket push, one feature at a time."""

    return app


def __getattr__(name: str) -> typer.Typer:
    # `thorcut.cli.app` (tests, docs) is the full app, built on first use.
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(name)


def main() -> None:
    """Console-script entry point."""
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    try:
        build_app(first)()
    except BrokenPipeError:  # `thorcut history | head`: the reader left; that is not an error
        sys.stderr.close()
        sys.exit(int(ExitCode.OK))
