"""The package's layers (docs/architecture.md): every import, local ones included, runs downward.

    cli, commands          the command line (one layer: the app mounts the commands, which share its options)
    parity, dev, openfeature   parity runs and their report; the demo stack; the OpenFeature provider
    wire, compare, flags   independent of one another
    core                   manifest, config, values, verdict, clock, text, redisconn, redisurl, errors

A module may import its own package and anything in a lower layer, never a higher layer or
another package of its own layer (but for the command line's two); and module-level imports never
form a cycle.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import thorcut

ROOT = Path(thorcut.__file__).parent
CORE = {"manifest", "config", "values", "verdict", "clock", "text", "redisconn", "redisurl", "errors"}
LAYER = {"cli": 3, "commands": 3, "parity": 2, "dev": 2, "openfeature": 2, "wire": 1, "compare": 1, "flags": 1,
         **dict.fromkeys(CORE, 0)}  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("thorcut"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # from thorcut.dev import procs
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("thorcut"))
    return found


def _area(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # "thorcut" itself: the lazy public API


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _area(m) not in (None, "__main__")))
def test_imports_run_downward(module: str) -> None:
    area = _area(module)
    assert area in LAYER, f"{module}: {area} is in no layer; add it to docs/architecture.md and this test"
    for target in sorted(_imports(MODULES[module], top_level_only=False)):
        if target not in MODULES:
            continue  # a name imported from a module (its module is checked on its own)
        other = _area(target)
        if other is None or other == area:
            continue
        assert other in LAYER, target
        same_layer_ok = LAYER[other] == LAYER[area] and LAYER[area] in (0, 3)  # the core; the command line
        assert LAYER[other] < LAYER[area] or same_layer_ok, (
            f"{module} imports {target}: {other} (layer {LAYER[other]}) is not below {area} (layer {LAYER[area]})"
        )


def test_no_import_cycles_at_module_level() -> None:
    graph = {
        m: {t for t in _imports(p, top_level_only=True) if t in MODULES and t != "thorcut"} for m, p in MODULES.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_public_interface_resolves() -> None:
    for name in thorcut.__all__:
        assert getattr(thorcut, name) is not None, name
    flags = importlib.import_module("thorcut.flags")
    for name in flags.__all__:
        assert getattr(flags, name) is not None, name
    with pytest.raises(AttributeError):
        thorcut.no_such_name  # noqa: B018
