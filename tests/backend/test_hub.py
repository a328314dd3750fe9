"""The per-process hub: one subscription per group, every local member served, leave is exact."""

from __future__ import annotations

import asyncio
from typing import Any


class _Member:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

        self.heals = 0

    def deliver(self, event: dict[str, Any]) -> None:
        self.got.append(event)

    def heal(self) -> None:
        self.heals += 1


def _msg(n: int) -> dict[str, Any]:
    return {"type": "vwap", "feature": "intraday", "key": "ES", "seq": n, "ts": "", "data": {"vwap": 1.0 + n}}


async def _until(predicate: Any, timeout: float = 3.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False


def test_hub_joins_a_group_once_and_hands_each_message_to_every_member(thor_env: object) -> None:
    from channels.layers import get_channel_layer

    from global_markets import groups
    from global_markets.hub import hub

    async def scenario() -> None:
        layer = get_channel_layer()
        h = hub(layer)
        a, b, other = _Member(), _Member(), _Member()
        group = groups.type_group("vwap")
        await h.join(group, a)
        await h.join(group, b)
        await h.join(groups.type_group("intraday_bar"), other)
        assert hub(layer) is h  # one hub per loop
        await layer.group_send(group, groups.event(_msg(1)))
        assert await _until(lambda: len(a.got) == 1 and len(b.got) == 1)
        assert a.got[0]["message"]["seq"] == 1
        assert a.got[0]["text"].startswith('{"type":"vwap"')
        await h.leave(group, a)
        await layer.group_send(group, groups.event(_msg(2)))
        assert await _until(lambda: len(b.got) == 2)
        await asyncio.sleep(0.1)
        assert len(a.got) == 1  # left: nothing more
        assert other.got == []  # another group's member never sees it
        await h.leave(group, b)
        assert group not in h.members
        await h.leave(group, b)  # leaving twice is harmless

    asyncio.run(scenario())
