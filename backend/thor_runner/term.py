"""A leader term's fencing token applied to everything the runner does in that term.

Each job runs with the term bound to the heartbeat thread, so its transaction checks that term
(``thor_trading.fence``); once the term is fenced nothing more reaches the broadcaster; and the
heartbeat's own ``seq`` comes from a database counter under the same check.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from global_markets.services.websocket_broadcast import Broadcaster
from thor_runner.heartbeat import Job
from thor_trading import fence
from thor_trading.models import SeqCounter


class TermJob:
    """A job run with its leader term bound as the heartbeat thread's fencing token."""

    def __init__(self, job: Job, term: fence.Term) -> None:
        self.job = job
        self.term = term
        self.name = job.name
        self.feature = job.feature
        self.every = job.every

    def run(self, tick: int) -> list[dict[str, Any]]:
        with fence.bound(self.term):
            return self.job.run(tick)

    def __repr__(self) -> str:
        return f"<{self.name} every {self.every}, term {self.term.number}>"


class TermSubmitter:
    """The term's way to the broadcaster: once the term is fenced nothing more goes out.

    (After a fenced job the heartbeat may still send its envelope with a local seq count, the
    fallback for a failed seq counter; a runner that has been replaced must not.)
    """

    def __init__(self, broadcaster: Broadcaster, term: fence.Term) -> None:
        self.broadcaster = broadcaster
        self.term = term
        self.fenced_drops = 0

    def submit(self, message: dict[str, Any]) -> bool:
        if self.term.fenced.is_set():
            self.fenced_drops += 1
            return False
        return self.broadcaster.submit(message)


def heartbeat_seq(term: fence.Term | None = None) -> int:
    """Next heartbeat ``seq`` from the database, so it never restarts when the leader changes.

    Fenced like the jobs when ``term`` is given.
    """
    with fence.bound(term), transaction.atomic():
        fence.check()
        return SeqCounter.bump("heartbeat", "")
