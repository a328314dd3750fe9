"""The state file of ``thorcut dev up``: ``<state>/dev.json``, private, and checked when read back.

It records what ``dev up`` started (pids with start times, see :mod:`thorcut.dev.procs`) so that
``dev down`` can stop it. It never holds a secret: the Redis URL's password is redacted and the
API token is left out (issue 9). A file that is not one this thorcut wrote is refused with a
message saying how to recover, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from thorcut.dev import procs
from thorcut.errors import UsageError
from thorcut.values import redact_url

STATE_FILE = "dev.json"
STATE_FORMAT = "thorcut dev 2"
#: What `dev up` puts in its state folder; a folder holding nothing else is made private (0700).
#: (``scale`` is the scale-out topology's folder, :mod:`thorcut.dev.scale`.)
_OWN_ENTRIES = {STATE_FILE, "logs", "redis", "metrics", "thor.sqlite3", "thor.sqlite3-journal", "thor.sqlite3-wal",
                "thor.sqlite3-shm", "scale"}  # fmt: skip


def private_dir(folder: Path) -> Path:
    """Create ``folder`` with mode 0700 (parents as the umask says); return it.

    An existing folder is tightened to 0700 only when it holds nothing but what ``dev up`` puts
    there (a ``.thorcut`` left by an older thorcut), never a folder of the user's such as ``.``.
    Raises UsageError when ``folder`` cannot be a folder.
    """
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = folder.stat().st_mode & 0o777
        if mode & 0o077 and all(e.name in _OWN_ENTRIES or e.name.startswith(".dev.json") for e in folder.iterdir()):
            folder.chmod(0o700)
    except OSError as exc:
        raise UsageError(f"cannot use {folder} as the demo's state folder: {exc.strerror or exc}") from None
    return folder


def save_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``<state_dir>/dev.json``: created with mode 0600, replaced atomically.

    Secrets never reach the file: the Redis URL's password is redacted (``dev up`` asks the
    configured URL again when it needs to connect) and the backend's API token is left out (so is
    which job runner leads: that is read from Redis when needed).
    """
    private_dir(state_dir)
    doc = {**state, "format": STATE_FORMAT, "url": redact_url(str(state.get("url", "")))}
    for transient in ("already_running", "kept"):
        doc.pop(transient, None)
    if isinstance(doc.get("backend"), dict):  # the token is a secret; which runner leads changes
        doc["backend"] = {k: v for k, v in doc["backend"].items() if k not in ("token", "leader")}
    target = state_dir / STATE_FILE
    temp = state_dir / f".dev.json.{os.getpid()}"
    try:
        temp.unlink(missing_ok=True)  # left by a killed run that had this pid
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(doc, indent=2))
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """Return the state ``dev up`` saved in ``state_dir`` (None when there is none).

    Raises UsageError, saying how to recover, when the file is unreadable or is not one this
    thorcut wrote (corrupt, foreign, or from an older thorcut that kept no start times).
    """
    path = state_dir / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    problem = _state_problem(data)
    if problem:
        raise UsageError(
            f"{path} is not a state file this thorcut wrote ({problem}); stop any demo processes "
            f"yourself, then remove it (rm {path})"
        )
    assert isinstance(data, dict)
    return data


def _state_problem(data: object) -> str | None:
    """Say what is wrong with a parsed state file, or None when it has the shape :func:`save_state` writes."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if "format" not in data and "url" in data:
        backend = data.get("backend")
        started = backend.get("processes", []) if isinstance(backend, dict) else []
        pids = [data.get("pid"), *(p.get("pid") for p in started if isinstance(p, dict))]
        listed = ", ".join(str(pid) for pid in pids if procs.valid_pid(pid)) or "none"
        return f"it comes from an older thorcut that kept no process start times; its pids: {listed}"
    if data.get("format") != STATE_FORMAT:
        return f"its format is {str(data.get('format'))[:40]!r}, not {STATE_FORMAT!r}"
    if not isinstance(data.get("url"), str) or not isinstance(data.get("embedded"), bool):
        return "no Redis URL"
    if data["embedded"] and not (procs.valid_pid(data.get("pid")) and isinstance(data.get("started"), str)):
        return "the embedded Redis has no valid pid and start time"
    backend = data.get("backend")
    if backend is None:
        return None
    if not isinstance(backend, dict) or not isinstance(backend.get("processes"), list):
        return "the backend has no process list"
    for proc in backend["processes"]:
        if not (isinstance(proc, dict) and procs.valid_pid(proc.get("pid")) and isinstance(proc.get("started"), str)
                and isinstance(proc.get("role"), str)):  # fmt: skip
            return f"a backend process record is malformed: {str(proc)[:80]}"
    return None
