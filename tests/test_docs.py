"""Every command has help text with an example, and the README documents it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.main import get_command

from thorcut.cli import app

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands() -> list[tuple[str, object]]:
    root = get_command(app)
    out = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        if subs:
            out += [(f"{name} {sub}", c) for sub, c in subs.items()]
        else:
            out.append((name, cmd))
    return out


@pytest.mark.parametrize(("name", "command"), _commands(), ids=[n for n, _ in _commands()])
def test_command_has_help_with_example_and_is_in_readme(name: str, command: object) -> None:
    help_text = command.help or ""  # type: ignore[attr-defined]
    assert help_text.strip(), f"{name} has no help"
    assert "Example: thorcut " in help_text, f"{name} help has no example"
    assert f"thorcut {name}" in README, f"README does not mention `thorcut {name}`"


def test_every_command_answers_help(run) -> None:  # type: ignore[no-untyped-def]
    for name, _ in _commands():
        result = run(*name.split(), "--help")
        assert result.exit_code == 0, name
        assert "Usage" in result.stdout
