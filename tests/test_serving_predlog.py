"""The prediction log stores requests column-wise as numbers and its view builds each row's JSON; what reads back
must be exactly what the row-by-row writer produced: same rows, same keys, same values, nulls for non-finite
outputs."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import orjson
import pytest

from plugins.serving import logcolumns
from plugins.serving import predlog as pl


class Store:
    def __init__(self):
        self.con = duckdb.connect()

    def cursor(self):
        return self.con


def expected_rows(item) -> list[tuple]:
    """The row-by-row writer's output for one logged request."""
    dep, model, version, rid, _, lat, shadow, inputs, outputs, names = item
    ins, outs = pl._rows(inputs, names), pl._rows(outputs, None)
    return [(dep, model, version, rid, i, int(lat * 1e6), shadow, json.loads(orjson.dumps(a)),
             json.loads(orjson.dumps(b))) for i, (a, b) in enumerate(zip(ins, outs, strict=False))]


@pytest.fixture
def log():
    store = Store()
    log = pl.PredictionLog(store)
    log.prepare()
    return log


def test_every_layout_lands_as_the_row_by_row_writer_would_write_it(log):
    rng = np.random.default_rng(0)
    named = {"features": ["amount", "it's quoted", "age"]}
    nan_out = np.array([[0.5], [np.nan]], np.float32)
    items = [
        ("fraud", "fraud", 1, "a", 1.0, 0.001, False, {"features": rng.normal(size=(2, 3)).astype(np.float32)},
         {"probability": rng.random((2, 1)).astype(np.float32)}, named),
        ("fraud", "fraud", 1, "b", 2.0, 0.002, False, {"features": rng.normal(size=(3, 3)).astype(np.float32)},
         {"probability": nan_out[[0, 1, 0]]}, named),
        ("plain", "m", 2, "c", 3.0, 0.003, True, {"x": np.arange(8, dtype=np.int64).reshape(2, 4),
                                                   "flag": np.array([True, False])},
         {"y": np.array([1.5, 2.5]), "label": np.array([[1], [0]], np.int32)}, None),
        ("words", "w", 1, "d", 4.0, 0.004, False, {"text": np.array([["hi"], ["yo"]], dtype=object)},
         {"score": np.array([[0.1], [0.2]], np.float32)}, None),  # strings: the row-by-row path
    ]
    for dep, model, version, rid, _, lat, shadow, inputs, outputs, names in items:
        log.append(dep, model, version, rid, lat, shadow, inputs, outputs, names)
    assert log.flush() == 4
    got = log.store.con.execute(
        "select deployment, model, version, request_id, row_index, latency_us, shadow, inputs, outputs "
        "from serving.prediction_log order by request_id, row_index").fetchall()
    want = [r for it in items for r in expected_rows(it)]
    assert len(got) == len(want) == 9
    for g, w in zip(got, want, strict=True):
        assert g[:7] == w[:7]
        assert json.loads(g[7]) == pytest.approx(w[7]) if "text" not in w[7] else json.loads(g[7]) == w[7]
        assert json.loads(g[8]) == w[8]  # NaN is null in both
    assert json.loads(got[3][8]) == {"probability": [None]}
    # Integers and booleans come back as such, not as the doubles they are stored as.
    assert (got[5][7], got[5][8]) == ('{"x":[0,1,2,3],"flag":true}', '{"y":1.5,"label":[1]}')
    # float32 rows are stored as FLOAT (exact, half the bytes); int64 and float64 ones as DOUBLE.
    stored = log.store.con.execute("select request_id, input_floats is not null, output_floats is not null "
                                   "from serving.predictions where row_index = 0 and layout is not null "
                                   "order by request_id").fetchall()
    assert stored == [("a", True, True), ("b", True, True), ("c", False, False)]
    assert list(json.loads(got[0][7])) == ["amount", "it's quoted", "age"]


def test_integers_keep_every_digit(log):
    """Hashed ids use all 64 bits: an integer side is stored as BIGINT, and a group whose big integers share a
    side with floats (a DOUBLE holds 53 bits) is written as JSON rows, so every digit reads back."""
    big = 2**62 + 1
    items = [
        ("ids", "m", 1, "ints", 1.0, 0.001, False, {"ids": np.array([[big, -big]], np.int64), "flag": np.array([True])},
         {"p": np.array([[0.5]], np.float32)}, None),
        ("mixed", "m", 1, "mixed-big", 2.0, 0.001, False, {"ids": np.array([[big]], np.int64),
                                                           "x": np.array([[0.25]])}, {"p": np.array([[0.5]])}, None),
        ("small", "m", 1, "mixed-small", 3.0, 0.001, False, {"ids": np.array([[7]], np.int64),
                                                             "x": np.array([[0.25]])}, {"p": np.array([[0.5]])}, None),
        ("unsigned", "m", 1, "u64", 4.0, 0.001, False, {"u": np.array([[2**64 - 1]], np.uint64)},
         {"p": np.array([[0.5]], np.float32)}, None),
    ]
    for dep, model, version, rid, _, lat, shadow, inputs, outputs, names in items:
        log.append(dep, model, version, rid, lat, shadow, inputs, outputs, names)
    assert log.flush() == 4
    got = {rid: (json.loads(i), json.loads(o)) for rid, i, o in log.store.con.execute(
        "select request_id, inputs, outputs from serving.prediction_log").fetchall()}
    for item in items:
        (want,) = expected_rows(item)
        assert got[item[3]] == (want[7], want[8])
    assert got["ints"][0] == {"ids": [big, -big], "flag": True}
    assert got["u64"][0] == {"u": [2**64 - 1]}
    stored = dict(log.store.con.execute("select request_id, case when input_ints is not null then 'ints' "
                                        "when input_values is not null then 'doubles' else 'json' end "
                                        "from serving.predictions").fetchall())
    assert stored == {"ints": "ints", "mixed-big": "json", "mixed-small": "doubles", "u64": "json"}


def test_a_thousand_row_request_is_logged_row_by_row_with_its_row_numbers(log):
    x = np.random.default_rng(1).normal(size=(1000, 30)).astype(np.float32)
    names = {"features": [f"f{i}" for i in range(30)]}
    log.append("fraud", "fraud", 1, "big", 0.01, False, {"features": x}, {"probability": x[:, :1]}, names)
    log.flush()
    rows = log.store.con.execute("select row_index, inputs from serving.prediction_log order by row_index").fetchall()
    assert [r[0] for r in rows] == list(range(1000))
    assert json.loads(rows[999][1])["f29"] == pytest.approx(float(x[999, 29]))


def test_requests_logged_while_the_writer_flushes_all_land_once(log):
    """The serving loop appends while the writer swaps batches out: no request is lost or written twice."""
    import threading

    names = {"features": ["a", "b"]}
    rng = np.random.default_rng(2)
    sent = {}
    done = threading.Event()

    def serve():
        for i in range(6000):
            rows = 1 if i % 7 else 3  # mostly one row a request, as served; some batches of three
            x = rng.normal(size=(rows, 2)).astype(np.float32)
            sent[f"r{i}"] = rows
            log.append("fraud", "fraud", 1, f"r{i}", 0.001, False, {"features": x}, {"p": x[:, :1]}, names)
        done.set()

    t = threading.Thread(target=serve)
    t.start()
    flushed = 0
    while not done.is_set():
        flushed += log.flush()
    t.join()
    flushed += log.flush()
    assert flushed == 6000
    got = log.store.con.execute("select request_id, count(*), list(row_index order by row_index) "
                                "from serving.predictions group by request_id").fetchall()
    assert {rid: n for rid, n, _ in got} == sent
    assert all(idx == list(range(n)) for _, n, idx in got)


def test_a_request_whose_tensors_disagree_on_rows_still_lands(log):
    x = np.ones((2, 3), np.float32)
    log.append("m", "m", 1, "ragged", 0.001, False, {"features": x}, {"p": np.ones((1, 1), np.float32)}, None)
    log.append("m", "m", 1, "fine", 0.001, False, {"features": x}, {"p": np.ones((2, 1), np.float32)}, None)
    assert log.flush() == 2
    got = dict(log.store.con.execute("select request_id, count(*) from serving.predictions group by 1").fetchall())
    assert got == {"ragged": 1, "fine": 2}


def test_a_full_log_drops_and_counts_instead_of_growing(log):
    log.max_pending = 5
    for i in range(8):
        log.append("m", "m", 1, f"r{i}", 0.001, False, {"x": np.ones((1, 2))}, {"y": np.ones((1, 1))}, None)
    assert log.dropped == 3
    # A batch that does not fit is dropped whole and counted per request.
    log.append_batch("m", "m", 1, ["b0", "b1"], [0.001] * 2, [1, 1], {"x": np.ones((2, 2))}, {"y": np.ones((2, 1))},
                     None)
    assert log.dropped == 5
    assert log.flush() == 5


def test_the_log_checkpoints_the_store_once_appends_pause(tmp_path):
    """Rows reach the data file (not just the WAL) soon after traffic stops, so DuckDB's own checkpoint does
    not fall in a busy spell, and the store's threshold is raised for the steady appends."""
    import time

    from appliance.store import Store

    store = Store(tmp_path / "store.duckdb")
    try:
        assert store.cursor().execute("select current_setting('checkpoint_threshold')").fetchone()[0] != "16.0 MiB"
        log = pl.PredictionLog(store, flush_s=0.05)
        log.start()
        for i in range(500):
            log.append("m", "m", 1, f"r{i}", 0.001, False, {"x": np.ones((1, 4), np.float32)},
                       {"y": np.ones((1, 1), np.float32)}, None)

        def wal() -> str:
            return store.cursor().execute("select wal_size from pragma_database_size()").fetchone()[0]

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (log.written < 500 or wal() != "0 bytes"):
            time.sleep(0.05)
        log.stop()
        assert log.written == 500
        assert wal() == "0 bytes"
        assert store.cursor().execute("select count(*) from serving.predictions").fetchone()[0] == 500
    finally:
        store.close()


def test_a_log_from_before_the_numeric_columns_is_upgraded_and_layouts_survive_a_restart(tmp_path):
    """A store whose log holds JSON rows only gains the numeric columns; its old rows read as before, and a
    restarted writer reuses the layouts it registered (rows written before the restart still read)."""
    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    con.execute("create schema serving; create table serving.predictions (deployment varchar, model varchar, "
                "version integer, request_id varchar, row_index integer, ts timestamp, latency_us integer, "
                "shadow boolean, inputs json, outputs json)")
    con.execute("""insert into serving.predictions values ('fraud', 'fraud', 1, 'old', 0, now(), 5, false,
                   '{"amount": 3.5}', '{"probability": [0.25]}')""")

    class FileStore:
        def cursor(self):
            return con

    names = {"features": ["amount"]}
    for rid in ("new-1", "new-2"):  # two writers, as across a restart
        log = pl.PredictionLog(FileStore())
        log.prepare()
        log.append("fraud", "fraud", 1, rid, 0.001, False, {"features": np.array([[7.0]], np.float32)},
                   {"probability": np.array([[0.5]], np.float32)}, names)
        assert log.flush() == 1
    rows = con.execute("select request_id, inputs, outputs from serving.prediction_log order by request_id").fetchall()
    assert [(r, json.loads(i), json.loads(o)) for r, i, o in rows] == [
        ("new-1", {"amount": 7.0}, {"probability": [0.5]}), ("new-2", {"amount": 7.0}, {"probability": [0.5]}),
        ("old", {"amount": 3.5}, {"probability": [0.25]})]
    assert con.execute("select count(*) from serving.prediction_layouts").fetchone()[0] == 1


def test_drops_are_told_once_a_minute_and_counted_in_stats(log):
    """A log whose writer is behind says so (the daemon raises an alert from it) instead of losing rows quietly."""
    told = []
    log.on_dropping = lambda n, reason: told.append((n, reason))
    log.max_pending = 2
    for i in range(5):
        log.append("m", "m", 1, f"r{i}", 0.001, False, {"x": np.ones((1, 2))}, {"y": np.ones((1, 1))}, None)
    assert log.stats() == {"written_rows": 0, "dropped_requests": 3, "pending_requests": 2}
    log._tell_drops()
    behind = "its writer is behind (more than 2 requests waiting)"
    assert told == [(3, behind)]
    log.append("m", "m", 1, "r5", 0.001, False, {"x": np.ones((1, 2))}, {"y": np.ones((1, 1))}, None)
    log._tell_drops()  # within the minute: counted, not told again
    assert told == [(3, behind)] and log.stats()["dropped_requests"] == 4
    log._told_at -= pl.DROP_ALERT_S
    log._tell_drops()
    assert told == [(3, behind), (1, behind)]
    assert log.flush() == 2 and log.stats() == {"written_rows": 2, "dropped_requests": 4, "pending_requests": 0}
    log._tell_drops()  # nothing new dropped: nothing told
    assert len(told) == 2


def test_writes_the_store_refuses_are_counted_and_told_until_the_telling_works(log):
    told, refuse = [], [True]

    def on_dropping(n, reason):
        if refuse[0]:
            raise OSError(28, "No space left on device")  # the alert itself could not be recorded
        told.append((n, reason))

    log.on_dropping = on_dropping
    log.store.con.execute("drop table serving.predictions; create view serving.predictions as select 1 as x")
    log.append("m", "m", 1, "r0", 0.001, False, {"x": np.ones((3, 2))}, {"y": np.ones((3, 1))}, None)
    log.append("w", "w", 1, "r1", 0.001, False, {"t": np.array([["a"]], dtype=object)}, {"y": np.ones((1, 1))}, None)
    assert log.flush() == 0  # every insert fails: both requests counted, neither lost without a trace
    assert log.stats() == {"written_rows": 0, "dropped_requests": 2, "pending_requests": 0}
    log._tell_drops()
    assert told == []
    refuse[0] = False
    log._tell_drops()  # the next cycle tells what the last one could not
    assert len(told) == 1 and told[0][0] == 2 and told[0][1].startswith("the store refused the write (")


def test_request_ids_converted_in_slices_keep_their_order():
    ids = [f"r{i}" for i in range(2500)]
    assert logcolumns.strings(ids, slice_rows=1024).to_pylist() == ids
    assert logcolumns.strings(ids[:10], slice_rows=1024).to_pylist() == ids[:10]
