"""The topology's folder (``.thorcut/scale/``, private) and its state file ``scale.json``.

The folder holds everything ``up`` makes: the configs, the logs, each Redis node's data and
each Sentinel's rewritten config, the metrics, the one SQLite database every host shares (the
namespaces share the filesystem) and the state file, which says what runs where (hosts,
namespaces, addresses, processes with pids and start times, ports, roles) for ``status`` and
``down``. It never holds a secret: the API token is shown once by ``up`` and not kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from thorcut.dev.state import private_dir
from thorcut.errors import UsageError

DEFAULT_DIR = Path(".thorcut/scale")
STATE_FILE = "scale.json"
STATE_FORMAT = "thorcut scale 1"
#: What ``up`` puts in the folder: all of it is replaced by the next ``up``, nothing else is touched.
_OWN = ("logs", "redis", "sentinel", "metrics", "haproxy.cfg", "thor.sqlite3", "thor.sqlite3-wal",
        "thor.sqlite3-shm", "thor.sqlite3-journal", STATE_FILE)  # fmt: skip


def prepare(folder: Path) -> Path:
    """Make ``folder`` (0700) empty of an earlier run's files; return its absolute path.

    Only the entries ``up`` makes are removed, so a mistyped ``--dir`` cannot empty a folder of
    the user's. Raises UsageError when the folder cannot be made.
    """
    folder = folder.resolve()
    if folder.parent.name == ".thorcut":
        private_dir(folder.parent)  # made as private as `dev up` makes it
    private_dir(folder)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)
    for name in _OWN:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for sub in ("logs", "redis", "sentinel", "metrics"):
        (folder / sub).mkdir(mode=0o700)
    return folder


def save(folder: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (less its ``token``) to ``<folder>/scale.json``: mode 0600, replaced atomically."""
    doc = {k: v for k, v in state.items() if k != "token"}
    doc["format"] = STATE_FORMAT
    target = folder / STATE_FILE
    temp = folder / f".{STATE_FILE}.{os.getpid()}"
    try:
        temp.unlink(missing_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(doc, indent=2))
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise


def read(folder: Path) -> dict[str, Any] | None:
    """Return the state ``up`` saved in ``folder``, or None when there is none.

    Raises UsageError when the file is unreadable or not one this thorcut wrote (``down``
    still cleans up by name prefix; ``status`` cannot say more than that).
    """
    path = folder / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or not isinstance(data.get("processes"), list):
        raise UsageError(f"{path} is not a state file of this thorcut's scale-out topology")
    return data


def forget(folder: Path) -> None:
    """Remove the state file (the logs and data stay for a look after ``down``)."""
    (folder / STATE_FILE).unlink(missing_ok=True)
