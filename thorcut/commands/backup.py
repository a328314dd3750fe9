"""``thorcut backup`` and ``thorcut restore``: the flag store to and from a JSON Lines file."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import typer

from thorcut.cli.options import ConfigOpt, JsonOpt, ReasonOpt, RedisUrlOpt, TimeoutOpt
from thorcut.cli.output import err, out, print_json
from thorcut.cli.session import open_session
from thorcut.errors import UsageError
from thorcut.flags import backup as store_backup
from thorcut.text import safe

app = typer.Typer()

FileArg = typer.Argument(
    ..., help="The JSON Lines file (format: docs/contracts.md, the store's epoch, backup and restore)."
)


@app.command()
def backup(
    file: Path = FileArg,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write the flags, the audit log, the verdicts and the store's epoch to a JSON Lines file.

    Example: thorcut backup flags-2026-11-24.jsonl
    """
    session = open_session(redis_url, timeout, config)
    data = store_backup.read(session.client, session.keys)
    folder = file.parent if str(file.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write {file}: {folder} is not a folder")
    # Written beside the target and renamed into place, so a crash never leaves half a backup.
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in store_backup.lines(data, session.settings.prefix):
                fh.write(line + "\n")
        os.replace(tmp, file)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write {file}: {exc.strerror or exc}") from None
    counts = data.counts()
    if as_json:
        print_json({"file": str(file), "epoch": data.meta.get("epoch"), "counts": counts})
        return
    epoch = data.meta.get("epoch") or "none"
    out().print(safe(f"Wrote {counts['flag']} flags, {counts['audit']} audit entries, {counts['parity']} verdicts "
                     f"and {counts['mismatches']} mismatch lists to {file} (epoch {epoch})."))  # fmt: skip


@app.command()
def restore(
    file: Path = FileArg,
    force: bool = typer.Option(False, "--force", help="Replace a store that has data (needs --reason; audited)."),
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Check a backup file and write it back into an empty store in one atomic step.

    Refused (exit 3) over a store that has data unless --force --reason; a bad file is exit 2.

    Example: thorcut restore flags-2026-11-24.jsonl
    """
    if force and not reason.strip():
        raise UsageError("--force needs --reason explaining why the store's data is replaced")
    data = _load(file)
    session = open_session(redis_url, timeout, config)
    replaced, audit_id = store_backup.restore(session.client, session.keys, data, force=force, reason=reason,
                                              operator=session.settings.operator)  # fmt: skip
    counts = data.counts()
    if as_json:
        print_json({"file": str(file), "epoch": data.meta.get("epoch"), "counts": counts,
                    "replaced_keys": len(replaced), "audit_id": audit_id})  # fmt: skip
        return
    out().print(safe(f"Restored {counts['flag']} flags, {counts['audit']} audit entries, {counts['parity']} verdicts "
                     f"and {counts['mismatches']} mismatch lists from {file} (epoch "
                     f"{data.meta.get('epoch') or 'none'})."))  # fmt: skip
    if replaced:
        err().print(safe(f"Replaced {len(replaced)} keys; recorded in the audit log (entry {audit_id})."))


def _load(file: Path) -> store_backup.Backup:
    try:
        mode = file.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise UsageError(f"{file} is not a regular file")
        with file.open("rb") as fh:
            return store_backup.parse(fh, str(file))
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
