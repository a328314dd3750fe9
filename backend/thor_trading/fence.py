"""Fencing tokens for the job runner: the leader term, kept in the database.

The Redis leader lock (``thor_runner.leader``) decides who *should* run the jobs. It cannot,
on its own, stop a runner that has been replaced without knowing it: one that cannot reach Redis
(down, frozen, partitioned away) while its key expires and another runner takes it. The database
decides who *can* write, with one row, ``LeaderTerm(id=1)``:

* a runner that takes the lock starts a term (:func:`start_term`): in one transaction
  ``term += 1`` and ``holder = <its lock token>``. The new number is its fencing token;
* every job transaction begins with :func:`check` (``jobs.bump_many`` calls it, and so does the
  heartbeat's seq counter): ``UPDATE ... SET term = term WHERE id = 1 AND term = <my term>``. No
  row updated means a later term has started: :class:`Fenced` is raised and the transaction rolls
  back, so nothing of it is written, and the runner ends its term.

The check locks the row for the rest of the job transaction, and a term start must update the
same row, so the two are ordered by the database: a transaction of the old term either commits
before the new term starts, or fails its check. The new leader resumes its simulation from the
database only after its term has started, so it sees every write of the old leader, and no write
of the old leader comes after the new leader's first: no ``seq`` is produced twice, and no stale
state overwrites newer state. That is what lets a leader run its jobs on through a Redis outage:
while Redis cannot be reached nobody else can take the lock, and if the key expires meanwhile and
someone does, its term fences the old leader at the old leader's next job.

Why an ``UPDATE`` and not ``SELECT ... FOR UPDATE``: on PostgreSQL both lock the row, but on
SQLite ``select_for_update`` is a plain read, and a transaction that reads first and writes later
fails at once with ``SQLITE_BUSY_SNAPSHOT`` (no busy timeout) if another connection committed in
between. Writing first takes SQLite's write lock straight away (waiting under the busy timeout).

The term is bound per thread (:func:`bound`): the runner binds it around each job it runs, so a
job of an old term still stuck in its thread checks against *its* term, not a later one of the
same process. Code that runs jobs with no term bound (tests, ``thor_seed``) is not fenced.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from thor_trading.models import LeaderTerm

log = logging.getLogger("thor.jobs")

ROW = 1

_local = threading.local()


class Fenced(Exception):
    """A later leader term has started: this runner must not write (its transaction rolled back)."""


@dataclass
class Term:
    """One runner's leader term: its fencing token ``number``, and whether it has been fenced."""

    number: int
    holder: str
    fenced: threading.Event = field(default_factory=threading.Event, repr=False)
    reason: str = ""

    def fence(self, reason: str) -> None:
        if not self.fenced.is_set():
            self.reason = reason
            self.fenced.set()
            log.warning("leader term %d fenced: %s", self.number, reason)


def start_term(holder: str) -> Term:
    """Start the next term for ``holder`` (the lock token) and return it; every older term is fenced.

    On PostgreSQL this waits for an old leader's job transaction in flight (it holds the row).
    """
    with transaction.atomic():
        # Update first (see the module docstring); the row is made by migration 0002, created
        # here only if someone deleted it.
        if not LeaderTerm.objects.filter(pk=ROW).update(term=F("term") + 1, holder=holder, since=timezone.now()):
            try:
                with transaction.atomic():  # a savepoint: a racing insert leaves this transaction usable
                    LeaderTerm.objects.create(pk=ROW, term=1, holder=holder, since=timezone.now())
            except IntegrityError:
                LeaderTerm.objects.filter(pk=ROW).update(term=F("term") + 1, holder=holder, since=timezone.now())
        number = LeaderTerm.objects.values_list("term", flat=True).get(pk=ROW)
    return Term(int(number), holder)


def current_term() -> tuple[int, str] | None:
    """The database's current (term, holder), or None if no term row exists."""
    row = LeaderTerm.objects.filter(pk=ROW).values_list("term", "holder").first()
    return (int(row[0]), str(row[1])) if row else None


@contextlib.contextmanager
def bound(term: Term | None) -> Iterator[None]:
    """Run the block with ``term`` as this thread's fencing token (None: unfenced)."""
    previous = getattr(_local, "term", None)
    _local.term = term
    try:
        yield
    finally:
        _local.term = previous


def current() -> Term | None:
    """This thread's bound term, if any."""
    return getattr(_local, "term", None)


def check() -> None:
    """First statement of a job transaction: raise :class:`Fenced` unless this thread's term is current.

    Does nothing when no term is bound. Inside the transaction, the row stays locked until it ends.
    """
    term = current()
    if term is None:
        return
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("check the fence inside the job's transaction")
    if term.fenced.is_set():
        raise Fenced(term.reason)
    if LeaderTerm.objects.filter(pk=ROW, term=term.number).update(term=F("term")) == 1:
        return
    now = current_term()
    reason = f"term {term.number} superseded by " + (f"term {now[0]} ({now[1]})" if now else "no term row")
    term.fence(reason)
    raise Fenced(reason)
