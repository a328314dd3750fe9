"""The processes ``thorcut dev up`` leaves running, told apart from everybody else's.

A pid read back from ``.thorcut/dev.json`` is not an identity: once the process is gone the
kernel hands the number to the next program, and signalling that one would be a bug (issue 9).
So a process counts as ours only when it runs, its command line holds the expected marker, and
its start time (this boot's id plus the clock ticks since boot, from ``/proc``) equals the one
recorded when ``dev up`` started it. Linux only, like the rest of the demo tooling.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TypeGuard


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (state first), or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # the command name in (...) may hold spaces


def started(pid: int) -> str | None:
    """Return when ``pid`` started, as ``"<boot id>:<ticks since boot>"``; None if it does not run."""
    fields = _stat(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    return f"{boot}:{fields[19]}"  # field 22, starttime


def command_line(pid: int) -> str:
    """Return the command line of ``pid`` with spaces between arguments ("" when unreadable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def running(pid: int) -> bool:
    """Return whether ``pid`` exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def valid_pid(pid: object) -> TypeGuard[int]:
    """Whether ``pid`` may be signalled at all: 0, 1 and negative numbers address groups or init."""
    return isinstance(pid, int) and not isinstance(pid, bool) and pid > 1


def ours(pid: object, when: object, marker: str) -> bool:
    """Return whether ``pid`` runs, started at ``when`` and has ``marker`` in its command line."""
    if not valid_pid(pid) or not isinstance(when, str):
        return False
    return running(pid) and started(pid) == when and marker in command_line(pid)


def group(pgid: int) -> list[int]:
    """Return the running members of process group ``pgid`` (uvicorn's workers share their parent's)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z" and fields[2] == str(pgid):
                members.append(int(entry.name))
    return members


def orphans(pgid: int, cwd: Path) -> list[int]:
    """Members of the session ``pgid`` that were left behind by their dead leader and run in ``cwd``.

    The leader's pid stays reserved while its group has members, so those members are the ones
    it started; the folder check guards against a group of the same number formed much later.
    """
    found = []
    for pid in group(pgid):
        fields = _stat(pid)
        try:
            here = Path(f"/proc/{pid}/cwd").resolve(strict=True)
        except OSError:
            continue
        if fields is not None and fields[3] == str(pgid) and here == cwd.resolve():
            found.append(pid)
    return found


def stop_group(pgid: int, timeout: float = 5.0) -> None:
    """SIGTERM process group ``pgid``, wait up to ``timeout`` s for every member to go, then SIGKILL.

    The caller has checked that the group is ours.
    """
    stop_groups([pgid], timeout)


def stop_groups(pgids: list[int], timeout: float = 5.0) -> None:
    """SIGTERM every process group in ``pgids`` at once, wait up to ``timeout`` s for all their
    members to go, then SIGKILL what is left (the caller has checked that the groups are ours).

    At once, so that stopping the leading job runner does not hand the leader lock to a standby
    that is about to be stopped too (issue 10).
    """
    left = list(pgids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        signalled = []
        for pgid in left:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                continue
            signalled.append(pgid)
        deadline = time.monotonic() + timeout
        left = signalled
        while left and time.monotonic() < deadline:
            left = [pgid for pgid in left if group(pgid)]
            if left:
                time.sleep(0.02)
        if not left:
            return


def stop_one(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid`` (checked to be ours), wait up to ``timeout`` s, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not running(pid):
                return
            time.sleep(0.02)
