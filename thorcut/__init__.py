"""thorcut: per-feature REST-to-WebSocket cutover for a trading backend, proven by parity.

The public interface is what ``__all__`` lists (and :mod:`thorcut.flags`, the flag store and
watcher for backends); every other module is internal and may change. Names load on first use:
``import thorcut`` stays as cheap as the CLI's start-up needs.

The layers, each importing only those below it (docs/architecture.md)::

    cli, commands          the command line (Typer + Rich)
    parity, dev            parity runs (live, replay, noise) and their report; the demo stack
    openfeature            the OpenFeature provider (optional extra), on the flag watcher
    wire, compare, flags   stream/recording/URLs; the sans-I/O judge; the flag store
    manifest, config, values, verdict, clock, redisconn, errors    the core
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from thorcut.config import Settings, load_settings
    from thorcut.errors import ExitCode, ThorcutError
    from thorcut.flags.stages import Stage
    from thorcut.flags.store import FlagStore
    from thorcut.flags.watcher import FlagWatcher
    from thorcut.manifest import DEFAULT_MANIFEST, FeatureSpec, Manifest
    from thorcut.verdict import ParityRecord, Verdict

_HOME = {
    "Settings": "thorcut.config",
    "load_settings": "thorcut.config",
    "ExitCode": "thorcut.errors",
    "ThorcutError": "thorcut.errors",
    "Stage": "thorcut.flags.stages",
    "FlagStore": "thorcut.flags.store",
    "FlagWatcher": "thorcut.flags.watcher",
    "DEFAULT_MANIFEST": "thorcut.manifest",
    "FeatureSpec": "thorcut.manifest",
    "Manifest": "thorcut.manifest",
    "ParityRecord": "thorcut.verdict",
    "Verdict": "thorcut.verdict",
}

__all__ = [
    "DEFAULT_MANIFEST",
    "ExitCode",
    "FeatureSpec",
    "FlagStore",
    "FlagWatcher",
    "Manifest",
    "ParityRecord",
    "Settings",
    "Stage",
    "ThorcutError",
    "Verdict",
    "__version__",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'thorcut' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
