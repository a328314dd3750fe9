"""``thorcut dev up`` / ``thorcut dev down``: the local demo stack."""

from __future__ import annotations

import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from thorcut.cli.options import ConfigOpt, JsonOpt, RedisUrlOpt
from thorcut.cli.output import err, out, print_json
from thorcut.config import Settings, load_settings
from thorcut.errors import UsageError
from thorcut.values import redact_url

app = typer.Typer(help="Run the local demo stack.", no_args_is_help=True)

StateDirOpt = typer.Option(Path(".thorcut"), "--state-dir", help="Where the demo keeps its data and state.")


def _progress(line: str) -> None:
    err().print(line, markup=False, soft_wrap=True)


DEFAULT_PORT = 8000
PortOpt = typer.Option(
    None, "--port", min=1, max=65535, envvar="THORCUT_DEV_PORT", show_default=False,
    help=f"Port of the backend (page, REST, WebSocket); default {DEFAULT_PORT}. `make demo PORT=…` sets it.",
)  # fmt: skip


@contextmanager
def _stops_as_ctrl_c() -> Iterator[None]:
    """While ``dev up`` starts things, SIGTERM and SIGHUP (a closed terminal) act as Ctrl-C,
    so the clean-up that Ctrl-C runs also runs for them (issue 9)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@app.command()
def up(
    redis_url: RedisUrlOpt = None,
    config: ConfigOpt = None,
    state_dir: Path = StateDirOpt,
    workers: int = typer.Option(2, "--workers", min=1, max=32, help="ASGI worker processes behind the port."),
    port: int | None = PortOpt,
    tick: float = typer.Option(1.0, "--tick", min=0.01, help="Heartbeat interval in seconds."),
    no_backend: bool = typer.Option(False, "--no-backend", help="Start Redis only."),
    no_frontend: bool = typer.Option(False, "--no-frontend", help="Do not build the page (frontend/dist) first."),
    as_json: JsonOpt = False,
) -> None:
    """Start the demo stack: Redis, then the page build and the Thor backend (migrate, seed, jobs, workers).

    Example: thorcut dev up --port 8100
    """
    from thorcut.dev import stack as devstack
    from thorcut.dev import state as devstate

    settings = load_settings({"redis_url": redis_url}, config=config)
    previous = devstate.read_state(state_dir)
    with _stops_as_ctrl_c():
        redis_state = devstack.up(state_dir, settings.redis_url, min(settings.timeout, 1.0), previous)
        kept = bool(redis_state.pop("kept"))
        state: dict[str, Any] = dict(redis_state)
        try:
            started = _ensure_backend(state, previous, settings, state_dir, kept=kept, port=port, workers=workers,
                                      tick=tick, no_backend=no_backend, no_frontend=no_frontend)  # fmt: skip
        except BaseException as exc:
            if state["embedded"] and not kept:  # a Redis this run started goes with it
                devstack.stop_redis(state)
                (state_dir / devstate.STATE_FILE).unlink(missing_ok=True)
            if isinstance(exc, KeyboardInterrupt):
                err().print("Interrupted: stopped what `dev up` had started.")
            raise
    state["already_running"] = kept and not started
    backend = state.get("backend")
    if isinstance(backend, dict) and "leader" not in backend:
        from thorcut.dev import backend as devbackend

        runners = [p["pid"] for p in backend["processes"] if p.get("role") == "jobs"]
        url = str(state["url"]) if state["embedded"] else settings.redis_url  # the state's copy is redacted
        backend["leader"] = devbackend.wait_leader(url, settings.prefix, runners, timeout=devbackend.LOCK_TTL + 1)
    _report(state, settings.redis_url, state_dir, kept=kept, as_json=as_json)


def _ensure_backend(state: dict[str, Any], previous: dict[str, Any] | None, settings: Settings, state_dir: Path, *,
                    kept: bool, port: int | None, workers: int, tick: float, no_backend: bool,
                    no_frontend: bool) -> bool:  # fmt: skip
    """Put the backend into ``state`` and save it: the one ``previous`` records if all of it still
    runs against the ``kept`` Redis; that one with a job runner started in place of each that died
    if the web server and another runner run on; else a new one (after stopping what is left of
    the old). Return whether anything was started. On failure the state file keeps the Redis
    only (and what still runs of a backend whose runner could not be replaced)."""
    from thorcut.dev import backend as devbackend
    from thorcut.dev import stack as devstack
    from thorcut.dev import state as devstate

    url = str(state["url"]) if state["embedded"] else settings.redis_url  # the state's copy is redacted
    old = previous.get("backend") if previous else None
    live, gone = devbackend.recorded_running(old) if isinstance(old, dict) else ([], [])
    if live and isinstance(old, dict) and kept and port is not None and port != old.get("port") and not no_backend:
        raise UsageError(f"the demo backend already runs at {old.get('url')}; run `thorcut dev down` first "
                         f"to start it on port {port}")  # fmt: skip
    roles = {p.get("role") for p in live}
    if isinstance(old, dict) and kept and not no_backend and gone and roles == {"jobs", "web"} \
            and all(p.get("role") == "jobs" for p in gone):  # fmt: skip
        # A job runner died (say the leader, killed to watch the standby take over): the other
        # one leads now, so only a new standby is needed (issue 10).
        backend = state["backend"] = {**old, **devbackend.demo_login()}
        try:
            names = devbackend.restart_runners(
                state_dir, url, settings.prefix, backend, gone, tick=tick,
                record=lambda b: devstate.save_state(state_dir, {**state, "backend": b}),
            )  # fmt: skip
        finally:
            devstate.save_state(state_dir, state)
        _progress(f"Restarted {' and '.join(names)} (it had stopped; the other job runner ran on).")
        return True
    if isinstance(old, dict) and (not kept or (gone and not no_backend)):
        # Half a backend (a process died: its workers may linger on the port), or one whose Redis
        # is gone: stop what is left of it, then start afresh.
        stopped, _ = devbackend.stop_recorded(old)
        if stopped:
            _progress(f"Stopped what was left of the previous backend: {', '.join(stopped)}.")
        live = []
    if live and isinstance(old, dict):
        state["backend"] = {**old, "processes": live, **devbackend.demo_login()}
        devstate.save_state(state_dir, state)
        return False
    devstate.save_state(state_dir, state)
    if no_backend:
        return False
    port = port or DEFAULT_PORT
    if not devstack.port_free(port):
        raise UsageError(f"port {port} is in use by another program; choose another with --port "
                         "(or THORCUT_DEV_PORT; `make demo PORT=…`)")  # fmt: skip
    try:
        state["backend"] = devbackend.up(
            state_dir, url, settings.prefix, port=port, workers=workers, tick=tick, frontend=not no_frontend,
            note=_progress, record=lambda backend: devstate.save_state(state_dir, {**state, "backend": backend}),
        )  # fmt: skip
    except BaseException:
        devstate.save_state(state_dir, state)  # devbackend.up stopped what it started
        raise
    devstate.save_state(state_dir, state)
    return True


def _login_lines(backend: dict[str, Any]) -> list[str]:
    """A line per demo user: the operator ``demo`` and the ``viewer`` (a state file older than the
    viewer records the demo user alone)."""
    logins = backend.get("logins") or [{**{k: backend[k] for k in ("user", "password", "account")}, "operator": True}]
    role = {True: "operator: the page shows stage controls", False: "not an operator: no stage controls"}
    return [f"  {x['user']} login: {x['user']} / {x['password']} (account {x['account']}; "
            f"{role[bool(x.get('operator'))]})" for x in logins]  # fmt: skip


def _report(state: dict[str, Any], configured: str, state_dir: Path, *, kept: bool, as_json: bool) -> None:
    url = str(state["url"])
    if as_json:
        print_json({**state, "url": redact_url(url)})
        return
    console = out()
    if state["embedded"] and kept:
        console.print(f"Demo Redis already running at {url} (pid {state['pid']}).", markup=False)
    elif state["embedded"]:
        console.print(f"Started embedded Redis at {url} (pid {state['pid']}; data in {state_dir / 'redis'}).",
                      markup=False)  # fmt: skip
    else:
        console.print(f"Using the Redis at {redact_url(url)} (it was already answering; `dev up` did not start it).",
                      markup=False)  # fmt: skip
    backend = state.get("backend")
    token = backend.get("token") if isinstance(backend, dict) else None
    if isinstance(backend, dict):
        pids = ", ".join(f"{p['name']} pid {p['pid']}" for p in backend["processes"])
        built = f" ({backend['frontend']})" if "frontend" in backend else ""
        lines = [
            f"{'Thor backend' if token else 'Thor backend already running'} at {backend['url']} "
            f"(WebSocket {backend['ws_url']}; {pids}); logs in {backend['logs']}",
            f"  the page:   {backend['page_url']}{built}",
            *_login_lines(backend),
            f"  API token:  {token}" if token else
            "  API token:  shown by the `dev up` that started it (`thorcut dev down`, then `dev up`, makes a new one)",
        ]  # fmt: skip
        runners = _runners_line(backend)
        if runners:
            lines.insert(1, runners)
        console.print("\n".join(lines), markup=False)
    else:
        console.print("No backend (--no-backend); `thorcut dev up` without it starts one.")
    env = ""
    if url != configured:
        env = f"THORCUT_REDIS_URL={url} "
        console.print(f"\nPoint thorcut at it:  export THORCUT_REDIS_URL={url}", markup=False)
    if shutil.which("thorcut") is None:
        console.print(
            f"\nthorcut is not on PATH; activate its virtualenv first:  . {Path(sys.prefix) / 'bin/activate'}",
            markup=False,
        )
    console.print("\nNext, try:")
    if isinstance(backend, dict):
        shown = token or "<the token>"
        console.print(f"  open {backend['page_url']} and log in as {backend['user']} / {backend['password']}"
                      " (each panel's badge shows REST or WebSocket as you go)", markup=False)  # fmt: skip
        console.print(f"  export THORCUT_BACKEND_URL={backend['url']} THORCUT_TOKEN={shown}", markup=False)
        console.print(f"  curl -H \"Authorization: Bearer $THORCUT_TOKEN\" {backend['url']}/api/account/positions",
                      markup=False)  # fmt: skip
    for line in (
        f"{env}thorcut status",
        f"{env}thorcut shadow positions --reason 'start parity'",
        f"{env}thorcut tail --feature positions --count 5",
        f"{env}thorcut enable positions        # refused (exit 3): no PASS verdict yet",
        f"{env}thorcut diff positions        # 65 s of shadow traffic judged; a PASS opens the gate",
        f"{env}thorcut enable positions --reason 'parity PASS'",
        f"{env}thorcut check --all --junit parity.xml",
        f"{env}thorcut rollback --all --reason demo",
        f"{env}thorcut history --verify",
        "thorcut dev down",
    ):
        console.print(f"  {line}", markup=False)


def _runners_line(backend: dict[str, Any]) -> str:
    """Say which job runner leads and which stands by ("" for a backend without runners)."""
    from thorcut.dev.backend import LOCK_TTL

    runners = [p for p in backend["processes"] if p.get("role") == "jobs"]
    if not runners:
        return ""
    leader = next((p for p in runners if p["pid"] == backend.get("leader")), None)
    others = ", ".join(f"{p['name']} (pid {p['pid']})" for p in runners if p is not leader)
    if leader is None:
        return f"  job runners: {others}: one leads at a time; none holds the leader lock yet"
    line = f"  job runners: {leader['name']} (pid {leader['pid']}) leads"
    if others:
        line += f"; {others} stands by (takes over within the lock's {LOCK_TTL:g} s TTL if the leader dies)"
    return line


@app.command()
def down(state_dir: Path = StateDirOpt) -> None:
    """Stop what `thorcut dev up` started.

    Example: thorcut dev down
    """
    from thorcut.dev import stack as devstack

    stopped = devstack.down(state_dir)
    if stopped:
        for item in stopped:
            out().print(f"Stopped {item}.")
    else:
        err().print("Nothing started by `thorcut dev up` is running.")
