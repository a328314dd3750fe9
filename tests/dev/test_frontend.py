"""When `thorcut dev up` (and the e2e tests) rebuild the page: the pure plan, the scan, the npm runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from thorcut.dev.frontend import Plan, Times, ensure_built, plan, scan
from thorcut.errors import ThorcutError, UsageError

T = 1_000_000.0  # a base modification time


def times(
    index: float | None = T, node_modules: float | None = T, lock: float | None = T - 10, **inputs: float
) -> Times:
    return Times(index=index, inputs=inputs or {"src/main.tsx": T - 5}, node_modules=node_modules, lock=lock)


def test_plan_without_a_build_builds_and_installs_when_node_modules_is_missing() -> None:
    assert plan(times(index=None, node_modules=None)) == Plan(True, True, "dist/index.html is missing")


def test_plan_without_a_build_but_fresh_node_modules_only_builds() -> None:
    assert plan(times(index=None)) == Plan(False, True, "dist/index.html is missing")


def test_plan_build_newer_than_every_input_does_nothing() -> None:
    decided = plan(times(**{"src/main.tsx": T - 1, "package.json": T - 100, "vite.config.ts": T}))
    assert decided == Plan(False, False, "the build is up to date")


def test_plan_one_newer_input_rebuilds_and_names_it() -> None:
    decided = plan(times(**{"src/panels/Balance.tsx": T + 1, "index.html": T - 1}))
    assert decided == Plan(False, True, "src/panels/Balance.tsx changed since the last build")


def test_plan_several_newer_inputs_are_counted() -> None:
    decided = plan(times(**{"src/b.ts": T + 1, "src/a.ts": T + 2, "package.json": T + 3}))
    assert decided.reason == "package.json and 2 more changed since the last build"


def test_plan_node_modules_older_than_the_lock_file_reinstalls_before_building() -> None:
    decided = plan(times(node_modules=T - 20, lock=T + 5, **{"package-lock.json": T + 5}))
    assert decided == Plan(True, True, "package-lock.json changed since the last build")


def test_plan_a_stale_node_modules_alone_does_not_rebuild() -> None:
    assert plan(times(node_modules=T - 20, lock=T - 10)).build is False


def touch(path: Path, mtime: float, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A frontend/ folder as the other side lays it out, built at time T."""
    folder = tmp_path / "frontend"
    touch(folder / "package.json", T - 50, "{}")
    touch(folder / "package-lock.json", T - 50, "{}")
    touch(folder / "index.html", T - 40)
    touch(folder / "vite.config.ts", T - 40)
    touch(folder / "tsconfig.json", T - 40)
    touch(folder / "page-build.mjs", T - 40)  # works out the build id the page sends
    touch(folder / "src" / "main.tsx", T - 30)
    touch(folder / "src" / "panels" / "Balance.tsx", T - 30)
    touch(folder / "public" / "favicon.svg", T - 30)
    touch(folder / "node_modules" / "react" / "index.js", T + 100)  # never an input
    os.utime(folder / "node_modules", (T - 45, T - 45))
    touch(folder / "dist" / "assets" / "index-1.js", T + 100)  # the output is not an input
    touch(folder / "dist" / "index.html", T)
    return folder


def test_scan_reads_every_input_and_nothing_else(checkout: Path) -> None:
    found = scan(checkout)
    assert set(found.inputs) == {"package.json", "package-lock.json", "index.html", "vite.config.ts", "tsconfig.json",
                                 "page-build.mjs", "src/main.tsx", "src/panels/Balance.tsx",
                                 "public/favicon.svg"}  # fmt: skip
    assert found.index == T
    assert found.node_modules == T - 45
    assert found.lock == T - 50
    assert plan(found).build is False


def test_scan_sees_a_nested_source_edit(checkout: Path) -> None:
    touch(checkout / "src" / "panels" / "Balance.tsx", T + 1)
    assert plan(scan(checkout)) == Plan(False, True, "src/panels/Balance.tsx changed since the last build")


def test_scan_takes_npm_s_hidden_lock_file_as_the_install_time(checkout: Path) -> None:
    touch(checkout / "package-lock.json", T + 5)
    assert plan(scan(checkout)).install is True
    touch(checkout / "node_modules" / ".package-lock.json", T + 6)
    assert plan(scan(checkout)).install is False


def fake_npm(folder: Path, build_exit: int = 0) -> str:
    """An ``npm`` that records its arguments and, for ``run build``, writes dist/index.html."""
    script = folder / "npm"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "npm $*" >> "{folder / "calls"}"\n'
        'echo "output of npm $*"\n'
        f'if [ "$1" = run ]; then mkdir -p dist && echo built > dist/index.html; exit {build_exit}; fi\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_ensure_built_installs_then_builds_logging_npm_output(checkout: Path, tmp_path: Path) -> None:
    (checkout / "dist" / "index.html").unlink()
    touch(checkout / "package-lock.json", T + 5)
    notes: list[str] = []
    log = tmp_path / "logs" / "frontend.log"
    decided = ensure_built(checkout, log, note=notes.append, npm=fake_npm(tmp_path))
    assert decided == Plan(True, True, "dist/index.html is missing")
    assert (tmp_path / "calls").read_text().splitlines() == ["npm ci --no-audit --no-fund", "npm run build"]
    assert "output of npm run build" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600  # readable by the user alone, as dev up's other logs
    assert notes == [f"Building the page (dist/index.html is missing): npm ci then npm run build; log in {log}"]
    assert plan(scan(checkout)).build is False
    # Built: the next call runs nothing.
    assert ensure_built(checkout, log, npm=fake_npm(tmp_path)) == Plan(False, False, "the build is up to date")
    assert len((tmp_path / "calls").read_text().splitlines()) == 2


def test_ensure_built_failing_build_names_the_log(checkout: Path, tmp_path: Path) -> None:
    touch(checkout / "src" / "main.tsx", T + 1)
    log = tmp_path / "frontend.log"
    with pytest.raises(ThorcutError, match=r"`npm run build` failed .*\(exit 3\); log .*frontend\.log") as info:
        ensure_built(checkout, log, npm=fake_npm(tmp_path, build_exit=3))
    assert "output of npm run build" in str(info.value)
    assert (tmp_path / "calls").read_text().splitlines() == ["npm run build"]  # node_modules was fresh


def test_ensure_built_without_npm_says_how_to_install_it(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (checkout / "dist" / "index.html").unlink()
    monkeypatch.setenv("PATH", str(checkout))  # no npm here
    with pytest.raises(UsageError, match=r"npm is not installed: .*apt-get install nodejs npm.*--no-frontend"):
        ensure_built(checkout, checkout / "frontend.log")


def test_ensure_built_without_npm_is_fine_when_the_build_is_fresh(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(checkout))
    assert ensure_built(checkout, checkout / "frontend.log") == Plan(False, False, "the build is up to date")


def test_ensure_built_without_package_json_does_nothing(tmp_path: Path) -> None:
    assert ensure_built(tmp_path, tmp_path / "frontend.log") is None
