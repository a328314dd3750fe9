"""The exceptions thorcut raises, and the exit code each one maps to.

Every error a user can cause or meet derives from :class:`ThorcutError`; the CLI's single
error boundary (``thorcut/cli.py``) prints ``Error: <message>`` on stderr and exits with the
class's ``exit_code``. Library callers (the backend, scripts) catch the classes directly.

    ThorcutError                    (exit 2 unless a subclass says otherwise)
    ├── UsageError                  bad input: unknown feature, bad option value        (2)
    │   └── ConfigError             thorcut.toml / environment settings are invalid     (2)
    ├── ParityFailed                a check ran and found differences                   (1)
    ├── AuditChainBroken            `history --verify` found an altered or missing entry (1)
    ├── Refused                     a gate said no                                      (3)
    │   ├── TransitionRefused       the stage machine does not allow the change
    │   ├── EvidenceRefused         `enable` without a valid PASS verdict
    │   ├── StaleVersion            `--expect-version` no longer matches
    │   ├── StoreWasReset           a change on a store Redis lost (data, no meta) without --force
    │   ├── StoreHasData            `restore` over a store that has data, without --force
    │   └── RampRunning             a ramp of the feature runs, or must be resumed or aborted first
    ├── Unreachable                 Redis or the backend cannot be reached              (4)
    │   ├── RedisUnavailable
    │   ├── BackendUnavailable      the backend's WebSocket or REST endpoint
    │   ├── WaitTimedOut            workers did not acknowledge a change in time
    │   └── NotReplicated           a change made on the primary that no replica acknowledged
    └── Pending                     not enough evidence to decide                       (5)

Anything else that escapes a command is a bug in thorcut: the boundary prints
``Error: internal error (…)`` with a hint to re-run with ``--traceback`` (or
``THORCUT_TRACEBACK=1``) and exits 70 (``ExitCode.INTERNAL``) — never 1, which CI reads as a
parity FAIL.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes of every thorcut command (docs/contracts.md, "Exit codes")."""

    OK = 0
    PARITY_FAIL = 1
    USAGE = 2
    REFUSED = 3
    UNREACHABLE = 4
    PENDING = 5
    INTERNAL = 70  # a bug in thorcut (BSD sysexits' EX_SOFTWARE); never 1, which CI reads as FAIL


class ThorcutError(Exception):
    """Base of every error thorcut reports to a user."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(ThorcutError):
    """Raised for bad input: an unknown feature, an out-of-range value, a malformed file."""


class ConfigError(UsageError):
    """Raised when settings (flags, ``THORCUT_*`` variables, ``thorcut.toml``) are invalid."""


class ParityFailed(ThorcutError):
    """Raised when a parity check ran and found differences."""

    exit_code = ExitCode.PARITY_FAIL


class AuditChainBroken(ThorcutError):
    """Raised when the audit stream's hash chain does not verify."""

    exit_code = ExitCode.PARITY_FAIL


class Refused(ThorcutError):
    """Raised when a gate refuses a change; nothing was written."""

    exit_code = ExitCode.REFUSED


class TransitionRefused(Refused):
    """Raised when the requested stage change is not one of the design's transitions."""


class EvidenceRefused(Refused):
    """Raised when ``enable`` lacks a PASS verdict younger than the validity window."""


class StaleVersion(Refused):
    """Raised when ``--expect-version`` does not match the stored version."""

    def __init__(self, message: str, *, current: int) -> None:
        super().__init__(message)
        self.current = current


class StoreWasReset(Refused):
    """Raised when a change meets a reset store (flags or an audit log but no ``{prefix}:meta``)
    without ``--force --reason``, or with ``--expect-version``, which cannot hold across a reset."""


class StoreHasData(Refused):
    """Raised when ``restore`` would overwrite a store that has data, without ``--force --reason``."""


class RampRunning(Refused):
    """Raised when ``thorcut ramp`` would start (or take over) a ramp of a feature that another
    process is running (its heartbeat is fresh), or that was interrupted and must be resumed
    (``--resume``) or abandoned (``--abort``) first."""


class Unreachable(ThorcutError):
    """Raised when a server thorcut needs cannot be reached."""

    exit_code = ExitCode.UNREACHABLE


class RedisUnavailable(Unreachable):
    """Raised when Redis refuses, times out, or rejects the credentials."""


class BackendUnavailable(Unreachable):
    """Raised when the backend (WebSocket or REST) refuses, times out, or rejects the credentials."""


class WaitTimedOut(Unreachable):
    """Raised when ``--wait`` ends before every registered worker acknowledged the change."""


class NotReplicated(Unreachable):
    """Raised when a change was written to the Redis primary but fewer replicas than the URL's
    ``wait_replicas`` acknowledged it in ``wait_timeout``: a failover now could lose it."""


class Pending(ThorcutError):
    """Raised when there is not enough evidence to reach a verdict."""

    exit_code = ExitCode.PENDING
