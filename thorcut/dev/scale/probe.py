"""A WebSocket client of the topology, for the benchmark and the tests: it follows every feature
through HAProxy in a thread of its own, resumes by ``seq`` on every (re)connect, and records what
a fault did to it: when envelopes last arrived, when each ``resumed`` came, how many times it
reconnected, and any unmarked ``seq`` jump (a gap) or version seen twice.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from thorcut.dev.scale.live import haproxy_url


class Probe:
    """``with Probe(state) as p:`` … ``p.last_envelope``, ``p.resumes``, ``p.gaps``."""

    def __init__(self, state: dict[str, Any], *, features: str | None = None) -> None:
        self.url = haproxy_url(state, "ws") + "/ws/stream/" + (f"?features={features}" if features is not None else "")
        self.headers = {"Authorization": f"Bearer {state['token']}", "Origin": haproxy_url(state)}
        self.held: dict[tuple[str, str], int] = {}
        self.last_envelope = 0.0  # time.time() of the newest envelope
        self.resumes: list[float] = []  # time.time() of each ``resumed`` answering this client's resume
        self.connects = 0
        self.gaps = 0  # a seq jump not marked resync
        self.repeats = 0  # a version seen again after a newer one
        self.flags: dict[int, float] = {}  # version of ``watch_flag`` -> first arrival
        self.watch_flag = ""
        #: While a resume is unanswered: per stream, the seq held before it, the seqs seen, marked.
        self._pending: dict[tuple[str, str], tuple[int | None, set[int], list[bool]]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def take(self, msg: dict[str, Any]) -> None:
        """Judge one message (public for tests of the probe itself).

        Between a connect and its ``resumed``, a live push may overtake the replay: each stream's
        envelopes are judged together when the answer comes, as the resume contract orders them.
        """
        kind = msg.get("type")
        if kind == "resumed":
            if not msg.get("healed"):
                self.resumes.append(time.time())
                self._answered()
            return
        if kind == "flags" and self.watch_flag:
            version = msg.get("features", {}).get(self.watch_flag, {}).get("version")
            if isinstance(version, int):
                self.flags.setdefault(version, time.time())
            return
        seq = msg.get("seq")
        if not msg.get("feature") or not isinstance(seq, int) or kind == "heartbeat":
            return
        stream = (str(kind), str(msg.get("key")))
        last = self.held.get(stream)
        self.last_envelope = time.time()
        if self._pending is not None:
            _, seen, marked = self._pending.setdefault(stream, (last, set(), [False]))
            seen.add(seq)
            marked[0] = marked[0] or bool(msg.get("resync"))
        else:
            if last is not None and seq > last + 1 and not msg.get("resync"):
                self.gaps += 1
            if last is not None and seq <= last:
                self.repeats += 1
        self.held[stream] = max(seq, last if last is not None else seq)

    def _answered(self) -> None:
        for old, seen, marked in (self._pending or {}).values():
            if old is None:
                continue
            if not marked[0] and any(q not in seen for q in range(old + 1, max(seen))):
                self.gaps += 1
            self.repeats += sum(1 for q in seen if q <= old)
        self._pending = None

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        while not self._stop.is_set():
            try:
                async with connect(self.url, additional_headers=self.headers, open_timeout=5, compression=None) as ws:
                    self.connects += 1
                    self._pending = {}
                    since = [{"type": t, "key": k, "seq": s} for (t, k), s in self.held.items()]
                    await ws.send(json.dumps({"action": "resume", "since": since}))
                    while not self._stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.25)
                        except TimeoutError:
                            continue
                        msg = json.loads(raw)
                        if isinstance(msg, dict):
                            self.take(msg)
            except Exception:  # the host went away, HAProxy refused while checking: connect again
                await asyncio.sleep(0.1)
