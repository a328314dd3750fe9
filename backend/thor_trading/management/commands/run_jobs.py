"""``manage.py run_jobs [--tick S] [--ttl S]``: run the jobs whenever this process is the leader.

Start as many as you like (one per host for failover); the Redis leader lock lets exactly one run
the jobs. SIGTERM or SIGINT stops cleanly: the heartbeat finishes its tick, the broadcaster gets
a moment to send what is queued, and the lock is released so a standby takes over at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from thor_trading.services.stack_start import DEFAULT_TTL, run_job_runner


class Command(BaseCommand):
    help = "Run the heartbeat jobs while holding the Redis leader lock (until SIGTERM/SIGINT)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tick", type=float, default=None, help="heartbeat seconds (default THOR_TICK)")
        parser.add_argument("--ttl", type=float, default=DEFAULT_TTL, help=f"lock TTL seconds (default {DEFAULT_TTL})")

    def handle(self, *args: Any, **opts: Any) -> None:
        tick = settings.THOR_TICK if opts["tick"] is None else opts["tick"]
        ttl = opts["ttl"]
        if tick < 0.01:
            raise CommandError("--tick must be at least 0.01 s")
        if ttl < 0.3:
            raise CommandError("--ttl must be at least 0.3 s")
        stop = threading.Event()
        # The runner lives in its own thread; the main thread only waits and takes the signals,
        # so a handler never runs while the runner's thread holds the event's internal lock.
        runner = threading.Thread(
            target=run_job_runner, kwargs={"tick": tick, "ttl": ttl, "stop_event": stop}, name="thor-job-runner"
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(f"run_jobs: tick {tick}s, lock ttl {ttl}s; waiting for the leader lock")
        self.stdout.flush()
        try:
            runner.start()
            while runner.is_alive():
                runner.join(0.2)
        finally:
            stop.set()
            runner.join(15)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("run_jobs: stopped")
