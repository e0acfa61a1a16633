"""Background priority: DuckDB's worker pool and the prediction log's writer yield the CPU to serving when the
cores are busy, while the threads a user waits on keep theirs."""

from __future__ import annotations

import os
import sys
import threading

import pytest
from conftest import threads_of

from appliance.health import Damaged
from appliance.store import Store
from appliance.threads import BACKGROUND_NICE, in_background

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")


def test_duckdb_workers_run_in_the_background_and_the_caller_keeps_its_priority(tmp_path):
    before = set(threads_of())
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    store = Store(tmp_path / "store.duckdb")
    try:
        started = {tid: v for tid, v in threads_of().items() if tid not in before}
        assert started, "opening DuckDB started no worker threads"
        assert all(v == ("duckdb", BACKGROUND_NICE) for v in started.values()), started
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
        cur = store.cursor()
        cur.execute("create table t as select range i from range(1000000)")
        assert cur.execute("select sum(i) from t").fetchall() == [(499999500000,)]
    finally:
        store.close()


def test_an_error_opening_the_store_reaches_the_caller(tmp_path):
    (tmp_path / "store.duckdb").write_text("not a database")
    with pytest.raises(Damaged) as err:  # DuckDB's own error, said as damage with the way to restore
        Store(tmp_path / "store.duckdb")
    assert "not a valid DuckDB database file" in err.value.message and "appliance restore" in err.value.message
    assert in_background(lambda: 7, "t") == 7
