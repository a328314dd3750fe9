"""Print the path of a Python X.Y interpreter that can make virtualenvs, or fail naming how to get one.

`make test` runs the suite on every Python thorcut supports (3.11, 3.12, 3.13) and
tests/test_wheel.py installs the wheel on each: both find the interpreters here. A version this
machine lacks is an error (exit 1, with the fix on stderr), never a silent skip.

Looked for, in order: ``$THORCUT_PYTHON_3_12`` (for 3.12; a path), ``python3.12`` on PATH (a pyenv
shim for a version that is installed but not selected fails, and is passed over), then pyenv's
installed versions (``$PYENV_ROOT``, else ``~/.pyenv``; the newest 3.12.*), then /usr/local/bin
and /usr/bin.

    python3 scripts/find_python.py 3.12        # prints /root/.pyenv/versions/3.12.1/bin/python3.12
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PROBE = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"


class NotFound(Exception):
    """No usable interpreter of that version; the message says how to get one."""


def _candidates(version: str) -> list[Path]:
    found: list[Path] = []
    override = os.environ.get(f"THORCUT_PYTHON_{version.replace('.', '_')}")
    if override:
        found.append(Path(override))
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(Path(on_path))
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    pattern = re.compile(rf"^{re.escape(version)}\.(\d+)$")
    installed = []
    if (root / "versions").is_dir():
        for d in (root / "versions").iterdir():
            m = pattern.match(d.name)
            if m:
                installed.append((int(m.group(1)), d / "bin" / f"python{version}"))
    found += [path for _, path in sorted(installed, reverse=True)]
    found += [Path(f"/usr/local/bin/python{version}"), Path(f"/usr/bin/python{version}")]
    return found


def find(version: str) -> Path:
    """The first interpreter of ``version`` that runs and has venv and ensurepip."""
    if not re.fullmatch(r"3\.\d+", version):
        raise NotFound(f"not a Python version: {version!r} (expected 3.N)")
    tried: list[str] = []
    for path in _candidates(version):
        if not path.exists():
            continue
        try:
            proc = subprocess.run(
                [str(path), "-c", PROBE], capture_output=True, text=True, timeout=30, env=_clean_env(), check=False
            )
        except OSError as exc:
            tried.append(f"{path}: {exc}")
            continue
        if proc.returncode == 0 and proc.stdout.strip() == version:
            return path
        why = (proc.stderr.strip().splitlines() or [proc.stdout.strip()])[-1]
        tried.append(f"{path}: {why}")
    detail = "".join(f"\n  passed over {t}" for t in tried)
    raise NotFound(
        f"Python {version} not found: thorcut supports and tests Python 3.11, 3.12 and 3.13, and `make test` "
        f"runs the suite on each. Install it with venv and ensurepip (`pyenv install {version}`, or your "
        f"system's python{version} and python{version}-venv packages), then make `python{version}` runnable "
        f"from PATH (pyenv: `pyenv global 3.11 {version} …`) or set THORCUT_PYTHON_{version.replace('.', '_')} "
        f"to its path.{detail}"
    )


def _clean_env() -> dict[str, str]:
    """This environment without a virtualenv's or pyenv's choice of Python, which would pick another version."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: find_python.py 3.N", file=sys.stderr)
        return 2
    try:
        print(find(argv[0]))
    except NotFound as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
