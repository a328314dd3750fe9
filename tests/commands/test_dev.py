"""`thorcut dev up` / `dev down` start and stop a real embedded Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.runner import Run
from thorcut.dev.stack import EmbeddedRedis, free_port, port_free


def test_dev_up_starts_embedded_redis_when_none_answers_and_down_stops_it(run: Run, tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    state = tmp_path / "state"
    up = run("dev", "up", "--no-backend", "--redis-url", url, "--state-dir", str(state))
    assert up.exit_code == 0, up.stderr
    try:
        assert f"Started embedded Redis at {url}" in up.stdout
        assert "thorcut status" in up.stdout
        assert "thorcut dev down" in up.stdout
        assert redis.Redis(port=port).ping()
        assert (state / "redis").is_dir()
        status = run("status", "--json", "--redis-url", url)
        assert status.exit_code == 0
        again = run("dev", "up", "--no-backend", "--redis-url", url, "--state-dir", str(state))
        assert "already running" in again.stdout
    finally:
        down = run("dev", "down", "--state-dir", str(state))
    assert down.exit_code == 0
    assert "Stopped embedded redis-server" in down.stdout
    assert port_free(port)
    assert "Nothing started" in run("dev", "down", "--state-dir", str(state)).stderr


def test_dev_up_uses_a_reachable_redis_and_starts_nothing(
    run: Run, tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    up = run("dev", "up", "--no-backend", "--state-dir", str(tmp_path), "--json")
    assert up.exit_code == 0, up.stderr
    doc = json.loads(up.stdout)
    assert doc["embedded"] is False
    assert doc["url"] == redis_server.url
    assert "Nothing started" in run("dev", "down", "--state-dir", str(tmp_path)).stderr
    assert redis.Redis(port=redis_server.port).ping()


def test_dev_up_runs_the_whole_stack_and_down_stops_it(run: Run, tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    import time

    import httpx

    from thorcut.dev.backend import alive

    port = free_port()
    state = tmp_path / "stack"
    up = run("dev", "up", "--state-dir", str(state), "--port", str(port), "--workers", "2", "--tick", "0.1",
             "--json", env={"DATABASE_URL": ""})  # fmt: skip
    assert up.exit_code == 0, up.stderr
    doc = json.loads(up.stdout)
    backend = doc["backend"]
    pids = [p["pid"] for p in backend["processes"]]
    try:
        assert backend["url"] == f"http://127.0.0.1:{port}"
        assert (state / "thor.sqlite3").exists()
        # The page was built if it was stale, and is served at / by the same workers.
        assert backend["page_url"] == f"http://127.0.0.1:{port}/"
        assert backend["frontend"] in ("built", "up to date")
        page = httpx.get(backend["page_url"], timeout=2)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<div id="root">' in page.text
        headers = {"Authorization": f"Bearer {backend['token']}"}
        deadline = time.monotonic() + 10
        while True:  # the job runner produces the first ticks right after start
            resp = httpx.get(f"{backend['url']}/api/account/positions", headers=headers, timeout=2)
            if resp.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert resp.status_code == 200
        assert resp.json()["key"] == "DU1234"
        assert httpx.get(f"{backend['url']}/api/account/positions", timeout=2).status_code == 401
        # Both uvicorn workers and both job runners (leader and standby) follow the flags and
        # registered for --wait.
        deadline = time.monotonic() + 10
        while json.loads(run("status", "--json").stdout)["workers"] < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert json.loads(run("status", "--json").stdout)["workers"] == 4
    finally:
        down = run("dev", "down", "--state-dir", str(state))
    assert down.exit_code == 0
    assert "Stopped job runner" in down.stdout
    assert not any(alive(pid, "python") for pid in pids)


# Issue 9, "Hold at the edges": the demo stack's failure paths, restarts, ports and secrets.


def stack_processes(state: Path) -> list[int]:
    """Pids of the backend processes a `dev up` with ``state`` started (their environment names its folder)."""
    needle = f"PROMETHEUS_MULTIPROC_DIR={(state / 'metrics').resolve()}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def fake_uvicorn(folder: Path, body: str) -> Path:
    """A folder for PYTHONPATH whose ``uvicorn`` package stands in for the real one under `python -m uvicorn`.

    The rest of the stack (Redis, migrate, the job runner) stays real; only the web server misbehaves.
    """
    package = folder / "fake" / "uvicorn"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(body)
    return folder / "fake"


def time_wait_sockets(port: int) -> int:
    """Count TCP sockets in TIME_WAIT whose local port is ``port`` (IPv4)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "06")


def test_dev_up_right_after_dev_down_reuses_the_port_despite_time_wait(run: Run, tmp_path: Path) -> None:
    import http.client

    import httpx

    port = free_port()
    state = tmp_path / "stack"
    env = {"DATABASE_URL": "", "THORCUT_DEV_PORT": str(port)}  # the port comes from the environment
    up = run("dev", "up", "--state-dir", str(state), "--no-frontend", env=env)
    assert up.exit_code == 0, up.stderr
    try:
        # The printed URLs, the REST example and the THORCUT_BACKEND_URL hint follow the chosen port.
        assert f"Thor backend at http://127.0.0.1:{port} (WebSocket ws://127.0.0.1:{port}/ws/stream/;" in up.stdout
        assert f"  the page:   http://127.0.0.1:{port}/" in up.stdout
        assert f"export THORCUT_BACKEND_URL=http://127.0.0.1:{port} THORCUT_TOKEN=thor_" in up.stdout
        assert f"http://127.0.0.1:{port}/api/account/positions" in up.stdout
        assert ":8000" not in up.stdout
        clients = []
        for _ in range(3):  # keep-alive connections the server will close first on shutdown
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            client.request("GET", "/api/health")
            response = client.getresponse()
            response.read()
            assert response.status == 200
            clients.append(client)
    finally:
        down = run("dev", "down", "--state-dir", str(state))
    assert down.exit_code == 0, down.stderr
    for client in clients:
        client.close()
    assert time_wait_sockets(port) > 0  # the situation that made the old probe say "port is in use"
    again = run("dev", "up", "--state-dir", str(state), "--no-frontend", env=env)
    try:
        assert again.exit_code == 0, again.stderr
        assert "in use" not in again.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
    finally:
        assert run("dev", "down", "--state-dir", str(state)).exit_code == 0
    assert stack_processes(state) == []


#: Faults for `dev up`'s children, through PYTHONPATH (the real Redis, migrate and the rest stay).
DIES_AT_START = {
    # uvicorn starts a worker in its process group, then dies: the worker must not be left behind.
    "web": ("uvicorn/__main__.py", "import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "raise SystemExit('fake uvicorn: crashed at start')\n"),
    # The job runner dies at once while the web server comes up healthy.
    "jobs": ("sitecustomize.py", "import sys\n"
             "if 'run_jobs' in sys.argv:\n    raise SystemExit('fault: the job runner crashed at start')\n"),
}  # fmt: skip


@pytest.mark.parametrize("role", ["web", "jobs"])
def test_dev_up_whose_process_dies_at_start_stops_everything_it_started(run: Run, tmp_path: Path, role: str) -> None:
    name, body = DIES_AT_START[role]
    fault = tmp_path / "fault"
    (fault / name).parent.mkdir(parents=True)
    (fault / name).write_text(body)
    if name.startswith("uvicorn/"):
        (fault / "uvicorn" / "__init__.py").write_text("")
    redis_port, port = free_port(), free_port()
    state = tmp_path / "stack"
    up = run("dev", "up", "--redis-url", f"redis://127.0.0.1:{redis_port}/0", "--state-dir", str(state),
             "--port", str(port), "--no-frontend", env={"DATABASE_URL": "", "PYTHONPATH": str(fault)})  # fmt: skip
    assert up.exit_code == 4, up.stdout + up.stderr
    assert f"Error: the backend did not become healthy at http://127.0.0.1:{port}" in up.stderr
    assert "crashed at start" in up.stderr
    assert up.stdout == ""
    assert stack_processes(state) == []  # every process it started went, workers included
    assert port_free(port)
    assert port_free(redis_port)  # and the Redis this run started
    assert not (state / "dev.json").exists()
    assert "Nothing started" in run("dev", "down", "--state-dir", str(state)).stderr


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_interrupted_dev_up_stops_everything_it_started(cli_env: dict[str, str], tmp_path: Path, signum: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    marker = tmp_path / "uvicorn-started"
    fake = fake_uvicorn(tmp_path, f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(600)\n")
    redis_port, port = free_port(), free_port()
    state = tmp_path / "stack"
    env = {**os.environ, "DATABASE_URL": "", "PYTHONPATH": str(fake)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "thorcut", "dev", "up", "--redis-url", f"redis://127.0.0.1:{redis_port}/0",
         "--state-dir", str(state), "--port", str(port), "--no-frontend"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while not marker.exists() and proc.poll() is None:  # Redis, migrate and the job runner are up by now
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        assert stack_processes(state)
        proc.send_signal(getattr(signal, signum))
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Interrupted: stopped what `dev up` had started." in stderr
    assert "Traceback" not in stderr
    assert stack_processes(state) == []
    assert port_free(redis_port)
    assert not (state / "dev.json").exists()


def test_dev_up_on_a_partly_running_stack_starts_what_is_missing(run: Run, tmp_path: Path) -> None:
    import os
    import signal
    import time

    import httpx

    from thorcut.dev.backend import alive

    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    state = tmp_path / "stack"
    args = ("--redis-url", redis_url, "--state-dir", str(state), "--port", str(port), "--no-frontend", "--json")
    try:
        # Redis only, then the whole stack: the second `dev up` must not stop at "already running".
        assert run("dev", "up", *args, "--no-backend").exit_code == 0
        first = run("dev", "up", *args, env={"DATABASE_URL": ""})
        assert first.exit_code == 0, first.stderr
        doc = json.loads(first.stdout)
        assert doc["already_running"] is False
        assert httpx.get(f"{doc['backend']['url']}/api/health", timeout=5).status_code == 200
        # Everything up: says exactly what runs, starts nothing.
        text = run("dev", "up", *args[:-1])
        assert text.exit_code == 0, text.stderr
        jobs, standby, web = (p["pid"] for p in doc["backend"]["processes"])
        assert f"Demo Redis already running at {redis_url} (pid {doc['pid']})." in text.stdout
        assert (f"Thor backend already running at http://127.0.0.1:{port} (WebSocket ws://127.0.0.1:{port}/ws/stream/; "
                f"job runner 1 pid {jobs}, job runner 2 pid {standby}, uvicorn (2 workers) pid {web})"
                ) in text.stdout  # fmt: skip
        assert "(pid None)" not in text.stdout
        moved = run("dev", "up", *args[:4], "--port", str(free_port()))
        assert moved.exit_code == 2
        assert f"already runs at http://127.0.0.1:{port}; run `thorcut dev down` first" in moved.stderr
        # Both job runners die: the next `dev up` restarts the backend against the same Redis.
        # (One of them dying only gets it replaced: test_dev_up_replaces_a_job_runner_that_died.)
        for pid in (jobs, standby):
            os.kill(pid, signal.SIGKILL)
        while alive(jobs, "python") or alive(standby, "python"):
            time.sleep(0.02)
        again = run("dev", "up", *args, env={"DATABASE_URL": ""})
        assert again.exit_code == 0, again.stderr
        assert f"Stopped what was left of the previous backend: uvicorn (2 workers) (pid {web})." in again.stderr
        redone = json.loads(again.stdout)
        assert redone["pid"] == doc["pid"]
        assert all(alive(p["pid"], "python") for p in redone["backend"]["processes"])
        assert not alive(web, "python")
        assert httpx.get(f"{redone['backend']['url']}/api/health", timeout=5).status_code == 200
    finally:
        down = run("dev", "down", "--state-dir", str(state))
    assert down.exit_code == 0, down.stderr
    assert stack_processes(state) == []


def test_dev_up_with_an_already_answering_redis_never_calls_it_demo_redis(run: Run, tmp_path: Path) -> None:
    args = ("--state-dir", str(tmp_path / "stack"), "--port", str(free_port()), "--no-frontend")
    try:
        first = run("dev", "up", *args, env={"DATABASE_URL": ""})
        assert first.exit_code == 0, first.stderr
        again = run("dev", "up", *args)  # the whole stack runs: it says so, and what it runs
        assert again.exit_code == 0, again.stderr
    finally:
        down = run("dev", "down", *args[:2])
    for up in (first, again):
        assert up.stdout.startswith("Using the Redis at redis://127.0.0.1:")
        assert "(pid None)" not in up.stdout
        assert "Demo Redis" not in up.stdout
        assert "embedded" not in up.stdout
    assert "Thor backend already running at" in again.stdout
    assert down.exit_code == 0, down.stderr
    assert "redis" not in down.stdout.lower()  # not ours to stop


def test_dev_state_and_logs_are_private_and_hold_no_secrets(run: Run, tmp_path: Path) -> None:
    import stat

    from tests.conftest import start_redis

    server = start_redis(tmp_path / "locked")
    redis.Redis(port=server.port).config_set("requirepass", "s3cret-pw")
    url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
    state = tmp_path / "stack"
    try:
        up = run("dev", "up", "--redis-url", url, "--state-dir", str(state), "--port", str(free_port()),
                 "--no-frontend", env={"DATABASE_URL": ""})  # fmt: skip
        assert up.exit_code == 0, up.stderr
        token = next(line.split()[-1] for line in up.stdout.splitlines() if line.startswith("  API token:"))
        assert token.startswith("thor_")  # shown once, on the terminal
        assert "s3cret-pw" not in up.stdout + up.stderr
        saved = (state / "dev.json").read_text()
        assert "s3cret-pw" not in saved
        assert json.loads(saved)["url"] == f"redis://:***@127.0.0.1:{server.port}/0"
        assert token not in saved
        logs = sorted((state / "logs").iterdir())
        assert {p.name for p in logs} >= {"setup.log", "jobs.log", "web.log"}
        assert "token ***" in (state / "logs" / "setup.log").read_text()
        for path in logs:
            text = path.read_text()
            assert token not in text, path
            assert "s3cret-pw" not in text, path
        assert stat.S_IMODE((state / "dev.json").stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE((state / "logs").stat().st_mode) == 0o700
        assert {stat.S_IMODE(p.stat().st_mode) for p in logs} == {0o600}
        # A second `dev up` reaches the password-protected Redis again although the state redacts it.
        again = run("dev", "up", "--redis-url", url, "--state-dir", str(state))
        assert again.exit_code == 0, again.stderr
        assert "Thor backend already running" in again.stdout
    finally:
        down = run("dev", "down", "--state-dir", str(state))
        server.stop()
    assert down.exit_code == 0, down.stderr
    assert stack_processes(state) == []


def test_make_demo_passes_port_to_dev_up() -> None:
    import shutil
    import subprocess

    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed: the README's commands need it (apt-get install make; .ci/run does)")
    checkout = Path(__file__).resolve().parents[2]
    dry = subprocess.run([make, "-n", "-C", str(checkout), "demo", "PORT=8100", "STAMP=Makefile"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert "thorcut dev up --port 8100" in dry.stdout
    plain = subprocess.run([make, "-n", "-C", str(checkout), "demo", "PORT=", "STAMP=Makefile"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert "--port" not in plain.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ('{"format": "other tool", "url": "x"}', "its format is 'other tool'"),
        ('{"url": "redis://127.0.0.1:1/0", "embedded": true, "pid": 4242}',
         "it comes from an older thorcut that kept no process start times; its pids: 4242"),
        ('{"format": "thorcut dev 2", "url": "redis://x", "embedded": true, "pid": 0, "started": "b:1"}',
         "the embedded Redis has no valid pid"),
        ('{"format": "thorcut dev 2", "url": "redis://x", "embedded": false, "backend": {"processes": [{"pid": -1}]}}',
         "a backend process record is malformed"),
    ],
)  # fmt: skip
def test_dev_up_and_down_with_a_corrupt_or_foreign_state_file_exit_2(
    run: Run, tmp_path: Path, content: str, problem: str
) -> None:
    state = tmp_path / "stack"
    state.mkdir()
    (state / "dev.json").write_text(content)
    for command in (("dev", "up", "--no-backend"), ("dev", "down")):
        result = run(*command, "--state-dir", str(state))
        assert result.exit_code == 2, result.stdout + result.stderr
        assert isinstance(result.exception, SystemExit)  # the error boundary, not a traceback
        assert f"is not a state file this thorcut wrote ({problem}" in result.stderr
        assert "rm " in result.stderr
    assert (state / "dev.json").read_text() == content


def test_dev_up_with_a_state_dir_that_is_a_file_exits_2(run: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("dev", "up", "--no-backend", "--redis-url", f"redis://127.0.0.1:{free_port()}/0",
                 "--state-dir", str(blocker))  # fmt: skip
    assert result.exit_code == 2, result.stdout + result.stderr
    assert isinstance(result.exception, SystemExit)
    assert f"Error: cannot read {blocker / 'dev.json'}: Not a directory" in result.stderr


def test_dev_down_never_signals_a_pid_that_now_belongs_to_another_program(
    run: Run, tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    import subprocess
    import sys

    from thorcut.dev import procs as devprocs
    from thorcut.dev.state import STATE_FORMAT

    # A stranger whose command line even holds the job runner's marker; only its start time differs.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "run_jobs"])
    try:
        state = tmp_path / "stack"
        state.mkdir()
        redis_pid = redis_server.process.pid if redis_server.process else 0
        doc = {
            "format": STATE_FORMAT, "url": redis_server.url, "embedded": True, "pid": redis_pid, "started": "old:1",
            "backend": {"url": "http://127.0.0.1:1", "port": 1, "processes": [
                {"name": "job runner", "role": "jobs", "pid": stranger.pid, "started": "old:2"}]},
        }  # fmt: skip
        (state / "dev.json").write_text(json.dumps(doc))
        down = run("dev", "down", "--state-dir", str(state))
        assert down.exit_code == 2, down.stdout + down.stderr
        assert f"left pid {stranger.pid} (the job runner) alone: it is now another program" in down.stderr
        assert f"left pid {redis_pid} (the embedded redis-server) alone" in down.stderr
        assert devprocs.running(stranger.pid)
        assert redis.Redis(port=redis_server.port).ping()
        assert not (state / "dev.json").exists()  # stale: the next `dev up` starts afresh
        # `dev up` with such a state starts afresh and signals nobody either.
        (state / "dev.json").write_text(json.dumps(doc))
        up = run("dev", "up", "--no-backend", "--state-dir", str(state))
        assert up.exit_code == 0, up.stderr
        assert devprocs.running(stranger.pid)
        assert redis.Redis(port=redis_server.port).ping()
    finally:
        stranger.kill()
        stranger.wait()


# Issue 10: the demo's Redis keeps its data, and a standby job runner stands beside the leader.


def _flag_and_audit(run: Run, url: str) -> tuple[str, list[str]]:
    """The stage of `positions` and the reasons in the audit trail, read through the CLI."""
    status = run("status", "--json", env={"THORCUT_REDIS_URL": url})
    assert status.exit_code == 0, status.stderr
    stage = next(f["stage"] for f in json.loads(status.stdout)["features"] if f["feature"] == "positions")
    history = run("history", "--json", env={"THORCUT_REDIS_URL": url})
    assert history.exit_code == 0, history.stderr
    return stage, [entry["reason"] for entry in json.loads(history.stdout)["entries"]]


def test_embedded_redis_keeps_flags_and_audit_across_dev_down_and_a_kill_9(run: Run, tmp_path: Path) -> None:
    import os
    import signal
    import time

    from thorcut.dev import procs as devprocs

    url = f"redis://127.0.0.1:{free_port()}/0"
    state = tmp_path / "stack"
    args = ("--redis-url", url, "--state-dir", str(state), "--port", str(free_port()), "--no-frontend", "--json")
    env = {"DATABASE_URL": ""}
    try:
        first = run("dev", "up", *args, env=env)
        assert first.exit_code == 0, first.stderr
        assert json.loads(first.stdout)["embedded"] is True
        shadow = run("shadow", "positions", "--reason", "kept across restarts", env={"THORCUT_REDIS_URL": url})
        assert shadow.exit_code == 0, shadow.stderr
        assert _flag_and_audit(run, url) == ("shadow", ["kept across restarts"])
        config = redis.Redis.from_url(url).config_get("append*")
        assert (config["appendonly"], config["appendfsync"]) == ("yes", "everysec")

        assert run("dev", "down", "--state-dir", str(state)).exit_code == 0
        second = run("dev", "up", *args, env=env)
        assert second.exit_code == 0, second.stderr
        assert json.loads(second.stdout)["pid"] != json.loads(first.stdout)["pid"]  # a new redis-server
        assert _flag_and_audit(run, url) == ("shadow", ["kept across restarts"])

        # A crash: kill -9 of the embedded redis-server, then `dev up` starts it again.
        redis_pid = json.loads(second.stdout)["pid"]
        os.kill(redis_pid, signal.SIGKILL)
        while devprocs.running(redis_pid):
            time.sleep(0.02)
        third = run("dev", "up", *args, env=env)
        assert third.exit_code == 0, third.stderr
        assert json.loads(third.stdout)["already_running"] is False
        assert _flag_and_audit(run, url) == ("shadow", ["kept across restarts"])
        verify = run("history", "--verify", env={"THORCUT_REDIS_URL": url})
        assert verify.exit_code == 0, verify.stdout + verify.stderr
    finally:
        down = run("dev", "down", "--state-dir", str(state))
    assert down.exit_code == 0, down.stderr
    assert stack_processes(state) == []


def test_dev_up_uses_an_external_redis_as_it_is(run: Run, tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    client = redis.Redis(port=redis_server.port)
    before = client.config_get("appendonly")
    up = run("dev", "up", "--no-backend", "--state-dir", str(tmp_path))
    assert up.exit_code == 0, up.stderr
    assert client.config_get("appendonly") == before == {"appendonly": "no"}  # not ours to configure
    assert not (tmp_path / "redis").exists()


def test_dev_up_replaces_a_job_runner_that_died_and_the_standby_leads(run: Run, tmp_path: Path) -> None:
    import os
    import signal
    import time

    from thorcut.dev.backend import alive

    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    state = tmp_path / "stack"
    args = ("--redis-url", redis_url, "--state-dir", str(state), "--port", str(port), "--no-frontend")
    try:
        first = run("dev", "up", *args, env={"DATABASE_URL": ""})
        assert first.exit_code == 0, first.stderr
        runners = {p["pid"]: p["name"] for p in json.loads((state / "dev.json").read_text())["backend"]["processes"]
                   if p["role"] == "jobs"}  # fmt: skip
        assert sorted(runners.values()) == ["job runner 1", "job runner 2"]
        line = next(line for line in first.stdout.splitlines() if line.startswith("  job runners: "))
        leader = next(pid for pid, name in runners.items() if line.startswith(f"  job runners: {name} (pid {pid}) "))
        standby = next(pid for pid in runners if pid != leader)
        assert line == (f"  job runners: {runners[leader]} (pid {leader}) leads; {runners[standby]} (pid {standby}) "
                        "stands by (takes over within the lock's 3 s TTL if the leader dies)")  # fmt: skip
        assert "leader" not in (state / "dev.json").read_text()  # read from Redis, never stored

        # The leader dies: `dev up` lets the standby take over, then starts a new standby in its place.
        os.kill(leader, signal.SIGKILL)
        while alive(leader, "python"):
            time.sleep(0.02)
        again = run("dev", "up", *args, "--json")
        assert again.exit_code == 0, again.stderr
        assert f"Restarted {runners[leader]} (it had stopped; the other job runner ran on)." in again.stderr
        doc = json.loads(again.stdout)
        assert doc["already_running"] is False
        procs = doc["backend"]["processes"]
        assert [p["name"] for p in procs] == ["job runner 1", "job runner 2", "uvicorn (2 workers)"]
        replacement = next(p["pid"] for p in procs if p["name"] == runners[leader])
        assert replacement != leader
        assert doc["backend"]["leader"] == standby
        assert all(alive(p["pid"], "python") for p in procs)
        saved = json.loads((state / "dev.json").read_text())["backend"]["processes"]
        assert [p["pid"] for p in saved] == [p["pid"] for p in procs]
        text = run("dev", "up", *args)
        assert text.exit_code == 0, text.stderr
        assert (f"  job runners: {runners[standby]} (pid {standby}) leads; {runners[leader]} (pid {replacement}) "
                "stands by") in text.stdout  # fmt: skip
    finally:
        down = run("dev", "down", "--state-dir", str(state))
    assert down.exit_code == 0, down.stderr
    assert "Stopped job runner 1" in down.stdout
    assert "Stopped job runner 2" in down.stdout
    assert stack_processes(state) == []
