"""The topology's processes: started in a host's namespace, and found again without the state file.

Every process ``up`` starts carries :data:`MARK` in its environment (uvicorn's workers inherit
it), so ``down`` finds those in the root namespace (HAProxy, a third Sentinel) as surely as those
in a host's namespace (all of whose processes are the topology's), also after ``up`` died
half-way and left no state file. A pid read from the state file counts only while its start time
matches (:func:`thorcut.dev.procs.ours`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from thorcut.dev import procs
from thorcut.dev.backend import private_log
from thorcut.dev.scale import net

#: The environment variable (and value) that marks a process as the topology's.
MARK = "THORCUT_SCALE_TOPOLOGY"
_MARK_BYTES = f"{MARK}=1".encode()

#: Children this process started, reaped when stopped (only tests keep `up`'s process alive).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(cmd: list[str], *, netns: str | None, cwd: Path, env: dict[str, str], log: Path) -> int:
    """Start ``cmd`` in the namespace ``netns`` (the root one for None), in a session of its own,
    logging to ``log``; return its pid.

    ``ip netns exec`` execs the command in place, so the pid is the command's own.
    """
    argv = ["ip", "netns", "exec", netns, *cmd] if netns else cmd
    with private_log(log, "ab") as out:
        child = subprocess.Popen(
            argv, cwd=cwd, env={**env, MARK: "1"}, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    _CHILDREN[child.pid] = child
    return child.pid


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a child of this process is asked through its Popen, which also reaps it)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    return procs.running(pid)


def marked() -> list[int]:
    """Return every running process whose environment carries :data:`MARK`."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if _MARK_BYTES in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def leftovers() -> list[int]:
    """Return every process of a topology: in a host's namespace, or marked (root namespace)."""
    found = set(marked())
    for netns in net.namespaces():
        found.update(net.pids(netns))
    found.discard(os.getpid())
    return sorted(pid for pid in found if procs.running(pid))


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(find: Callable[[], list[int]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        reap()
        left = find()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def stop(find: Callable[[], list[int]], timeout: float = 5.0) -> list[int]:
    """SIGTERM every process ``find`` returns, wait up to ``timeout`` s, then SIGKILL what is left
    (looked up again: a uvicorn supervisor may have replaced a worker meanwhile); return the pids
    first signalled. Raises nothing; processes that survive SIGKILL (none should) are left.
    """
    first = find()
    _signal(first, signal.SIGTERM)
    left = _wait_gone(find, timeout)
    for _ in range(5):
        if not left:
            break
        _signal(left, signal.SIGKILL)
        left = _wait_gone(find, 2.0)
    return first


def kill(find: Callable[[], list[int]]) -> list[int]:
    """SIGKILL every process ``find`` returns until none is left (2 s at most); return those killed."""
    killed: list[int] = []
    deadline = time.monotonic() + 2.0
    while (left := find()) and time.monotonic() < deadline:
        _signal(left, signal.SIGKILL)
        killed += [p for p in left if p not in killed]
        time.sleep(0.02)
        reap()
    return killed


def reap() -> None:
    """Collect the exit status of children of this process that ended (no zombies left behind)."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]
