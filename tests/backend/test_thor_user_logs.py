"""``thor_user`` and the setup log (issue 10): the token reaches the caller once, never a log."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

from tests.backend.conftest import BACKEND


def test_thor_user_token_reaches_the_caller_but_not_setup_log(thor_env: dict[str, str], tmp_path: Path) -> None:
    """How ``thorcut dev up`` runs it: the real command in a child process, its output logged."""
    from thor_trading.auth import user_for_token
    from thorcut.dev.backend import _manage

    log = tmp_path / "setup.log"
    name, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    out = _manage(BACKEND, {**os.environ, **thor_env}, log, "thor_user", name, "--password", password,
                  "--account", f"DU{uuid.uuid4().int % 10**6}", "--token", "dev")  # fmt: skip
    token = next(line.split()[1] for line in out.splitlines() if line.startswith("token "))
    assert user_for_token(token).username == name
    text = log.read_text()
    assert "token ***" in text
    assert token not in text
    assert token[-8:] not in text  # not even in part
    assert password not in text
    assert log.stat().st_mode & 0o077 == 0


def test_thor_user_quiet_prints_only_the_token_line(thor_env: dict[str, str]) -> None:
    from django.core.management import call_command

    out = io.StringIO()
    call_command("thor_user", f"q{uuid.uuid4().hex[:8]}", "--password", "p", "--account",
                 f"DU{uuid.uuid4().int % 10**6}", "--token", "ci", "--quiet", stdout=out)  # fmt: skip
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("token thor_") or lines[0].startswith("token ")
