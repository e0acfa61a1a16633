"""A messy CSV as people export it: missing-value markers, a quote and escape of its own, lines before the
header, another encoding, a timestamp format; and every row that leaves the path is counted and named.

One daemon for the module; each test uses its own source.
"""

from __future__ import annotations

import pytest

from appliance.testing import DaemonProcess

PROJECT = """
[ingest]
data_dirs = ["data"]

[sources.flights]
kind = "csv"
glob = "data/flights/*.csv"
null_values = ["NA", ""]
timestamp_format = "%Y-%m-%d %H:%M:%S"
[sources.flights.columns]
id = "BIGINT"
delay = "DOUBLE"
carrier = { type = "VARCHAR", nullable = false }
at = "TIMESTAMP"

[sources.dialect]
kind = "csv"
glob = "data/dialect/*.csv"
delimiter = ";"
quote = "'"
escape = "\\\\"
skip = 2
encoding = "latin-1"
date_format = "%d.%m.%Y"
[sources.dialect.columns]
id = "BIGINT"
name = "VARCHAR"
day = "DATE"

[sources.plain]
kind = "csv"
glob = "data/plain/*.csv"
mostly = 0.9
[sources.plain.columns]
id = "BIGINT"
x = "DOUBLE"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv-options")
    for d in ("data/flights", "data/dialect", "data/plain"):
        (root / d).mkdir(parents=True)
    (root / "appliance.toml").write_text(PROJECT)
    return root


@pytest.fixture(scope="module")
def daemon(project, tmp_path_factory):
    with DaemonProcess(tmp_path_factory.mktemp("csv-home") / "home", project=project) as d:
        yield d


def rows(d, source: str) -> list[list]:
    return d.get(f"/sources/{source}/rows").json()["rows"]


def test_missing_value_markers_are_nulls_not_quarantined_rows(daemon, project):
    (project / "data/flights/a.csv").write_text(
        "id,delay,carrier,at\n"
        "1,NA,UA,2013-01-01 10:00:00\n"
        "2,,AA,2013-01-01 11:00:00\n"
        "3,2.5,B6,NA\n")
    out = daemon.cli("ingest", "flights", str(project / "data/flights/a.csv"))
    assert out.returncode == 0, out.stderr
    assert "3 rows in, 3 accepted, 0 quarantined" in out.stdout
    got = sorted(rows(daemon, "flights"))
    assert [(r[0], r[1], r[3]) for r in got][:2] == [(1, None, got[0][3]), (2, None, got[1][3])]
    assert got[2][1] == 2.5 and got[2][3] is None


def test_a_marker_not_declared_is_quarantined_and_the_cli_names_column_rule_and_remedy(daemon, project):
    (project / "data/flights/b.csv").write_text(
        "id,delay,carrier,at\n"
        "10,NA,UA,2013-01-02 10:00:00\n"
        "11,null,AA,2013-01-02 11:00:00\n"     # "null" is not in null_values: not a DOUBLE
        "12,1.0,AA,2013/01/02 12:00\n"         # the other timestamp format
        "13,3.0,NA,2013-01-02 13:00:00\n"      # a null carrier: nullable = false
        "14,4.0,DL,2013-01-02 14:00:00\n")
    out = daemon.cli("ingest", "flights", str(project / "data/flights/b.csv"))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "accepted with 3 of 5 rows quarantined (60.0%); 2 accepted" in text, text
    assert "column 'delay', rule cast (expected DOUBLE), e.g. 'null'" in text
    assert "add it to null_values in [sources.flights]" in text
    assert "column 'at', rule cast (expected TIMESTAMP), e.g. '2013/01/02 12:00'" in text
    assert "column 'carrier', rule not_null" in text
    assert "appliance quarantine flights --batch" in text
    ev = [e for e in daemon.events("ingest.batch") if e["data"]["file"] == "data/flights/b.csv"][-1]["data"]
    assert {(r["column"], r["rule"], r["rows"]) for r in ev["quarantine_rules"]} == {
        ("delay", "cast", 1), ("at", "cast", 1), ("carrier", "not_null", 1)}
    q = {r["row"]: r for r in daemon.get("/sources/flights/quarantine").json() if r["file"].endswith("b.csv")}
    assert (q[2]["column"], q[2]["got"]) == ("delay", "null")
    assert (q[3]["column"], q[3]["got"]) == ("at", "2013/01/02 12:00")


def test_the_dialect_options_read_a_file_as_it_was_written(daemon, project):
    text = ("exported by a tool\n"
            "on some day\n"
            "id;name;day\n"
            "1;'Müller; Jörg';31.12.2013\n"
            "2;'it\\'s';01.01.2014\n")
    (project / "data/dialect/a.csv").write_bytes(text.encode("latin-1"))
    job = daemon.wait_job(daemon.post("/sources/dialect/ingest", {}).json()["id"])
    assert job["state"] == "succeeded", job["error"]
    batch = job["result"]["batches"][0]
    assert (batch["rows_in"], batch["accepted"], batch["quarantined"]) == (2, 2, 0), batch
    got = sorted(rows(daemon, "dialect"))
    assert [(r[0], r[1], r[2]) for r in got] == [(1, "Müller; Jörg", "2013-12-31"), (2, "it's", "2014-01-01")]


def test_a_bad_reading_option_is_refused_by_name(daemon, project, tmp_path):
    for bad, key in (('null_values = "NA"', "null_values"), ('quote = "ab"', "quote"),
                     ('encoding = "ebcdic"', "encoding"), ("skip = -1", "skip"),
                     ('timestamp_format = "YYYY"', "timestamp_format")):
        path = tmp_path / "appliance.toml"
        replaced = 'timestamp_format = "%Y-%m-%d %H:%M:%S"' if key == "timestamp_format" else 'null_values = ["NA", ""]'
        path.write_text(PROJECT.replace(replaced, bad))
        out = daemon.cli("apply", str(path))
        assert out.returncode != 0 and f"sources.flights.{key}" in out.stderr + out.stdout, (bad, out.stderr)


def test_sources_counts_only_the_quarantine_of_batches_not_rejected(daemon, project):
    (project / "data/plain/a.csv").write_text("id,x\n1,1.5\n2,oops\n" + "".join(f"{i},1\n" for i in range(3, 30)))
    (project / "data/plain/b.csv").write_text("id,x\n100,1\n101,no\n102,nope\n103,never\n")
    job = daemon.wait_job(daemon.post("/sources/plain/ingest", {}).json()["id"])
    held = [b for b in job["result"]["batches"] if b["status"] == "held"]
    assert len(held) == 1 and held[0]["quarantined"] == 3, job["result"]
    assert daemon.post(f"/batches/{held[0]['batch_id']}/reject").status_code == 200
    source = next(s for s in daemon.get("/sources").json() if s["name"] == "plain")
    assert (source["rows"], source["quarantined_rows"]) == (28, 1)
