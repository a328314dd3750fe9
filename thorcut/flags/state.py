"""A feature's stored stage, read from its flag hash (docs/contracts.md, "Redis keys")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thorcut.errors import UsageError
from thorcut.flags.stages import Stage


@dataclass(frozen=True)
class FlagState:
    """A feature's stored stage. A feature never written is ``off`` at version 0."""

    feature: str
    stage: Stage = Stage.OFF
    percent: int = 0
    version: int = 0
    updated_at: str = ""
    updated_by: str = ""
    reason: str = ""
    epoch: str = ""  # the store's epoch when the flag was written ("" if written before epochs)

    @classmethod
    def from_hash(cls, feature: str, data: dict[str, str]) -> FlagState:
        """Build from the stored hash; unknown stages read as ``off``, the safe default."""
        try:
            stage = Stage(data.get("stage", "off"))
        except ValueError:
            stage = Stage.OFF
        return cls(
            feature,
            stage,
            _int(data.get("percent"), 0),
            _int(data.get("version"), 0),
            data.get("updated_at", ""),
            data.get("updated_by", ""),
            data.get("reason", ""),
            data.get("epoch", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "stage": self.stage.value,
            "percent": self.percent,
            "version": self.version,
            "updated_at": self.updated_at or None,
            "updated_by": self.updated_by or None,
            "reason": self.reason or None,
        }


def check_text(value: str, what: str) -> None:
    """Raise UsageError if ``value`` cannot be stored as UTF-8: bytes that were not UTF-8 on the
    command line reach Python as lone surrogates, which neither Redis' cjson nor redis-py accept."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise UsageError(f"{what} is not valid UTF-8 text ({shown!r}); write it in UTF-8") from None


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default
