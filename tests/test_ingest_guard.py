"""The poisoning guard's profile of a big batch comes from a sample: it must still tell the same story as
counting every row, and still catch a shifted batch."""

from __future__ import annotations

from types import SimpleNamespace

import duckdb
import pytest

from plugins.ingest import guard

ROWS = 3_000_000  # three times PROFILE_ROWS: the sampled path


def source(name: str):
    """The two fields of a source's settings that the plan reads."""
    return SimpleNamespace(name=name, unique=[], guard=SimpleNamespace(exclude=[]))


@pytest.fixture(scope="module")
def cur():
    con = duckdb.connect()
    con.execute("create schema ingest")
    con.execute("create table ingest.bins (source VARCHAR, column_name VARCHAR, kind VARCHAR, edges VARCHAR)")
    # Sorted by amount within each half of the file: a sample of contiguous blocks must not be fooled by order.
    con.execute("select setseed(0.5)")
    con.execute(f"""create table t as select (i % 3 = 0)::INT * 10 + (i * 7919 % 1000) / 10.0 as amount,
        ['a', 'b', 'c', 'd'][1 + (random() * 3.999)::INT] as kind,
        if(random() < 0.02, NULL, (random() * 4.999)::INT) as level,
        (i >= {ROWS // 2})::INT as half from range({ROWS}) r(i) order by half, amount""")
    return con



def test_a_big_batch_is_profiled_from_a_sample_that_agrees_with_every_row(cur):
    columns = [("amount", "DOUBLE"), ("kind", "VARCHAR"), ("level", "INTEGER")]
    plan = guard.plan(cur, source("big"), columns, "t where true", ROWS)
    assert {c: p["kind"] for c, p in plan.items()} == {"amount": "num", "kind": "cat", "level": "num"}
    sampled = guard.profile(cur, plan, "t where true", ROWS)
    full = {c: {} for c in sampled}
    for col, p in plan.items():  # the exact counts, the old way: every row
        full[col] = guard._counts(p, guard._select(cur, guard._aggs(col, p), "t"), 1.0)
    for col in sampled:
        assert sum(sampled[col].values()) == pytest.approx(ROWS, rel=0.002), col
        assert set(sampled[col]) == set(full[col]), col
        # A column the file is sorted by is sampled as ~490 blocks of 2,048 rows, not 1M independent rows: its
        # PSI noise is larger (~0.01-0.03 here), yet far under the 0.25 that holds a batch.
        noise = 0.06 if col == "amount" else 0.001
        assert guard.psi(full[col], sampled[col]) < noise, (col, sampled[col], full[col])
    assert sampled["level"]["(null)"] == pytest.approx(ROWS / 50, rel=0.05)


def test_a_shifted_big_batch_still_shows_a_large_psi(cur):
    plan = guard.plan(cur, source("shifted"), [("amount", "DOUBLE")], "t where true", ROWS)
    history = guard.profile(cur, plan, "t where half = 0", ROWS // 2)
    same = guard.profile(cur, plan, "t where half = 1", ROWS // 2)
    shifted = guard.profile(cur, plan, "(select amount + 40 as amount from t where half = 1) where true", ROWS // 2)
    # Sorted in the file, so both sides carry block-sampling noise (~0.03 together): well apart from a shift.
    assert guard.psi(history["amount"], same["amount"]) < 0.1
    assert guard.psi(history["amount"], shifted["amount"]) > 0.25
