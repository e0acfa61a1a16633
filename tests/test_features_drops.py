"""Rows that materialization leaves out are counted and said: duplicates of an (entity, event time), with which
one was kept, and late rows an incremental run cannot place."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq

from appliance.testing import DaemonProcess

T = dt.datetime
PROJECT = """
[entities.airport]
join_keys = ["origin"]

[feature_views.weather]
source = "data/weather.parquet"
entities = ["airport"]
event_time = "ts"
features = ["temp"]
"""


def write(path, rows) -> None:
    pq.write_table(pa.Table.from_pylist([{"origin": o, "ts": t, "temp": v} for o, t, v in rows]), path)


def test_duplicates_and_late_rows_are_counted_in_the_result_the_event_and_the_cli(tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "appliance.toml").write_text(PROJECT)
    rows = [("EWR", T(2013, 1, 1, 10), 5.0), ("EWR", T(2013, 1, 1, 10), 3.0),  # the same hour twice
            ("JFK", T(2013, 1, 1, 10), 7.0), ("JFK", T(2013, 1, 1, 11), None)]
    write(project / "data/weather.parquet", rows)
    with DaemonProcess(tmp_path / "home", project) as d:
        out = d.cli("features", "materialize", "weather", "--wait")
        assert out.returncode == 0, out.stderr
        assert "3 row(s) added" in out.stdout
        assert "dropped 1 duplicate (entity, event time) row(s): kept the first in order of its feature values" \
            in out.stdout, out.stdout
        values = d.post("/features/online", {"entity": {"origin": "EWR"}}).json()["values"][0]
        assert values == {"weather:temp": 3.0}  # the one kept, as said
        rows += [("EWR", T(2013, 1, 1, 9), 1.0), ("LGA", T(2013, 1, 1, 8), 2.0),  # before the watermark: late
                 ("EWR", T(2013, 1, 1, 12), 4.0)]
        write(project / "data/weather.parquet", rows)
        out = d.cli("features", "materialize", "weather", "--wait")
        assert out.returncode == 0, out.stderr
        assert "1 row(s) added" in out.stdout
        assert "skipped 2 late row(s) at or before the previous watermark; --full takes them" in out.stdout
        event = d.events("features.materialized")[-1]["data"]
        assert (event["rows_added"], event["duplicates_dropped"], event["late_rows_skipped"]) == (1, 0, 2)
        out = d.cli("features", "materialize", "weather", "--full", "--wait")
        assert "6 row(s) added" in out.stdout and "late" not in out.stdout
