"""Locators: the dotted paths (``data``, ``msg.seq``) by which the manifest says where a message's
type, key, seq and body are (docs/contracts.md, "The manifest"), and reading values by them."""

from __future__ import annotations

from typing import Any


def path_get(obj: Any, path: str) -> Any:
    """Return the value at a dotted ``path`` (``""`` = ``obj`` itself), or None if absent."""
    if not path:
        return obj
    if "." not in path:  # one key, as most locators are ("seq", "key", "data"): no split, no loop
        return obj.get(path) if isinstance(obj, dict) else None
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def as_seq(value: Any) -> int | None:
    """Return ``value`` as a sequence number: a non-negative int (never a bool or a float)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
