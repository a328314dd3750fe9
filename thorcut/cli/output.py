"""The command line's consoles: data on stdout, diagnostics on stderr (text helpers: :mod:`thorcut.text`)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console


class _Stdout(Console):
    """Rich exits 1 when stdout's reader leaves; 1 means parity FAIL to CI, so raise instead and let
    the CLI's boundary end quietly with 0 (`thorcut status | head`)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def reader_left() -> None:
    """stdout's reader has gone (`thorcut history | head`): send what is still buffered to
    /dev/null, so the exit stays quiet."""
    import os

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):  # not a real file (tests capture stdout)
        pass


def out() -> Console:
    """Return a console on the current stdout (looked up each call, so tests can capture it)."""
    return _Stdout(file=sys.stdout, highlight=False, soft_wrap=True)


def err() -> Console:
    return Console(file=sys.stderr, highlight=False)


def print_json(data: Any) -> None:
    """Write one JSON document on stdout (stable key order)."""
    sys.stdout.write(json.dumps(data, sort_keys=True, ensure_ascii=False) + "\n")
    sys.stdout.flush()
