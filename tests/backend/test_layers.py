"""The backend's layers, read from its source (ast, nothing imported): every import points down.

    thor_trading    the domain: models, market, jobs, messages, the feature table, REST views
    global_markets  the push transport: broadcaster, hub, consumer, flag fan-out, the flags view
    thor_runner     the job runner: heartbeat, leader lock, runner loop, fault injection
    thor_project    the Django project (settings, URLs, ASGI): puts them together

A module may import its own package and the ones listed above it, never one below. The order is
total, so an import circle between two packages always contains an upward import: forbidding those
forbids the circles. Imports inside functions count too: a lazy import is still a dependency.

Of thorcut the backend uses only the public API, ``thorcut.flags`` (and ``thorcut.wire.asyncapi``,
which describes its stream): the rest of thorcut is the CLI's and may change under it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backend_fixtures import BACKEND

LAYERS = ("thor_trading", "global_markets", "thor_runner", "thor_project")
THORCUT_API = ("thorcut.flags", "thorcut.wire.asyncapi")


def _modules() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (BACKEND / layer).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(BACKEND).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, imported module, names imported from it) of every absolute import in ``source``.

    A relative import never leaves its own top-level package, so it never crosses a layer.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.lineno, node.module, tuple(alias.name for alias in node.names)


def _layer(module: str) -> int | None:
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else None


def violations(source: str, module_name: str) -> list[str]:
    """What is wrong with the imports of ``source``, the module ``module_name``."""
    own = _layer(module_name)
    assert own is not None, module_name
    wrong = []
    for line, module, names in _imports(source):
        layer = _layer(module)
        if layer is not None and layer > own:
            wrong.append(f"line {line}: {LAYERS[own]} imports {module}, a layer above it")
        if module.split(".")[0] == "thorcut" and (module not in THORCUT_API or "*" in names):
            wrong.append(f"line {line}: imports {module}; the backend uses only `from {THORCUT_API[0]} import …`")
    return wrong


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(BACKEND)))
def test_imports_point_down_and_thorcut_only_through_its_api(path: Path) -> None:
    wrong = violations(path.read_text(), _module_name(path))
    assert not wrong, f"{path.relative_to(BACKEND)}:\n" + "\n".join(wrong)


def test_the_check_sees_every_backend_package() -> None:
    """A new package under backend/ must be given its place in LAYERS, or it would escape the check."""
    assert {p.parent.name for p in BACKEND.glob("*/__init__.py")} == set(LAYERS)


def test_the_check_catches_upward_imports_and_thorcut_internals() -> None:
    """The circle this layout broke (domain → transport → domain) and a lazy import both fail."""
    source = (
        "from global_markets.services import websocket_features\n"
        "from thorcut.flags import Stage\n"
        "def f():\n"
        "    import thor_runner.faults\n"
        "    from thorcut.flags.stages import DEFAULT_FEATURES\n"
    )
    assert violations(source, "thor_trading.views") == [
        "line 1: thor_trading imports global_markets.services, a layer above it",
        "line 4: thor_trading imports thor_runner.faults, a layer above it",
        "line 5: imports thorcut.flags.stages; the backend uses only `from thorcut.flags import …`",
    ]
    assert violations("from thor_trading import jobs\nfrom .. import groups\n", "thor_runner.runner") == []
