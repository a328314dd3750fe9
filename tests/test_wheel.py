"""The wheel built from this checkout installs and runs the CLI without the checkout, on every
Python thorcut supports (3.11, 3.12, 3.13).

The wheel is built once (``pip wheel --no-deps`` of a copy of the sources, so a stale ``build/``
folder of the checkout cannot leak into it). Each version gets a fresh virtualenv, ``pip install
<wheel>`` (dependencies from the package index, through pip's cache), and runs the installed
``thorcut`` from a folder outside the checkout with no PYTHONPATH: ``--version``, ``shadow`` and
``status`` against this session's redis-server, ``tail`` and ``diff`` against a small WebSocket +
HTTP backend in this process, and ``check --replay`` on recordings written in the documented
format (docs/contracts.md, "Recordings"). A version this machine lacks fails, naming how to get it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import HeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
from websockets.asyncio.server import ServerConnection

from tests.conftest import set_flag
from tests.parity.build import balance, steady, write_plain
from tests.wire.ws_server import StartWsServer
from thorcut.dev.stack import EmbeddedRedis
from thorcut.redisconn import Keys

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("3.11", "3.12", "3.13")
THRESHOLDS = "[features.positions.thresholds]\nmin_paired = 5\nmin_duration = 1\n"


def _find_python_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("find_python", ROOT / "scripts" / "find_python.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, check=False, **kwargs)


# -- the wheel ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "MANIFEST.in", "setup.py", "setup.cfg", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "thorcut", src / "thorcut", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src])
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list(out.glob("thorcut-*.whl"))
    assert [w.name for w in wheels] == ["thorcut-0.1.0-py3-none-any.whl"]
    return wheels[0]


def test_the_wheel_holds_every_module_the_manifest_and_the_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        dist_info = "thorcut-0.1.0.dist-info"
        metadata = HeaderParser().parsestr(z.read(f"{dist_info}/METADATA").decode())
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    assert "thorcut/reference_manifest.toml" in names
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "thorcut").rglob("*.py")}
    assert modules - names == set(), "modules of the checkout missing from the wheel"
    packaged = {n for n in names if n.startswith("thorcut/")}
    assert packaged == modules | {"thorcut/reference_manifest.toml"}, "the wheel holds files the checkout has not"
    assert metadata["Requires-Python"] == ">=3.11"
    classifiers = metadata.get_all("Classifier") or []
    assert {f"Programming Language :: Python :: {v}" for v in VERSIONS} <= set(classifiers)
    assert "thorcut = thorcut.cli.app:main" in entry_points


# -- one virtualenv per version, the wheel installed in it ------------------------------------------------


@dataclass
class Installed:
    version: str
    venv: Path
    cwd: Path  # outside the checkout: no thorcut.toml, no package folder to import from by accident
    env: dict[str, str] = field(default_factory=dict)

    def thorcut(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the installed ``thorcut`` from :attr:`cwd`, with ``env`` over the clean environment."""
        return _run([self.venv / "bin" / "thorcut", *args], env={**self.env, **(env or {})}, cwd=self.cwd)


def _clean_env(venv: Path) -> dict[str, str]:
    """This environment without anything that points at the checkout or configures thorcut."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("THORCUT_", "WS_FEATURE_", "PYTHON", "VIRTUAL_ENV", "DJANGO_"))
        and k not in ("NO_COLOR", "FORCE_COLOR", "GITHUB_ACTIONS")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update({"COLUMNS": "200", "TERM": "dumb", "THORCUT_OPERATOR": "wheel-test"})
    return env


@pytest.fixture(scope="module", params=VERSIONS)
def installed(request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    version: str = request.param
    finder = _find_python_script()
    try:
        python = finder.find(version)
    except finder.NotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    base = tmp_path_factory.mktemp(f"py{version}")
    assert not base.resolve().is_relative_to(ROOT), "the test folder must be outside the checkout"
    venv = base / "venv"
    made = _run([python, "-m", "venv", venv], env=_clean_env(base))
    assert made.returncode == 0, made.stderr
    env = _clean_env(venv)
    pip = _run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], env=env, cwd=base)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    cwd = base / "work"
    cwd.mkdir()
    return Installed(version, venv, cwd, env)


def test_version_runs_from_the_installed_package(installed: Installed) -> None:
    result = installed.thorcut("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, "thorcut 0.1.0\n", "")
    code = "import sys, thorcut; print('%d.%d' % sys.version_info[:2]); print(thorcut.__file__)"
    probe = _run([installed.venv / "bin" / "python", "-c", code], env=installed.env, cwd=installed.cwd)
    assert probe.returncode == 0, probe.stderr
    version, where = probe.stdout.split()
    assert version == installed.version
    assert Path(where).is_relative_to(installed.venv), where
    assert not Path(where).resolve().is_relative_to(ROOT), where


def test_shadow_and_status_against_a_real_redis(
    installed: Installed, redis_server: EmbeddedRedis, client: redis.Redis, keys: Keys, prefix: str
) -> None:
    env = {"THORCUT_REDIS_URL": redis_server.url, "THORCUT_PREFIX": prefix}
    moved = installed.thorcut("shadow", "positions", "--reason", f"wheel on {installed.version}", env=env)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "positions: moved off → shadow, version 0 → 1" in moved.stdout
    assert client.hget(keys.flag("positions"), "stage") == "shadow"

    as_json = installed.thorcut("status", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    rows = {row["feature"]: row for row in json.loads(as_json.stdout)["features"]}
    assert set(rows) == {"account_balance", "positions", "intraday", "global_market"}
    assert (rows["positions"]["stage"], rows["positions"]["version"]) == ("shadow", 1)
    assert rows["positions"]["updated_by"] == "wheel-test"
    assert rows["positions"]["reason"] == f"wheel on {installed.version}"
    assert rows["account_balance"]["stage"] == "off"

    table = installed.thorcut("status", env=env)
    assert table.returncode == 0, table.stderr
    line = next(li for li in table.stdout.splitlines() if "positions" in li)
    assert "shadow" in line
    assert "wheel-test" in line


def test_tail_follows_a_websocket_stream(installed: Installed, ws_server: StartWsServer) -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        for seq in (1, 2, 4):  # 3 is missing: a gap the line and the summary show
            data = {"account": "DU1234", "positions": [{"symbol": "ES", "quantity": seq}]}
            await ws.send(json.dumps({"type": "positions", "feature": "positions", "key": "DU1234", "seq": seq,
                                      "ts": "2026-11-24T14:00:00.000Z", "data": data}))  # fmt: skip
        await ws.send("<<not json>>")
        await asyncio.sleep(0)

    server = ws_server(handler)
    result = installed.thorcut("tail", "--url", server.url, "--count", "3", "--duration", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [li for li in result.stdout.splitlines() if "DU1234" in li]
    assert len(lines) == 3, result.stdout
    assert all("positions" in li for li in lines)
    assert ["#1" in lines[0], "#2" in lines[1], "#4" in lines[2]] == [True, True, True], lines
    assert "gap: 1 missed before #4" in lines[2]
    assert f"connected to {server.url}" in result.stderr
    assert "3 messages" in result.stderr
    assert "gaps 1 (1 missed)" in result.stderr

    as_json = installed.thorcut("tail", "--url", server.url, "--count", "4", "--duration", "20", "--json")
    assert as_json.returncode == 0, as_json.stderr
    frames = [json.loads(li) for li in as_json.stdout.splitlines()]
    assert [f["msg"]["seq"] for f in frames[:3]] == [1, 2, 4]
    assert frames[3]["raw"] == "<<not json>>"


@dataclass
class Backend:
    """A positions stream (a message every 50 ms) and its REST endpoint answering the current state."""

    seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self, seq: int) -> dict[str, Any]:
        data = {"account": "DU1234", "positions": [{"symbol": "ES", "quantity": seq % 7, "last_price": 5000.25}]}
        return {"type": "positions", "feature": "positions", "key": "DU1234", "seq": seq, "data": data}


@pytest.fixture
def backend(ws_server: StartWsServer) -> Iterator[tuple[str, str]]:
    state = Backend()

    async def stream(ws: ServerConnection, n: int) -> None:
        while True:
            with state.lock:
                state.seq += 1
                body = state.body(state.seq)
            await ws.send(json.dumps(body))
            await asyncio.sleep(0.05)

    class Rest(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                raw = json.dumps(state.body(state.seq)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Rest)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    ws = ws_server(stream)
    try:
        yield ws.url, f"http://127.0.0.1:{http.server_address[1]}"
    finally:
        http.shutdown()
        http.server_close()


def test_diff_judges_a_live_backend_and_stores_the_verdict(
    installed: Installed,
    backend: tuple[str, str],
    redis_server: EmbeddedRedis,
    client: redis.Redis,
    keys: Keys,
    prefix: str,
) -> None:
    set_flag(client, keys, "positions", "shadow", 1)  # diff refuses a feature that is off
    (installed.cwd / "thorcut.toml").write_text(THRESHOLDS)
    ws_url, backend_url = backend
    env = {
        "THORCUT_REDIS_URL": redis_server.url,
        "THORCUT_PREFIX": prefix,
        "THORCUT_WS_URL": ws_url,
        "THORCUT_BACKEND_URL": backend_url,
    }
    try:
        result = installed.thorcut("diff", "positions", "--duration", "1.5", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PASS" in result.stdout
        stored = client.hgetall(keys.parity("positions"))
        assert stored["verdict"] == "PASS"
        assert int(stored["paired"]) >= 5
        assert stored["source"] == "live"

        status = installed.thorcut("status", "--json", env=env)
        row = next(r for r in json.loads(status.stdout)["features"] if r["feature"] == "positions")
        assert row["parity"]["verdict"] == "PASS"
    finally:
        (installed.cwd / "thorcut.toml").unlink()


def test_check_replays_recordings_in_the_documented_format(installed: Installed, tmp_path: Path) -> None:
    passing = write_plain(steady(n=61), tmp_path / "pass.jsonl")
    result = installed.thorcut("check", "--replay", str(passing), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    f = json.loads(result.stdout)["features"]["account_balance"]
    assert f["verdict"] == "PASS"
    assert f["counts"]["matched"] == 61

    failing = steady(n=55).pair(61, "account_balance", "DU1234", 56, balance(1.25), balance(2.5))
    result = installed.thorcut("check", "--replay", str(write_plain(failing, tmp_path / "fail.jsonl")))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "equity" in result.stdout
    assert "account_balance FAIL" in result.stderr
