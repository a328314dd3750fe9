"""``python -m thorcut.dev.scale up|down|status``: the scale-out topology from the command line.

    python -m thorcut.dev.scale up --hosts 3 --port 8600   # make scale
    python -m thorcut.dev.scale status [--json]
    python -m thorcut.dev.scale down                       # make scale-down

Exit codes as thorcut's (``thorcut.errors.ExitCode``): 2 for a missing package, a clash or a busy
port, 4 when a part did not come up (everything made is removed again).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from thorcut.dev.backend import DEMO_ACCOUNT, DEMO_PASSWORD, DEMO_USER
from thorcut.dev.scale import files, live, net
from thorcut.dev.scale.lifecycle import DEFAULT_PORT, down, up
from thorcut.errors import ExitCode, ThorcutError, UsageError


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _where(state: dict[str, Any], address: tuple[str, int] | None) -> str:
    if address is None:
        return "unknown (no Sentinel answers)"
    return f"{live.host_of(state, address[0])} ({address[0]}:{address[1]}), as the Sentinels say"


def render(state: dict[str, Any], token: str | None = None) -> str:
    """What runs where, asked live (roles, leader, primary), and the URLs to use."""
    rows = live.describe(state)
    netns = {h["name"]: h["netns"] for h in state["hosts"]}
    table = [["host", "namespace", "address", "process", "port", "pid", "role"]]
    last = None
    for row in sorted(rows, key=lambda r: (r["host"] == "root", r["host"], r["role"] != "web")):
        first = row["host"] != last
        last = row["host"]
        table.append([row["host"] if first else "", netns.get(row["host"], "(root)") if first else "",
                      row["address"] if first else "", row["name"], str(row["port"] or "-"), str(row["pid"]),
                      row["live_role"]])  # fmt: skip
    primary = live.primary_address(state)
    front = live.haproxy_url(state)
    if state["direct_redis"]:
        via = f"            (the hosts use {state['redis_url']}, the first primary, directly: --direct-redis)"
    else:
        via = "            (the hosts' processes use it too)"
    lines = [
        f"Scale-out topology: {len(state['hosts'])} hosts on bridge {state['bridge']['name']} "
        f"({state['bridge']['address']}, {state['bridge']['subnet']}); state in {state['dir']}/{files.STATE_FILE}",
        "",
        *_table(table),
        "",
        f"Redis primary now: {_where(state, primary)}",
        f"Job runner leading: {live.leader(state) or 'none'}",
        "",
        f"HTTP:       {front}/   (also http://{state['bridge']['address']}:{state['haproxy']['port']}/)",
        f"WebSocket:  {live.haproxy_url(state, 'ws')}/ws/stream/",
        f"Stats:      {live.stats_url(state)}",
        f"Redis:      THORCUT_REDIS_URL={state['sentinel_url']} THORCUT_PREFIX={state['prefix']}",
        via,
        f"Login:      {DEMO_USER} / {DEMO_PASSWORD} (account {DEMO_ACCOUNT})",
    ]
    if token:
        lines.append(f"API token:  {token}   (shown once; not kept)")
    lines += [f"Logs:       {state['logs']}/", "Stop:       make scale-down"]
    return "\n".join(lines)


@contextmanager
def _stops_as_ctrl_c() -> Iterator[None]:
    """While ``up`` starts things, SIGTERM and SIGHUP act as Ctrl-C, so its clean-up runs for them too."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    saved = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _progress(line: str) -> None:
    print(f"- {line}", file=sys.stderr, flush=True)


def _json(state: dict[str, Any]) -> str:
    return json.dumps({**state, "processes": live.describe(state)})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m thorcut.dev.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=files.DEFAULT_DIR, help="its folder (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="bring the topology up and print what runs where")
    start.add_argument("--hosts", type=int, default=3, help=f"hosts, 2 to {net.MAX_HOSTS} (default: %(default)s)")
    start.add_argument("--port", type=int, default=DEFAULT_PORT, help="HAProxy's port (default: %(default)s)")
    start.add_argument("--direct-redis", action="store_true",
                       help="processes use redis://<primary>:6379/0, not the Sentinels (to compare)")  # fmt: skip
    start.add_argument("--tick", type=float, default=1.0, help="heartbeat seconds (default: %(default)s)")
    start.add_argument("--prefix", default="thorcut", help="THORCUT_PREFIX (default: %(default)s)")
    start.add_argument("--json", action="store_true", help="print the state as JSON")
    status = sub.add_parser("status", help="print what runs where, asked live")
    status.add_argument("--json", action="store_true", help="as JSON")
    sub.add_parser("down", help="stop every process and remove every namespace, veth and bridge")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            with _stops_as_ctrl_c():
                state = up(args.dir, hosts=args.hosts, port=args.port, direct_redis=args.direct_redis,
                           tick=args.tick, prefix=args.prefix, note=_progress)  # fmt: skip
            print(_json(state) if args.json else render(state, state.get("token")))
        elif args.command == "status":
            found = files.read(args.dir.resolve())
            if found is None:
                raise UsageError(f"no topology is up (no {args.dir / files.STATE_FILE}): `make scale` starts one")
            print(_json(found) if args.json else render(found))
        else:
            removed = down(args.dir)
            print(f"removed {', '.join(removed)}" if removed else "nothing of the topology was running")
    except KeyboardInterrupt:
        print("Error: interrupted (everything started was stopped)", file=sys.stderr)
        return 130
    except ThorcutError as exc:
        print(f"Error: {exc}", *getattr(exc, "__notes__", ()), sep="\n", file=sys.stderr)
        return int(exc.exit_code)
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
