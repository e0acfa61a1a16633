"""The prediction log writes requests column-wise (DuckDB builds each row's JSON); what lands must be exactly
what the row-by-row writer produced: same rows, same keys, same values, nulls for non-finite outputs."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import orjson
import pytest

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
    store.con.execute(pl.SCHEMA)
    return pl.PredictionLog(store)


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
    for it in items:
        log._q.append(it)
    assert log.flush() == 4
    got = log.store.con.execute(
        "select deployment, model, version, request_id, row_index, latency_us, shadow, inputs, outputs "
        "from serving.predictions order by request_id, row_index").fetchall()
    want = [r for it in items for r in expected_rows(it)]
    assert len(got) == len(want) == 9
    for g, w in zip(got, want, strict=True):
        assert g[:7] == w[:7]
        assert json.loads(g[7]) == pytest.approx(w[7]) if "text" not in w[7] else json.loads(g[7]) == w[7]
        assert json.loads(g[8]) == w[8]  # NaN is null in both
    assert json.loads(got[3][8]) == {"probability": [None]}
    assert list(json.loads(got[0][7])) == ["amount", "it's quoted", "age"]


def test_a_thousand_row_request_is_logged_row_by_row_with_its_row_numbers(log):
    x = np.random.default_rng(1).normal(size=(1000, 30)).astype(np.float32)
    names = {"features": [f"f{i}" for i in range(30)]}
    log._q.append(("fraud", "fraud", 1, "big", 1.0, 0.01, False, {"features": x},
                   {"probability": x[:, :1]}, names))
    log.flush()
    rows = log.store.con.execute("select row_index, inputs from serving.predictions order by row_index").fetchall()
    assert [r[0] for r in rows] == list(range(1000))
    assert json.loads(rows[999][1])["f29"] == pytest.approx(float(x[999, 29]))
