"""``thorcut dev up`` / ``thorcut dev down``: the local demo stack."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import typer

from thorcut.config import load_settings, redact_url
from thorcut.errors import ThorcutError, UsageError
from thorcut.options import ConfigOpt, JsonOpt, RedisUrlOpt
from thorcut.output import err, out, print_json

app = typer.Typer(help="Run the local demo stack.", no_args_is_help=True)

StateDirOpt = typer.Option(Path(".thorcut"), "--state-dir", help="Where the demo keeps its data and state.")


def _progress(line: str) -> None:
    err().print(line, markup=False, soft_wrap=True)


@app.command()
def up(
    redis_url: RedisUrlOpt = None,
    config: ConfigOpt = None,
    state_dir: Path = StateDirOpt,
    workers: int = typer.Option(2, "--workers", min=1, max=32, help="ASGI worker processes behind the port."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port of the backend (page, REST, WebSocket)."),
    tick: float = typer.Option(1.0, "--tick", min=0.01, help="Heartbeat interval in seconds."),
    no_backend: bool = typer.Option(False, "--no-backend", help="Start Redis only."),
    no_frontend: bool = typer.Option(False, "--no-frontend", help="Do not build the page (frontend/dist) first."),
    as_json: JsonOpt = False,
) -> None:
    """Start the demo stack: Redis, then the page build and the Thor backend (migrate, seed, jobs, workers).

    Example: thorcut dev up --workers 2
    """
    from thorcut import devbackend, devstack

    settings = load_settings({"redis_url": redis_url}, config=config)
    state = devstack.up(state_dir, settings.redis_url, min(settings.timeout, 1.0))
    url = str(state["url"])
    if not no_backend and not state.get("already_running"):
        if not devstack.port_free(port):
            raise UsageError(f"port {port} is in use; choose another with --port")
        try:
            state["backend"] = devbackend.up(state_dir, url, settings.prefix, port=port, workers=workers, tick=tick,
                                             frontend=not no_frontend, note=_progress)  # fmt: skip
        except ThorcutError:
            if state.get("embedded"):
                devstack.down(state_dir)
            raise
        devstack.save_state(state_dir, state)
    if as_json:
        print_json({**state, "url": redact_url(url)})
        return
    console = out()
    if state.get("already_running"):
        console.print(f"Demo Redis already running at {redact_url(url)} (pid {state['pid']}).")
    elif state["embedded"]:
        console.print(f"Started embedded Redis at {url} (pid {state['pid']}; data in {state_dir / 'redis'}).")
    else:
        console.print(f"Using the Redis at {redact_url(url)}.")
    backend = state.get("backend")
    if isinstance(backend, dict):
        console.print(
            f"Thor backend at {backend['url']} (WebSocket {backend['ws_url']}); logs in {backend['logs']}\n"
            f"  the page:   {backend['page_url']} ({backend['frontend']})\n"
            f"  demo login: {backend['user']} / {backend['password']} (account {backend['account']})\n"
            f"  API token:  {backend['token']}",
            markup=False,
        )
    env = ""
    if url != settings.redis_url:
        env = f"THORCUT_REDIS_URL={url} "
        console.print(f"\nPoint thorcut at it:  export THORCUT_REDIS_URL={url}")
    if shutil.which("thorcut") is None:
        console.print(
            f"\nthorcut is not on PATH; activate its virtualenv first:  . {Path(sys.prefix) / 'bin/activate'}"
        )
    console.print("\nNext, try:")
    if isinstance(backend, dict):
        console.print(f"  open {backend['page_url']} and log in as {backend['user']} / {backend['password']}"
                      " (each panel's badge shows REST or WebSocket as you go)", markup=False)  # fmt: skip
        console.print(f"  export THORCUT_BACKEND_URL={backend['url']} THORCUT_TOKEN={backend['token']}",
                      markup=False)  # fmt: skip
        console.print(f"  curl -H 'Authorization: Bearer {backend['token']}' {backend['url']}/api/account/positions",
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


@app.command()
def down(state_dir: Path = StateDirOpt) -> None:
    """Stop what `thorcut dev up` started.

    Example: thorcut dev down
    """
    from thorcut import devstack

    stopped = devstack.down(state_dir)
    if stopped:
        for item in stopped:
            out().print(f"Stopped {item}.")
    else:
        err().print("Nothing started by `thorcut dev up` is running.")
