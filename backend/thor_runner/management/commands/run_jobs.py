"""``manage.py run_jobs [--tick S] [--ttl S] [--stats-file PATH]``: run the jobs whenever this process is the leader.

Start as many as you like (one per host for failover); the Redis leader lock lets exactly one run
the jobs, and the database term fences a replaced leader (``thor_trading.fence``). SIGTERM or
SIGINT stops cleanly: the heartbeat finishes its tick, the broadcaster gets a moment to send what
is queued, and the lock is released so a standby takes over at once.

``--stats-file PATH`` writes the runner's status as JSON every ``--stats-every`` seconds (default
1): whether it leads and in which term, the heartbeat's stats (ticks, skipped, lateness, job runs
and errors), the broadcaster's (sent, dropped, failed) and the lock renewer's. The file is
replaced atomically, so a reader never sees half of it. It is written from the main thread, which
touches neither Redis nor the database, so it keeps coming while either is unreachable.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from thor_runner.leader import DEFAULT_TTL
from thor_runner.runner import run_job_runner
from thor_runner.status import RunnerStatus


def write_stats(path: Path, status: RunnerStatus) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status.snapshot(), default=str))
    os.replace(tmp, path)


class Command(BaseCommand):
    help = "Run the heartbeat jobs while holding the Redis leader lock (until SIGTERM/SIGINT)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tick", type=float, default=None, help="heartbeat seconds (default THOR_TICK)")
        parser.add_argument("--ttl", type=float, default=DEFAULT_TTL, help=f"lock TTL seconds (default {DEFAULT_TTL})")
        parser.add_argument("--stats-file", type=Path, default=None, help="write the runner's status JSON here")
        parser.add_argument("--stats-every", type=float, default=1.0, help="seconds between stats writes (default 1)")

    def handle(self, *args: Any, **opts: Any) -> None:
        tick = settings.THOR_TICK if opts["tick"] is None else opts["tick"]
        ttl = opts["ttl"]
        stats_file: Path | None = opts["stats_file"]
        every = opts["stats_every"]
        if tick < 0.01:
            raise CommandError("--tick must be at least 0.01 s")
        if ttl < 0.3:
            raise CommandError("--ttl must be at least 0.3 s")
        if every < 0.05:
            raise CommandError("--stats-every must be at least 0.05 s")
        stop = threading.Event()
        status = RunnerStatus()
        # The runner lives in its own thread; the main thread only waits, writes the stats and
        # takes the signals, so a handler never runs while the runner's thread holds the event's
        # internal lock.
        runner = threading.Thread(
            target=run_job_runner,
            kwargs={"tick": tick, "ttl": ttl, "stop_event": stop, "status": status},
            name="thor-job-runner",
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(f"run_jobs: tick {tick}s, lock ttl {ttl}s; waiting for the leader lock")
        self.stdout.flush()
        next_stats = time.monotonic()
        try:
            runner.start()
            while runner.is_alive():
                if stats_file is not None and time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + every
                    with contextlib.suppress(OSError):
                        write_stats(stats_file, status)
                runner.join(min(0.2, every))
        finally:
            stop.set()
            runner.join(15)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if stats_file is not None:
                with contextlib.suppress(OSError):
                    write_stats(stats_file, status)
        self.stdout.write("run_jobs: stopped")
