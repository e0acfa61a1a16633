"""Point-in-time correctness of training sets, on an in-memory DuckDB: hand-built cases and a property test
against a brute-force Python reference."""

from __future__ import annotations

import datetime as dt
import random
import tomllib
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import BadRequest
from appliance.artifacts import ArtifactStore
from appliance.config import Config
from plugins.features import definitions, index, offline, pit, spine

T0 = dt.datetime(2024, 1, 1)

PROJECT = """
[entities.customer]
join_keys = ["k"]
[entities.shop]
join_keys = ["k", "g"]

[feature_views.a]
source = "raw.a"
entities = ["customer"]
event_time = "ts"
{ttl_a}

[feature_views.b]
source = "raw.b"
entities = ["shop"]
event_time = "ts"
{ttl_b}
"""


def minutes(m: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=m)


def views(ttl_a: int | None = None, ttl_b: int | None = None, extra: str = "") -> dict:
    text = PROJECT.format(ttl_a=f"ttl = {ttl_a}" if ttl_a else "", ttl_b=f"ttl = {ttl_b}" if ttl_b else "") + extra
    return definitions.parse(Config(path=None, data=tomllib.loads(text), text=text))


run = offline.fetch


def setup(con, a_rows, b_rows, spine_rows, *, ttl_a=None, ttl_b=None):
    """Load raw rows, materialize both views, and return the training set's rows as tuples: the same from the
    ASOF query and from the sorted indexes (each checked against the other here, and so in every test)."""
    run(con, "create schema if not exists raw")
    run(con, "create or replace table raw.a (k bigint, ts timestamp, x integer)")
    run(con, "create or replace table raw.b (k bigint, g varchar, ts timestamp, y double)")
    run(con, "create or replace table spine (k bigint, g varchar, ts timestamp, label integer)")
    for table, rows in (("raw.a", a_rows), ("raw.b", b_rows), ("spine", spine_rows)):
        if rows:
            con.executemany(f"insert into {table} values ({', '.join('?' * len(rows[0]))})", rows)
    sels = []
    for view in views(ttl_a, ttl_b).values():
        schema = offline.describe(con, view)
        offline.materialize(con, view, 1, schema, full=True)
        sels.append(pit.Selection(view, 1, schema, schema.features))
    cols = pit.describe_spine(con, "spine", "ts")
    pit.check_keys(cols, sels)
    rows = con.execute(pit.training_query("spine", cols, "ts", sels)).fetchall()
    for per_group, run_rows, chunk_rows in ((None, pit._RUN_ROWS, None), (2, 1, 3)):
        # The second splits the entities into several search groups, the spine into chunks of three rows and
        # each chunk into runs on threads.
        indexes = [index.build(con, s.view, s.version, s.schema, per_group) for s in sels]
        saved, pit._RUN_ROWS = pit._RUN_ROWS, run_rows
        try:
            table = pit.training_table(con, "spine", cols, "ts", sels, indexes, chunk_rows)
        finally:
            pit._RUN_ROWS = saved
        assert [tuple(r.values()) for r in table.to_pylist()] == rows
    return rows


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def test_a_value_stamped_after_the_event_is_never_used(con):
    rows = setup(con, [(1, minutes(0), 10), (1, minutes(10) + dt.timedelta(microseconds=1), 99)], [],
                 [(1, "g", minutes(10), 0), (1, "g", minutes(10.5), 1)])
    assert [r[4] for r in rows] == [10, 99]


def test_ttl_expires_values_at_the_spine_time(con):
    rows = setup(con, [(1, minutes(0), 10)], [], [(1, "g", minutes(5), 0), (1, "g", minutes(5) +
                                                                             dt.timedelta(seconds=1), 0)],
                 ttl_a=300)
    assert [r[4] for r in rows] == [10, None]  # exactly the TTL old still counts; a second more does not


def test_ties_are_broken_the_same_way_whatever_the_input_order(con):
    a = [(1, minutes(0), 3), (1, minutes(0), 1), (1, minutes(0), None), (1, minutes(0), 2)]
    results = set()
    for seed in range(5):
        random.Random(seed).shuffle(a)
        results.add(tuple(setup(con, a, [], [(1, "g", minutes(1), 0)])))
    assert results == {((1, "g", minutes(1), 0, 1, None),)}


def test_unmatched_and_duplicate_spine_rows_are_kept_in_spine_order(con):
    spine = [(2, "g", minutes(5), 0), (1, "g", minutes(5), 1), (7, "g", minutes(5), 2), (1, "g", minutes(5), 1),
             (1, "g", minutes(-1), 3)]
    rows = setup(con, [(1, minutes(0), 10), (2, minutes(9), 20)], [], spine)
    assert [(r[3], r[4]) for r in rows] == [(0, None), (1, 10), (2, None), (1, 10), (3, None)]


def test_several_views_and_composite_keys(con):
    b = [(1, "x", minutes(0), 1.5), (1, "y", minutes(1), 2.5), (2, "x", minutes(2), 3.5)]
    spine = [(1, "x", minutes(3), 0), (1, "y", minutes(3), 0), (2, "y", minutes(3), 0), (2, "x", minutes(3), 0)]
    rows = setup(con, [(1, minutes(0), 10), (2, minutes(0), 20)], b, spine, ttl_b=3600)
    assert [(r[4], r[5]) for r in rows] == [(10, 1.5), (10, 2.5), (20, None), (20, 3.5)]


def test_sparse_and_negative_ids(con):
    a = [(-5, minutes(0), 1), (10**12, minutes(0), 2), (3 * 10**15, minutes(0), 3)]
    spine = [(3 * 10**15, "g", minutes(1), 0), (-5, "g", minutes(1), 0), (10**12 + 1, "g", minutes(1), 0),
             (-(2**62), "g", minutes(1), 0), (10**12, "g", minutes(1), 0)]
    rows = setup(con, a, [], spine)
    assert [r[4] for r in rows] == [3, 1, None, None, 2]


def test_spine_rows_with_a_null_key_or_time_match_nothing(con):
    spine = [(None, "x", minutes(5), 0), (1, "x", None, 1), (1, None, minutes(5), 2), (1, "x", minutes(5), 3)]
    rows = setup(con, [(1, minutes(0), 10), (None, minutes(0), 99)], [(1, "x", minutes(0), 1.5)], spine)
    assert [(r[3], r[4], r[5]) for r in rows] == [(0, None, None), (1, None, None), (2, 10, None), (3, 10, 1.5)]


def test_a_daily_view_joins_a_timestamped_spine_by_day(con):
    run(con, "create schema raw; create table raw.a (k bigint, ts date, x integer)")
    con.executemany("insert into raw.a values (?, ?, ?)", [(1, dt.date(2024, 1, 1), 1), (1, dt.date(2024, 1, 2), 2)])
    run(con, "create table spine (k bigint, ts timestamp)")
    con.executemany("insert into spine values (?, ?)", [(1, dt.datetime(2024, 1, 1, 23, 59)),
                                                        (1, dt.datetime(2024, 1, 2, 0, 0)), (1, dt.datetime(2023, 12, 31))])
    view = views(ttl_a=86400)["a"]
    schema = offline.describe(con, view)
    offline.materialize(con, view, 1, schema, full=True)
    sels = [pit.Selection(view, 1, schema, ["x"])]
    cols = pit.describe_spine(con, "spine", "ts")
    rows = con.execute(pit.training_query("spine", cols, "ts", sels)).fetchall()
    table = pit.training_table(con, "spine", cols, "ts", sels, [index.build(con, view, 1, schema)])
    assert [tuple(r.values()) for r in table.to_pylist()] == rows
    assert [r[2] for r in rows] == [1, 2, None]


def test_a_spine_of_several_chunks_is_written_as_one_file_in_order(con, tmp_path):
    a = [(k, minutes(m), k * 100 + m) for k in range(4) for m in range(0, 10, 2)]
    spine = [(k % 4, "g", minutes(9 - k % 10), k) for k in range(23)]
    rows = setup(con, a, [], spine)
    view = views()["a"]
    schema = offline.describe(con, view)
    sel = [pit.Selection(view, 1, schema, schema.features)]
    cols = pit.describe_spine(con, "spine", "ts")
    written = {}
    for chunk_rows in (None, 5):
        n, path = write(con, tmp_path, cols, sel, [index.build(con, view, 1, schema)], chunk_rows)
        written[chunk_rows] = con.execute(f"select * from read_parquet('{path}')").fetchall()
        assert n == 23
    assert written[5] == written[None] == [r[:5] for r in rows]


def write(con, tmp_path, cols, sel, indexes, chunk_rows=None, spine="spine"):
    """A training set written as the build job writes it: streamed into the artifact store."""
    store = ArtifactStore(tmp_path / "artifacts")
    with store.create() as out:
        n = pit.write_training_set(con, spine, cols, "ts", sel, indexes, out, tmp_path / "scratch.parquet",
                                   chunk_rows)
        path = store.verify(out.commit())
    assert not (tmp_path / "scratch.parquet").exists()
    return n, path


def test_a_spine_column_parquet_cannot_take_from_arrow_goes_through_duckdb(con, tmp_path):
    a = [(k, minutes(m), k * 100 + m) for k in range(3) for m in range(0, 10, 2)]
    rows = setup(con, a, [], [(k % 3, "g", minutes(9 - k), k) for k in range(6)])
    run(con, "create table spine_iv as select *, to_minutes(label::bigint) as wait from spine")
    view = views()["a"]
    schema = offline.describe(con, view)
    sel = [pit.Selection(view, 1, schema, schema.features)]
    cols = pit.describe_spine(con, "spine_iv", "ts")
    assert cols["wait"] == "INTERVAL"
    n, path = write(con, tmp_path, cols, sel, [index.build(con, view, 1, schema)], spine="spine_iv")
    got = con.execute(f"select * exclude (wait) from read_parquet('{path}')").fetchall()
    assert n == 6 and got == [r[:5] for r in rows]
    assert con.execute(f"select typeof(wait) from read_parquet('{path}') limit 1").fetchone()[0] == "INTERVAL"


def test_times_too_far_apart_to_index_fall_back_to_the_asof_join(con, tmp_path):
    run(con, "create schema raw; create table raw.a (k bigint, ts timestamp, x integer)")
    run(con, "insert into raw.a values (1, timestamp '0001-01-01', 1), (1, cast('200000-01-01' as timestamp), 2)")
    run(con, "create table spine (k bigint, ts timestamp)")
    run(con, "insert into spine values (1, timestamp '2024-01-01'), (1, cast('250000-01-01' as timestamp))")
    view = views()["a"]
    schema = offline.describe(con, view)
    offline.materialize(con, view, 1, schema, full=True)
    with pytest.raises(index.Unindexable, match="'a'"):
        index.build(con, view, 1, schema)
    sel = [pit.Selection(view, 1, schema, ["x"])]
    n, path = write(con, tmp_path, pit.describe_spine(con, "spine", "ts"), sel, [None])
    assert n == 2
    assert [r[-1] for r in con.execute(f"select * from read_parquet('{path}')").fetchall()] == [1, 2]


def test_a_parquet_spine_read_by_pyarrow_gives_the_same_rows_and_types(con, tmp_path):
    a = [(k, minutes(m), k * 100 + m) for k in range(3) for m in range(0, 10, 2)]
    spine = [(k % 4, "g", minutes(9.5 - k), k) for k in range(8)] + [(None, "g", minutes(3), 9), (1, "g", None, 9)]
    setup(con, a, [], spine, ttl_a=180)
    view = views(ttl_a=180)["a"]
    schema = offline.describe(con, view)
    sel = [pit.Selection(view, 1, schema, schema.features)]
    ix = [index.build(con, view, 1, schema)]
    from_table = pit.training_table(con, "spine", pit.describe_spine(con, "spine", "ts"), "ts", sel, ix)
    expected = con.execute(pit.training_query("spine", pit.describe_spine(con, "spine", "ts"), "ts", sel)).fetchall()
    run(con, f"copy spine to '{tmp_path / 'spine.parquet'}' (format parquet)")
    rel = f"read_parquet('{tmp_path / 'spine.parquet'}')"
    cols = pit.describe_spine(con, rel, "ts")
    assert pit._parquet_spine(con, rel, cols, 4) is not None  # this spine takes pyarrow's path
    for chunk_rows in (None, 4):
        got = pit.training_table(con, rel, cols, "ts", sel, ix, chunk_rows)
        assert got.schema.types == from_table.schema.types
        assert [tuple(r.values()) for r in got.to_pylist()] == expected
    # pyarrow would read this file's text column as large_string where DuckDB gives string: DuckDB reads it.
    table = con.sql("select * from spine").to_arrow_table()
    pq.write_table(table.set_column(1, "g", table.column("g").cast(pa.large_string())), tmp_path / "large.parquet")
    rel = f"read_parquet('{tmp_path / 'large.parquet'}')"
    assert pit._parquet_spine(con, rel, cols, 4) is None
    got = pit.training_table(con, rel, pit.describe_spine(con, rel, "ts"), "ts", sel, ix)
    assert got.schema.types == from_table.schema.types
    assert [tuple(r.values()) for r in got.to_pylist()] == expected


def test_spine_keys_must_match_the_entity(con):
    setup(con, [(1, minutes(0), 10)], [], [])
    run(con, "create or replace table spine2 as select 1::integer as k, timestamp '2024-01-01' as ts")
    view = views()["a"]
    sel = [pit.Selection(view, 1, offline.describe(con, view), ["x"])]
    pit.check_keys(pit.describe_spine(con, "spine2", "ts"), sel)  # an INTEGER key joins a BIGINT one
    run(con, "create or replace table spine3 as select '1' as k, timestamp '2024-01-01' as ts")
    with pytest.raises(BadRequest, match="'k' is VARCHAR.*'customer'.*'a'"):
        pit.check_keys(pit.describe_spine(con, "spine3", "ts"), sel)
    with pytest.raises(BadRequest, match="no timestamp column 'when'"):
        pit.describe_spine(con, "spine3", "when")


def test_rolling_windows_and_incremental_materialization(con):
    extra = """
[feature_views.w]
source = "raw.a"
entities = ["customer"]
event_time = "ts"
[[feature_views.w.windows]]
column = "x"
function = "sum"
over = ["10m"]
[[feature_views.w.windows]]
function = "count"
over = ["1h"]
"""
    run(con, "create schema raw")
    run(con, "create table raw.a (k bigint, ts timestamp, x integer)")
    view = views(extra=extra)["w"]
    first = [(1, minutes(m), m) for m in (0, 5, 10, 20)]
    later = [(1, minutes(m), m) for m in (25, 30)]
    con.executemany("insert into raw.a values (?, ?, ?)", first)
    schema = offline.describe(con, view)
    assert schema.features == ["x", "x_sum_10m", "count_1h"]
    offline.materialize(con, view, 1, schema)
    con.executemany("insert into raw.a values (?, ?, ?)", later)
    done = offline.materialize(con, view, 1, schema)
    assert done["rows_added"] == 2
    incremental = con.execute(f"select * from {offline.table_name('w', 1)} order by ts").fetchall()
    offline.materialize(con, view, 2, schema, full=True)
    assert con.execute(f"select * from {offline.table_name('w', 2)} order by ts").fetchall() == incremental
    # the window includes its start: at 10 minutes, 0 + 5 + 10; at 30, 20 + 25 + 30
    assert [(r[3], r[4]) for r in incremental] == [(0, 1), (5, 2), (15, 3), (30, 4), (45, 5), (75, 6)]


def test_a_view_whose_sql_fails_names_the_view(con):
    run(con, "create schema raw; create table raw.a (k bigint, ts timestamp, x integer)")
    view = views()["a"]
    view.sql = "select k, ts, x + nope as y from source"
    with pytest.raises(offline.ViewError, match="feature view 'a': its sql failed.*nope") as err:
        offline.describe(con, view)
    assert err.value.key == "sql"


# --------------------------------------------------------------------------------------------- property test


def reference(a_rows, b_rows, spine_rows, ttl_a, ttl_b):
    """Brute force: per spine row and view, the newest row at or before the spine time, ties to the smallest
    value (NULL last), NULL when none or when older than the TTL."""

    def pick(rows, key, ts, ttl):
        cands = [r for r in rows if r[0] == key and r[1] <= ts]
        if not cands:
            return None
        newest = max(r[1] for r in cands)
        if ttl is not None and newest < ts - dt.timedelta(seconds=ttl):
            return None
        values = [r[2] for r in cands if r[1] == newest]
        present = [v for v in values if v is not None]
        return min(present) if present else None

    out = []
    for k, g, ts, label in spine_rows:
        a = pick([(r[0], r[1], r[2]) for r in a_rows], k, ts, ttl_a)
        b = pick([((r[0], r[1]), r[2], r[3]) for r in b_rows], (k, g), ts, ttl_b)
        out.append((k, g, ts, label, a, b))
    return out


small_time = st.integers(0, 12).map(lambda m: minutes(m))
maybe = st.one_of(st.none(), st.integers(-3, 3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    a_rows=st.lists(st.tuples(st.integers(0, 3), small_time, maybe), max_size=25),
    b_rows=st.lists(st.tuples(st.integers(0, 3), st.sampled_from("xy"), small_time,
                              maybe.map(lambda v: None if v is None else float(v))), max_size=25),
    spine_rows=st.lists(st.tuples(st.integers(0, 4), st.sampled_from("xy"), small_time, st.integers(0, 1)),
                        max_size=20),
    ttl_a=st.one_of(st.none(), st.integers(1, 6).map(lambda m: m * 60)),
    ttl_b=st.one_of(st.none(), st.integers(1, 6).map(lambda m: m * 60)),
)
def test_training_sets_match_a_brute_force_reference(con, a_rows, b_rows, spine_rows, ttl_a, ttl_b):
    got = setup(con, a_rows, b_rows, spine_rows, ttl_a=ttl_a, ttl_b=ttl_b)
    assert got == reference(a_rows, b_rows, spine_rows, ttl_a, ttl_b)


def test_a_bare_parquet_file_name_is_a_path_not_a_table():
    text = '[entities.e]\njoin_keys = ["k"]\n[feature_views.p]\nsource = "x.parquet"\nentities = ["e"]\nevent_time = "ts"\n'
    view = definitions.parse(Config(path=None, data=tomllib.loads(text), text=text))["p"]
    assert not view.source_is_table and view.source.endswith("/x.parquet")
    reach = spine.Reach(base=Path("/project"), roots=(Path("/project"),))
    assert spine.relation(None, "spine.parquet", None, reach)[0] == "read_parquet('/project/spine.parquet')"


@pytest.mark.parametrize("kid_high", [50, 1 << 50])
def test_the_search_order_is_by_entity_and_names_each_queries_entity(kid_high):
    """Any order gives the same answers; this one must still be a permutation in entity order. Entity numbers
    too wide to pack with the positions take an argsort instead."""
    rng = np.random.default_rng(kid_high % 97)
    kid = rng.integers(0, kid_high, 5000)
    since = rng.integers(0, 1 << 40, 5000)
    order, k = index._locality_order(kid, since)
    assert sorted(order.tolist()) == list(range(5000))
    assert (k == kid[order]).all() and (np.diff(k) >= 0).all()
