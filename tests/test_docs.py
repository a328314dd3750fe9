"""Every command has help text with an example, and the README documents it; the docs stand on their
own (no link out of the repository, every relative link resolves) and docs/contracts.md documents
every exit code and Redis key the code has."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest
from typer.main import get_command

from tests.runner import Run
from thorcut.cli.app import app
from thorcut.errors import ExitCode
from thorcut.redisconn import Keys

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


def test_every_command_answers_help(run: Run) -> None:
    for name, _ in _commands():
        result = run(*name.split(), "--help")
        assert result.exit_code == 0, name
        assert "Usage" in result.stdout


# -- the README's command reference is generated from the CLI ----------------------------------------


def _reference_script() -> ModuleType:
    path = Path(__file__).parent.parent / "scripts" / "reference.py"
    spec = importlib.util.spec_from_file_location("reference_script", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_command_reference_is_generated_from_the_cli() -> None:
    script = _reference_script()
    assert script.splice(README, script.render()) == README, (
        "README.md's command reference differs from the CLI's --help: run `python scripts/reference.py --write`"
    )


def test_reference_shows_every_option_with_its_type_default_and_help() -> None:
    reference = _reference_script().render()
    for name, command in _commands():
        assert f"#### `thorcut {name}`" in reference, name
        for param in command.params:  # type: ignore[attr-defined]
            if "--help" in param.opts or param.hidden:
                continue
            label = param.name if param.param_type_name == "argument" else ", ".join(param.opts)
            help_text = " ".join((param.help or "").split())
            assert f"| `{label}` |" in reference, f"{name}: {label} is not in the reference"
            assert help_text.replace("|", "\\|") in reference, f"{name}: the help of {label} is not in the reference"
    assert "| `--percent` | `<int range> [0<=x<=100]` |  | Share of clients on WebSocket. |" in reference
    assert "| `--limit, -n` | `<int range> [x>=1]` | `20` |" in reference
    assert "thorcut enable [OPTIONS] {feature}" in reference or "thorcut enable [OPTIONS] FEATURE" in reference


# -- the docs stand on their own -------------------------------------------------------------------

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONTRACTS = ROOT / "docs" / "contracts.md"

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and code spans, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes for the headings of ``markdown`` (lowercase, punctuation dropped,
    spaces to hyphens; a repeated heading gets ``-1``, ``-2``, …)."""
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", markdown).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_doc_does_not_send_readers_outside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    for word in ("../shared", "DESIGN.md"):
        assert word not in text, f"{doc.name} mentions {word!r}, which a clone does not have; use docs/contracts.md"


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_doc_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(_prose(doc.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert not broken, f"{doc.name} has broken links: {broken}"


def test_contracts_anchor_rule_matches_github() -> None:
    assert _anchors("## The store's epoch, backup and restore\n## `thorcut tail`\n## A\n## A\n") == {
        "the-stores-epoch-backup-and-restore",
        "thorcut-tail",
        "a",
        "a-1",
    }


@pytest.mark.parametrize("code", list(ExitCode), ids=[c.name for c in ExitCode])
def test_contracts_document_every_exit_code(code: ExitCode) -> None:
    section = CONTRACTS.read_text().split("## Exit codes", 1)[-1].split("\n## ", 1)[0]
    assert re.search(rf"^\| {int(code)} \| \S", section, re.M), (
        f"docs/contracts.md, 'Exit codes' has no row for {int(code)} ({code.name})"
    )


def _key_patterns() -> list[tuple[str, str]]:
    """(member name, regex) for every key of :class:`Keys`: each argument becomes ``<…>``."""
    keys = Keys("thorcut")
    out = []
    for name, member in vars(Keys).items():
        if name.startswith("_") or name == "base":
            continue
        if isinstance(member, property):
            out.append((name, re.escape(getattr(keys, name))))
        elif callable(member):
            params = list(inspect.signature(member).parameters)[1:]
            samples = [f"SAMPLEARG{i}" for i in range(len(params))]
            pattern = re.escape(getattr(keys, name)(*samples))
            for sample in samples:
                pattern = pattern.replace(sample, "<[^>`]+>")
            out.append((name, pattern))
    return out


@pytest.mark.parametrize(("name", "pattern"), _key_patterns(), ids=[n for n, _ in _key_patterns()])
def test_contracts_document_every_redis_key(name: str, pattern: str) -> None:
    assert re.search(rf"`{pattern}`", CONTRACTS.read_text()), (
        f"docs/contracts.md does not document Keys.{name} ({pattern}) as `{{thorcut}}:…`"
    )
