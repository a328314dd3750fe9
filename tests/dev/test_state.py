"""The state file of `thorcut dev up`: created private, no secrets in it, its folder tightened only when ours."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from thorcut.dev.state import STATE_FORMAT, read_state, save_state


def test_state_file_is_created_private_with_the_redis_password_and_token_left_out(tmp_path: Path) -> None:
    old = os.umask(0)  # even a permissive umask gets a private file
    try:
        state = {"url": "redis://:pw@127.0.0.1:7000/0", "embedded": False, "kept": True,
                 "backend": {"processes": [], "token": "thor_abc"}}  # fmt: skip
        save_state(tmp_path / "s", state)
    finally:
        os.umask(old)
    path = tmp_path / "s" / "dev.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc == {"format": STATE_FORMAT, "url": "redis://:***@127.0.0.1:7000/0", "embedded": False,
                   "backend": {"processes": []}}  # fmt: skip
    assert read_state(tmp_path / "s") == doc
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_an_older_state_folder_is_tightened_but_a_users_folder_is_not(tmp_path: Path) -> None:
    old = tmp_path / ".thorcut"
    (old / "logs").mkdir(parents=True)
    old.chmod(0o755)
    save_state(old, {"url": "redis://127.0.0.1:1/0", "embedded": False})
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "notes.txt").write_text("")
    mine.chmod(0o755)
    save_state(mine, {"url": "redis://127.0.0.1:1/0", "embedded": False})
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755
    assert stat.S_IMODE((mine / "dev.json").stat().st_mode) == 0o600
