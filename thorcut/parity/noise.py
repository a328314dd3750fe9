"""Learning noise: read each sample's REST endpoint twice and report the paths that differ
between two reads of the same version (``diff --learn-noise``), as candidate ignore rules."""

from __future__ import annotations

import contextlib
from typing import Any


def generalise(path: str) -> str:
    """``positions[symbol=ES].as_of`` / ``bars[3].t`` → ``positions[*].as_of`` / ``bars[*].t``."""
    import re

    return re.sub(r"\[[^\]]*\]", "[*]", path)


async def learn_noise(manifest: Any, names: list[str], ws_url: str, rest_base: str, headers: dict[str, str],
                      duration: float, timeout: float) -> dict[str, Any]:  # fmt: skip
    """For each sample, read its REST endpoint twice; where both reads have the same ``seq``, report
    the fields that differ (beyond the feature's current ignore rules) and the manifest lines that
    would ignore them."""
    import asyncio
    from collections import Counter

    import httpx

    from thorcut.compare.engine import Comparator
    from thorcut.compare.locators import as_seq, path_get
    from thorcut.compare.rules import Rules
    from thorcut.compare.shadow import fill_path
    from thorcut.wire.jsonfast import loads
    from thorcut.wire.stream import Notice, StreamClient

    specs = {n: manifest.get(n) for n in names}
    by_type = {t: s for s in specs.values() for t in s.types}
    endpoints = {e.type: e for s in specs.values() for e in s.rest}
    comparators = {n: Comparator(Rules(ignore=s.ignore)) for n, s in specs.items()}
    compared: Counter[str] = Counter()
    different_seq: Counter[str] = Counter()
    paths: dict[str, Counter[str]] = {n: Counter() for n in names}
    busy: set[tuple[str, str]] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def read(client: httpx.AsyncClient, path: str) -> Any:
        try:
            resp = await client.get(path)
            return loads(resp.content) if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    async def twice(client: httpx.AsyncClient, type_: str, key: str) -> None:
        spec = by_type[type_]
        try:
            path = fill_path(endpoints[type_], key)
            first, second = await read(client, path), await read(client, path)
            if first is None or second is None:
                return
            loc = spec.rest_locators
            if as_seq(path_get(first, loc.seq)) != as_seq(path_get(second, loc.seq)):
                different_seq[spec.name] += 1
                return
            compared[spec.name] += 1
            for d in comparators[spec.name].explain(path_get(first, loc.body), path_get(second, loc.body)):
                paths[spec.name][generalise(d.path)] += 1
        finally:
            busy.discard((type_, key))

    async def consume(client: httpx.AsyncClient) -> None:
        async for item in StreamClient(ws_url, headers, open_timeout=timeout).frames():
            if isinstance(item, Notice) or not isinstance(item.msg, dict):
                continue
            type_, spec = item.msg.get("type"), by_type.get(str(item.msg.get("type")))
            key = path_get(item.msg, spec.ws.key) if spec else None
            if spec is None or type_ not in endpoints or not isinstance(key, str | int) or isinstance(key, bool):
                continue
            if (str(type_), str(key)) in busy:
                continue
            busy.add((str(type_), str(key)))
            task = asyncio.create_task(twice(client, str(type_), str(key)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async with httpx.AsyncClient(base_url=rest_base, headers=headers, timeout=timeout) as client:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consume(client), timeout=duration)
        if tasks:
            await asyncio.wait(set(tasks), timeout=timeout * 2 + 1)
    out: dict[str, Any] = {}
    for name in names:
        found = dict(sorted(paths[name].items(), key=lambda kv: (-kv[1], kv[0])))
        ignore = list(dict.fromkeys([*specs[name].ignore, *found]))
        import json

        toml = f"[features.{name}]\nignore = {json.dumps(ignore)}" if found else ""
        out[name] = {"compared": compared[name], "seq_moved": different_seq[name], "paths": found, "toml": toml}
    return out
