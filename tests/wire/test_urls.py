"""``thorcut.wire.urls``: the stream URL a client subscribes with."""

from __future__ import annotations

from thorcut.wire.urls import with_features


def test_feature_query_is_added_only_when_the_url_names_none() -> None:
    assert (
        with_features("ws://h/ws/stream/", ["positions", "intraday"]) == "ws://h/ws/stream/?features=positions,intraday"
    )
    assert with_features("ws://h/s?client=a", ["positions"]) == "ws://h/s?client=a&features=positions"
    assert with_features("ws://h/s?features=vwap", ["positions"]) == "ws://h/s?features=vwap"
    assert with_features("ws://h/s", []) == "ws://h/s"
