"""The online store on its own: lookups, TTL, key types, and readers that never see half a refresh."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from appliance import BadRequest
from plugins.features.online import OnlineStore


def table(n: int, generation: int, epoch: float) -> pa.Table:
    return pa.table({"k": list(range(n)), "g": ["x"] * n, "a": [generation] * n, "b": [generation] * n,
                     "_epoch": [epoch] * n})


def test_lookups_ttl_and_key_types():
    store = OnlineStore()
    store.load("v", 1, ["k"], ["a", "b"], table(3, 7, time.time()), ttl_s=60, merge=False)
    store.load("old", 1, ["k", "g"], ["a"], table(3, 8, time.time() - 120), ttl_s=60, merge=False)
    assert store.get({"k": 1}, ["v:b", "v:a"]) == {"v:b": 7, "v:a": 7}
    assert store.get({"k": 1, "g": "x"}, ["old:a"]) == {"old:a": None}  # older than its TTL
    assert store.get_many([{"k": 0}, {"k": 99}], ["v:a"]) == [{"v:a": 7}, {"v:a": None}]
    with pytest.raises(BadRequest, match="'k' of feature view 'v' is int, got str '1'"):
        store.get({"k": "1"}, ["v:a"])
    with pytest.raises(BadRequest, match="no feature 'zz'"):
        store.get({"k": 1}, ["v:zz"])
    with pytest.raises(BadRequest, match="'g'"):
        store.get({"k": 1}, ["old:a"])
    assert set(store.freshness()) == {"v", "old"} and store.freshness()["old"] >= 120
    store.load("v", 2, ["k"], ["b"], table(2, 9, time.time()), ttl_s=None, merge=False)
    assert store.get({"k": 1}, ["v:b"]) == {"v:b": 9}  # a new version replaces the compiled plan


def test_readers_never_see_half_a_refresh():
    store = OnlineStore()
    store.load("v", 1, ["k"], ["a", "b"], table(1000, 0, time.time()), ttl_s=None, merge=False)
    torn, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            for row in store.get_many([{"k": 5}, {"k": 999}], ["v:a", "v:b"]):
                if row["v:a"] != row["v:b"]:
                    torn.append(row)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for generation in range(1, 60):
        store.load("v", 1, ["k"], ["a", "b"], table(1000, generation, time.time()), ttl_s=None,
                   merge=generation % 2 == 0)
    stop.set()
    for t in readers:
        t.join()
    assert not torn
    assert store.get({"k": 5}, ["v:a"]) == {"v:a": 59}
