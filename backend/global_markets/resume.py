"""Answering a resume: the missed envelopes from the stream history, else the current state marked resync.

docs/contracts.md, "Resuming a stream". For each stream a client may see (the streams of its
subscribed features: its own accounts' for account types, every symbol's and market's that exists
in the database), with ``c`` the current ``seq`` (the database's seq counter) and ``s`` the
client's:

- ``s >= c``: nothing;
- ``s < c``, at most ``THOR_RESUME_REPLAY_MAX`` behind, and the history
  (:mod:`global_markets.services.stream_history`) holds every envelope ``s + 1 .. c``: those
  texts, exactly as they were pushed (*replayed*);
- otherwise, or when the client did not name the stream: the envelope REST would answer now
  (:func:`thor_trading.messages.current_message`) with ``"resync": true`` (*resynced*).

A stream named in ``since`` that the client may not see is never looked at: the answer is built
from the database's streams, filtered by what the client may see, and only then matched against
``since``, so another account's key, a key that does not exist and a feature not subscribed to
are all alike (and no client text reaches the database or Redis).

The answer fits the client's send queue (``room``): when replays would not fit, the longest become
resyncs (one message each) until they do.

Requests made in the same turn of the event loop (every client of a worker when its path heals,
many clients reconnecting at once) are answered together: one read of the seq counters, one Redis
pipeline, and one build (and JSON encoding) per stream to resync, shared by all of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist

from global_markets.services import redis_health, stream_history
from thor_trading import messages
from thor_trading.features import ACCOUNT_TYPES, TYPE_FEATURE
from thor_trading.models import SeqCounter

log = logging.getLogger("global_markets.resume")

Stream = tuple[str, str]
#: Longest wait for the history read; a Redis that does not answer makes every stream a resync.
HISTORY_TIMEOUT = 1.0
_TYPE_ORDER = {t: i for i, t in enumerate(TYPE_FEATURE)}


@dataclass
class Request:
    """What one consumer asks: which streams it may see, and the ``seq`` it holds of each."""

    types: frozenset[str]  # the message types of its subscribed features
    accounts: frozenset[str]  # its own accounts
    since: dict[Stream, int]
    named_only: bool = False  # a heal: only the streams in ``since`` (those the worker sent it)
    room: Callable[[], int] = lambda: 1 << 30  # free places in its send queue, asked when planning


@dataclass
class Answer:
    messages: list[tuple[str, str]] = field(default_factory=list)  # (type, JSON text), in order
    sent: dict[Stream, int] = field(default_factory=dict)  # the highest seq sent per stream
    replayed: int = 0
    resynced: int = 0


# -- batching --------------------------------------------------------------------------------

_pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[tuple[Request, asyncio.Future[Answer]]]] = (
    weakref.WeakKeyDictionary()
)
_tasks: set[asyncio.Task[None]] = set()


async def answer(request: Request) -> Answer:
    """Answer ``request``, together with every other request made in this turn of the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Answer] = loop.create_future()
    pending = _pending.get(loop)
    if pending is None:
        pending = _pending[loop] = []
        task = loop.create_task(_answer_batch(loop))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    pending.append((request, future))
    return await future


async def _answer_batch(loop: asyncio.AbstractEventLoop) -> None:
    await asyncio.sleep(0)  # the requests of this turn join the batch
    batch = _pending.pop(loop, [])
    try:
        answers = await answer_all([request for request, _ in batch])
    except Exception as exc:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)
        return
    except BaseException:  # cancelled (the loop is closing): so are the requests
        for _, future in batch:
            future.cancel()
        raise
    for (_, future), result in zip(batch, answers, strict=True):
        if not future.done():  # its consumer may have gone meanwhile
            future.set_result(result)


# -- the answer ------------------------------------------------------------------------------


def _visible(stream: Stream, request: Request) -> bool:
    type_, key = stream
    return type_ in request.types and (type_ not in ACCOUNT_TYPES or key in request.accounts)


async def answer_all(requests: list[Request]) -> list[Answer]:
    """Answer every request from one read of the database and one of the history."""
    types = frozenset().union(*(r.types for r in requests))
    accounts = frozenset().union(*(r.accounts for r in requests if r.types & ACCOUNT_TYPES))
    current = await database_sync_to_async(_current_seqs)(types, accounts)
    streams = sorted(current, key=lambda st: (_TYPE_ORDER.get(st[0], 99), st[1]))
    replay_max = max(0, int(settings.THOR_RESUME_REPLAY_MAX))

    # Per request: the streams to answer, with the client's seq (None: not named) and the current one.
    wanted: list[list[tuple[Stream, int | None, int]]] = []
    ranges: dict[Stream, tuple[int, int]] = {}
    for request in requests:
        items = []
        for stream in streams:
            if not _visible(stream, request) or (request.named_only and stream not in request.since):
                continue
            c, s = current[stream], request.since.get(stream)
            if s is not None and s >= c:
                continue
            items.append((stream, s, c))
            if s is not None and c - s <= replay_max:
                lo = min(s + 1, ranges.get(stream, (s + 1, c))[0])
                ranges[stream] = (lo, c)
        wanted.append(items)

    history = await _read_history(ranges)

    plans: list[list[tuple[Stream, list[str] | None, int]]] = []
    to_build: set[Stream] = set()
    for request, items in zip(requests, wanted, strict=True):
        plan: list[tuple[Stream, list[str] | None, int]] = []
        for stream, s, c in items:
            kept = history.get(stream)
            texts = None
            if s is not None and kept is not None and c - s <= replay_max:
                seqs = range(s + 1, c + 1)
                if all(q in kept for q in seqs):
                    texts = [kept[q] for q in seqs]
            plan.append((stream, texts, c))
        _fit(plan, request.room())
        to_build.update(stream for stream, texts, _ in plan if texts is None)
        plans.append(plan)

    built = await database_sync_to_async(_build)(sorted(to_build)) if to_build else {}

    answers = []
    for plan in plans:
        out = Answer()
        for stream, texts, c in plan:
            if texts is not None:
                out.messages += [(stream[0], text) for text in texts]
                out.sent[stream] = c
                out.replayed += len(texts)
            elif stream in built:
                seq, text = built[stream]
                out.messages.append((stream[0], text))
                out.sent[stream] = seq
                out.resynced += 1
        answers.append(out)
    return answers


def _fit(plan: list[tuple[Stream, list[str] | None, int]], room: int) -> None:
    """Turn the longest replays into resyncs until the answer (and its ``resumed``) fits ``room``."""
    total = sum(len(texts) if texts is not None else 1 for _, texts, _ in plan) + 1
    while total > room:
        longest = max(
            (i for i, (_, texts, _) in enumerate(plan) if texts is not None and len(texts) > 1),
            key=lambda i: len(plan[i][1] or ()),
            default=None,
        )
        if longest is None:
            return  # one message per stream already: the sender waits for room instead
        stream, texts, c = plan[longest]
        total -= len(texts or ()) - 1
        plan[longest] = (stream, None, c)


async def _read_history(ranges: dict[Stream, tuple[int, int]]) -> dict[Stream, dict[int, str]]:
    if not ranges:
        return {}
    client = stream_history.client(timeout=HISTORY_TIMEOUT)
    try:
        return await stream_history.read(client, ranges, HISTORY_TIMEOUT)
    except Exception as exc:  # Redis away or frozen: the database answers every stream (resync)
        if not redis_health.failed(exc):
            log.warning("reading the stream history failed (%s: %s); answering with resyncs", type(exc).__name__, exc)
        return {}
    finally:
        try:
            await client.aclose()
        except Exception as exc:  # the connection was already broken
            log.debug("closing the history client: %s", type(exc).__name__)


def _current_seqs(types: frozenset[str], accounts: frozenset[str]) -> dict[Stream, int]:
    """The seq counter of every stream of ``types`` (account types: only of ``accounts``)."""
    from django.db.models import Q

    market = sorted(t for t in types if t not in ACCOUNT_TYPES)
    account = sorted(t for t in types if t in ACCOUNT_TYPES)
    query = Q(type__in=market) if market else None
    if account and accounts:
        own = Q(type__in=account, key__in=sorted(accounts))
        query = own if query is None else query | own
    if query is None:
        return {}
    rows = SeqCounter.objects.filter(query).values_list("type", "key", "seq")
    return {(type_, key): int(seq) for type_, key, seq in rows}


def _build(streams: list[Stream]) -> dict[Stream, tuple[int, str]]:
    """The current envelope of each stream, marked ``resync``, as (seq, JSON text); none for a stream without state."""
    out: dict[Stream, tuple[int, str]] = {}
    for type_, key in streams:
        try:
            envelope: dict[str, Any] = messages.current_message(type_, key)
        except ObjectDoesNotExist:
            continue
        out[type_, key] = (int(envelope["seq"]), json.dumps({**envelope, "resync": True}, separators=(",", ":")))
    return out
