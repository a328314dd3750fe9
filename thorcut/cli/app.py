"""The ``thorcut`` command: composes one small Typer app per command and holds the error boundary.

Settings come from a command-line flag, then a ``THORCUT_*`` environment variable, then
``thorcut.toml`` (or ``[tool.thorcut]`` in ``pyproject.toml``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer._click.exceptions import ClickException  # Typer's own Click, which raises these
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


#: Set by ``--traceback`` (anywhere on the command line) or ``THORCUT_TRACEBACK=1``.
TRACEBACK_ENV = "THORCUT_TRACEBACK"


def _wants_traceback(args: list[str]) -> tuple[bool, list[str]]:
    """Return whether a traceback was asked for, and ``args`` without ``--traceback``.

    Taken out before Click parses anything, so it works after a subcommand too
    (``thorcut diff positions --traceback``) and for errors raised while parsing.
    """
    cut = args.index("--") if "--" in args else len(args)
    asked = "--traceback" in args[:cut]
    rest = [a for a in args[:cut] if a != "--traceback"] + args[cut:]
    env = os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")
    return asked or env, rest


def _redacted(text: str) -> str:
    from thorcut.values import redact_url

    # Messages already redact URLs; this is a second line of defence for odd formats.
    return " ".join(redact_url(w) if "://" in w else w for w in text.split(" "))


def report_internal_error(exc: BaseException, *, show_traceback: bool) -> int:
    """Print an unexpected exception as ``Error: internal error (…)`` and return exit code 70.

    With ``show_traceback`` the standard traceback follows (no locals: they may hold secrets).
    """
    import traceback

    summary = _redacted(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    lines = [f"Error: internal error ({summary}) — this is a bug in thorcut, not in your input or the backend."]
    if show_traceback:
        sys.stderr.write("".join(traceback.format_exception(exc)))
    else:
        lines.append("Re-run with --traceback (or THORCUT_TRACEBACK=1) to see where, and report it.")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
    return int(ExitCode.INTERNAL)


class _Boundary(TyperGroup):
    """The one error boundary (STYLE.md): every way a command can end becomes a documented exit.

    :class:`ThorcutError` → ``Error: …`` on stderr and its exit code; Click's usage errors → 2
    (Click prints them); Ctrl-C → 130; stdout's reader leaving → 0; anything else is a bug →
    ``Error: internal error (…)`` and 70 (docs/contracts.md, "Exit codes"), never 1, which CI reads as
    parity FAIL. It holds for ``thorcut.cli.app.app`` under CliRunner and for :func:`main` alike,
    including errors raised while Click converts parameters.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:  # fmt: skip
        show, argv = _wants_traceback(list(sys.argv[1:] if args is None else args))
        try:
            rv = super().main(argv, prog_name, complete_var, False, windows_expand_args, **extra)
        except ClickException as exc:
            if not standalone_mode:
                raise
            exc.show()  # plain "Usage: … Error: …" like every other error, not a Rich panel
            sys.exit(exc.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            sys.stderr.write("Aborted.\n")
            sys.exit(130)
        except ThorcutError as exc:  # raised outside invoke (root options); normally caught below
            sys.exit(self._user_error(exc))
        except BrokenPipeError:  # `thorcut status -h | head`: help is printed while parsing
            from thorcut.cli.output import reader_left

            reader_left()
            sys.exit(int(ExitCode.OK))
        except Exception as exc:
            sys.exit(report_internal_error(exc, show_traceback=show))
        if not standalone_mode:
            return rv
        # Typer, with standalone_mode=False, returns the code of a typer.Exit instead of exiting.
        sys.exit(rv if isinstance(rv, int) else 0)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return list(super().parse_args(ctx, fill_optional_values(args)))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ThorcutError as exc:
            raise typer.Exit(self._user_error(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except BrokenPipeError:
            from thorcut.cli.output import reader_left

            reader_left()
            raise typer.Exit(int(ExitCode.OK)) from None

    @staticmethod
    def _user_error(exc: ThorcutError) -> int:
        from rich.text import Text

        from thorcut.cli.output import err
        from thorcut.text import safe

        # The message may quote user input (a feature name such as "[/]" or "\x1b[2J"): print it
        # as inert text, never as markup or terminal control bytes.
        message = Text.assemble(("Error:", "bold red"), " ", safe(_redacted(str(exc))))
        err().print(message, highlight=False, soft_wrap=True)
        return int(exc.exit_code)


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
    "backup": "backup",
    "restore": "backup",
    "tail": "tail",
    "asyncapi": "asyncapi",
    "diff": "parity",
    "check": "parity",
    "guard": "guard",
    "ramp": "ramp",
    "retire": "retire",
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
        # The boundary reports every exception itself; Typer's pretty tracebacks (and their
        # locals, which may hold tokens) never show.
        pretty_exceptions_enable=False,
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
        traceback: bool = typer.Option(
            False,
            "--traceback",
            help="On an internal error (exit 70), show the Python traceback; also after the command, "
            "or THORCUT_TRACEBACK=1.",
        ),
    ) -> None:
        """Cut a trading backend over from REST polling to WebSocket push, one feature at a time."""

    return app


def __getattr__(name: str) -> typer.Typer:
    # `thorcut.cli.app.app` (tests, docs) is the full app, built on first use.
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(name)


def _broken_pipe(console: Any) -> None:
    console.quiet = True
    raise BrokenPipeError


def main() -> None:
    """Console-script entry point: builds only the invoked command, behind the same boundary."""
    from rich.console import Console

    # Rich exits 1 when stdout's reader leaves while it prints (Typer's help is printed through a
    # console of its own); 1 means parity FAIL to CI, so raise and let the boundary exit 0.
    Console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign,assignment]
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    try:
        app = build_app(first)
    except Exception as exc:  # e.g. a command module that fails to import
        sys.exit(report_internal_error(exc, show_traceback=_wants_traceback(sys.argv[1:])[0]))
    try:
        app()
    except BrokenPipeError:  # `thorcut history | head`: the reader left; that is not an error
        from thorcut.cli.output import reader_left

        reader_left()
        sys.exit(int(ExitCode.OK))
