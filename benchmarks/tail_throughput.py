"""Benchmark: sustained messages/s of ``thorcut tail --json`` against ``wscat`` on the same stream.

A server in a separate process (this script with ``--serve``) streams N envelopes, ``seq`` 1..N,
to each connection as fast as TCP back-pressure allows, then closes with 1000. The handshake is
the ``websockets`` library's; the data are frames encoded once at start-up and written straight to
the socket, so the server is never what is measured (its ceiling is in the table: a Python
``websockets`` client that only writes each frame's text).

Clients, alternating in one loop after a warm-up round, each writing stdout to a file:

* ``thorcut``: ``python -m thorcut tail --json --count N --url …`` (NDJSON, one line per frame);
* ``wscat``: ``wscat -c URL`` (npm ``wscat``; installed into a temporary folder with
  ``npm install --prefix`` when not on PATH). Not a TTY, so it writes each message and a newline;
* ``websockets floor``: a bare Python loop ``recv()`` → ``write`` (no parsing, no checks).

Time = from the server's first data byte to the moment the client's file holds N lines (polled
every millisecond), so process start-up and exit are not counted. No loss: every run must yield
exactly N lines whose ``seq`` are 1..N in order, or the script fails.

    .venv/bin/python benchmarks/tail_throughput.py [--messages 100000] [--runs 3] [--sizes small,positions]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from _common import machine_info, print_machine, table

from thorcut.dev.stack import free_port

FLOOR_CLIENT = """
import asyncio, sys
from websockets.asyncio.client import connect
async def main(url, n):
    write = sys.stdout.write
    async with connect(url, compression=None, max_size=None) as ws:
        for _ in range(n):
            write(await ws.recv())
            write("\\n")
    sys.stdout.flush()
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def envelope(seq: int, size: str) -> str:
    """One message like the reference backend's: a balance (~320 B) or six positions (~880 B)."""
    if size == "small":
        data: dict[str, Any] = {"account": "DU1234", "currency": "USD", "cash": 100000.0 + seq, "equity": 100250.5,
                                "unrealized_pnl": 250.5, "realized_pnl": -12.25, "margin_used": 5400.0,
                                "buying_power": 380000.0, "as_of": "2026-11-24T14:30:00.123Z"}  # fmt: skip
        type_ = "account_balance"
    else:
        held = [("CL", 3), ("ES", 2), ("GC", -1), ("NQ", 1), ("RTY", 4), ("YM", -2)]
        rows = [
            {"symbol": s, "quantity": q, "avg_price": 4500.25 + i, "last_price": 4510.5 + i + seq % 7,
             "market_value": 225525.0 + i, "unrealized_pnl": 512.5 - i}
            for i, (s, q) in enumerate(held)
        ]  # fmt: skip
        data = {"account": "DU1234", "positions": rows, "as_of": "2026-11-24T14:30:00.123Z"}
        type_ = "positions"
    msg = {"type": type_, "feature": type_, "key": "DU1234", "seq": seq, "ts": "2026-11-24T14:30:00.123Z", "data": data}
    return json.dumps(msg, separators=(",", ":"))


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (server to client, RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    if n < 65536:
        return bytes([0x81, 126]) + struct.pack("!H", n) + payload
    return bytes([0x81, 127]) + struct.pack("!Q", n) + payload


# -- the server process --------------------------------------------------------------------------------


def serve(port: int, messages: int, size: str) -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve

    chunks: list[bytes] = []
    block: list[bytes] = []
    for seq in range(1, messages + 1):
        block.append(text_frame(envelope(seq, size).encode()))
        if len(block) == 256:
            chunks.append(b"".join(block))
            block = []
    if block:
        chunks.append(b"".join(block))

    async def handler(ws: ServerConnection) -> None:
        transport = ws.transport
        print(f"start {time.monotonic()}", flush=True)  # one system-wide clock on Linux
        for chunk in chunks:
            transport.write(chunk)
            await ws.drain()  # TCP back-pressure: wait while the client is behind
        await ws.close()

    async def main() -> None:
        async with ws_serve(handler, "127.0.0.1", port, compression=None, write_limit=1 << 20, max_size=None):
            print("ready", flush=True)
            await asyncio.Future()

    asyncio.run(main())


# -- the driver ----------------------------------------------------------------------------------------------


def find_wscat(folder: Path) -> list[str]:
    """Return the wscat command: from PATH, else installed with npm into ``folder``."""
    found = shutil.which("wscat")
    if found:
        return [found]
    local = folder / "node_modules" / ".bin" / "wscat"
    if not local.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("wscat is not on PATH and npm is not installed")
        print(f"installing wscat into {folder} (npm install --prefix)", file=sys.stderr)
        subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "wscat"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    return [str(local)]


def wscat_version(cmd: list[str]) -> str:
    try:
        return subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


class Server:
    """The ``--serve`` child; :meth:`started` returns the monotonic time of a connection's first byte."""

    def __init__(self, messages: int, size: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), "--messages", str(messages), "--sizes", size],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        if self.lines.get(timeout=120) != "ready":
            raise RuntimeError("server did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def started(self) -> float:
        line = self.lines.get(timeout=60)
        kind, value = line.split()
        assert kind == "start", line
        return float(value)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def wait_lines(path: Path, n: int, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Return the monotonic time at which ``path`` first held ``n`` newline-terminated lines."""
    count, deadline = 0, time.monotonic() + timeout
    with path.open("rb") as f:
        while True:
            data = f.read()
            if data:
                count += data.count(b"\n")
                if count >= n:
                    return time.monotonic()
            elif proc.poll() is not None:
                raise RuntimeError(f"client exited ({proc.returncode}) after {count} of {n} lines")
            elif time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {count} of {n} lines")
            else:
                time.sleep(0.001)


def check(path: Path, n: int, client: str) -> None:
    """Fail unless the file holds exactly ``n`` lines with seq 1..n in order (no loss, no reorder)."""
    seqs = []
    with path.open("rb") as f:
        for line in f:
            doc = json.loads(line)
            seqs.append((doc["msg"] if client == "thorcut" else doc)["seq"])
    if seqs != list(range(1, n + 1)):
        lost = n - len(set(seqs))
        raise RuntimeError(f"{client}: {len(seqs)} lines, {lost} seqs missing or out of order")


def run_once(client: str, cmd: list[str], server: Server, n: int, folder: Path, env: dict[str, str]) -> float:
    """Run one client to N lines; return messages per second."""
    out = folder / f"{client.replace(' ', '_')}.out"
    with out.open("wb") as sink:
        stdin: int | IO[bytes] = subprocess.PIPE if client == "wscat" else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.PIPE, stdin=stdin, cwd=folder, env=env)
    try:
        t0 = server.started()
        t1 = wait_lines(out, n, proc, timeout=600)
        proc.wait(60)  # thorcut: --count N; wscat and the floor: the server's close
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdin:
            proc.stdin.close()
        errors = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{client} exited {proc.returncode}: {errors[-1000:]}")
    check(out, n, client)
    out.unlink()
    return n / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages per run (100000)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per client and size (3)")
    parser.add_argument("--sizes", default="small,positions", help="message sizes: small (~320 B), positions (~880 B)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.messages, args.sizes)
        return

    info = machine_info()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THORCUT_", "NO_COLOR", "FORCE_COLOR"))}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="thorcut-bench-tail-") as tmp:
        folder = Path(tmp)
        wscat = find_wscat(Path(tempfile.gettempdir()) / "thorcut-bench-wscat")
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        for size in args.sizes.split(","):
            server = Server(args.messages, size)
            n = args.messages
            clients = {
                "thorcut": [sys.executable, "-m", "thorcut", "tail", "--json", "--count", str(n), "--url", server.url,
                            "--duration", "600"],
                "wscat": [*wscat, "-c", server.url],
                "websockets floor": [sys.executable, "-c", FLOOR_CLIENT, server.url, str(n)],
            }  # fmt: skip
            rates: dict[str, list[float]] = {c: [] for c in clients}
            try:
                for round_ in range(args.runs + 1):  # round 0 warms caches and is not counted
                    for client, cmd in clients.items():
                        rate = run_once(client, cmd, server, n, folder, env)
                        if round_:
                            rates[client].append(rate)
                        print(f"{size} {client} round {round_}: {rate:,.0f} msgs/s", file=sys.stderr)
            finally:
                server.stop()
            results[size] = {
                "bytes_per_message": len(envelope(n // 2, size)),
                **{c: {"median_msgs_per_s": round(statistics.median(r)), "runs": [round(x) for x in r]}
                   for c, r in rates.items()},
            }  # fmt: skip
            results[size]["ratio_thorcut_to_wscat"] = round(
                results[size]["thorcut"]["median_msgs_per_s"] / results[size]["wscat"]["median_msgs_per_s"], 3
            )

    print_machine(info)
    print(
        f"wscat {wscat_version(wscat)} on node {node}; {args.messages:,} messages per run, median of {args.runs} runs"
    )
    rows = []
    for size, r in results.items():
        for client in ("thorcut", "wscat", "websockets floor"):
            rate = r[client]["median_msgs_per_s"]
            rows.append([f"{size} ({r['bytes_per_message']} B)  {client}", f"{rate:,}",
                         f"{rate * r['bytes_per_message'] / 1e6:.1f}",
                         f"{rate / r['wscat']['median_msgs_per_s']:.2f}x"])  # fmt: skip
    print(table(["stream  client", "msgs/s", "MB/s", "vs wscat"], rows))
    print("no loss: every run yielded exactly N lines with seq 1..N in order")
    print(
        json.dumps(
            {
                "benchmark": "tail_throughput",
                "machine": info,
                "settings": {"messages": args.messages, "runs": args.runs, "sizes": args.sizes.split(",")},
                "wscat": {"version": wscat_version(wscat), "node": node},
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
