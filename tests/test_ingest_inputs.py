"""Bad input, one test each: a documented coercion or a clear error naming file, row and column, and never a
partly written batch (an error leaves no rows, no quarantine rows and no ledger entry behind).

Coercions, as documented here: a UTF-8 byte order mark is dropped; quoted newlines stay in the value; a column
whose values mix types is read as text when the source declares no type, and values that do not fit a declared
type are quarantined (a decimal in an integer column is rounded, as DuckDB casts it); an empty file or a header alone is a batch of no rows. Quarantined with the reason: ragged
records, NUL bytes in text, invalid UTF-8. Refused with an error: a truncated Parquet file, JSON with a duplicate
key, a file whose columns drifted, a path outside the data directories, a source name that is not an identifier.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.testing import DaemonProcess

SOURCES = {
    "bom": 'kind = "csv"\npath = "data/bom.csv"',
    "ragged": 'kind = "csv"\npath = "data/ragged.csv"\ncolumns = { a = "INTEGER", b = "VARCHAR" }',
    "nul": 'kind = "csv"\npath = "data/nul.csv"\ncolumns = { a = "INTEGER", b = "VARCHAR" }',
    "latin": 'kind = "csv"\npath = "data/latin.csv"\ncolumns = { a = "INTEGER", b = "VARCHAR" }',
    "multiline": 'kind = "csv"\npath = "data/multiline.csv"\ncolumns = { a = "INTEGER", b = "VARCHAR" }',
    "mixed": 'kind = "csv"\npath = "data/mixed.csv"\ncolumns = { a = "INTEGER" }',
    "mixed_free": 'kind = "csv"\npath = "data/mixed.csv"',
    "wide": 'kind = "csv"\npath = "data/wide.csv"',
    "empty": 'kind = "csv"\npath = "data/empty.csv"\ncolumns = { a = "INTEGER", b = "VARCHAR" }',
    "header": 'kind = "csv"\npath = "data/header.csv"\ncolumns = { a = "INTEGER", b = "VARCHAR" }',
    "truncated": 'kind = "parquet"\npath = "data/truncated.parquet"',
    "dupkeys": 'kind = "jsonl"\npath = "data/dupkeys.jsonl"\ncolumns = { a = "BIGINT", b = "VARCHAR" }',
    "longline": 'kind = "jsonl"\npath = "data/long.jsonl"\ncolumns = { a = "BIGINT", b = "VARCHAR" }',
    "drift": 'kind = "parquet"\nglob = "data/drift/*.parquet"',
    "weird": 'kind = "csv"\npath = "data/weird.csv"',
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs-project")
    (root / "data/drift").mkdir(parents=True)
    (root / "outside.csv").write_text("a,b\n1,secret\n")
    toml = '[ingest]\ndata_dirs = ["data"]\n' + "".join(f"\n[sources.{n}]\n{t}\n" for n, t in SOURCES.items())
    (root / "appliance.toml").write_text(toml)
    return root


@pytest.fixture(scope="module")
def daemon(project, tmp_path_factory):
    with DaemonProcess(tmp_path_factory.mktemp("inputs-home") / "home", project=project) as d:
        yield d


def ingest(d, source: str, *files: str) -> dict:
    r = d.post(f"/sources/{source}/ingest", {"files": list(files)} if files else {})
    assert r.status_code == 202, r.text
    return d.wait_job(r.json()["id"])


def landed(d, source: str) -> dict:
    job = ingest(d, source)
    assert job["state"] == "succeeded", job["error"]
    return job["result"]["batches"][0]


def refused(d, source: str) -> str:
    """The job failed, and left nothing behind."""
    job = ingest(d, source)
    assert job["state"] == "failed"
    s = d.get(f"/sources/{source}").json()
    assert (s["rows"], s["quarantined_rows"], s["batches"]) == (0, 0, 0)
    return job["error"]


def quarantined(d, source: str) -> list[tuple]:
    return [(r["row"], r["column"], r["rule"]) for r in d.get(f"/sources/{source}/quarantine").json()]


def test_csv_with_a_byte_order_mark(daemon, project):
    (project / "data/bom.csv").write_bytes(b"\xef\xbb\xbfa,b\n1,x\n2,y\n")
    assert landed(daemon, "bom")["accepted"] == 2
    assert daemon.get("/sources/bom/rows").json()["columns"] == ["a", "b", "_batch_id"]


def test_ragged_rows_are_quarantined_with_their_row(daemon, project):
    (project / "data/ragged.csv").write_text("a,b\n1,x\n2\n3,y,extra\n4,z\n")
    batch = landed(daemon, "ragged")
    assert (batch["accepted"], batch["quarantined"]) == (2, 2)
    assert quarantined(daemon, "ragged") == [(2, "b", "missing columns"), (3, None, "too many columns")]


def test_nul_bytes_are_quarantined(daemon, project):
    (project / "data/nul.csv").write_bytes(b"a,b\n1,x\x00y\n2,z\n")
    assert landed(daemon, "nul")["accepted"] == 1
    assert quarantined(daemon, "nul") == [(1, "b", "nul_byte")]


def test_invalid_utf8_is_quarantined(daemon, project):
    (project / "data/latin.csv").write_bytes(b"a,b\n1,caf\xe9\n2,ok\n")
    assert landed(daemon, "latin")["accepted"] == 1
    assert quarantined(daemon, "latin") == [(1, "b", "invalid encoding")]


def test_quoted_newlines_stay_in_the_value(daemon, project):
    (project / "data/multiline.csv").write_text('a,b\n1,"two\nlines"\n2,"a ""quote"", and, commas"\n')
    assert landed(daemon, "multiline")["accepted"] == 2
    rows = daemon.get("/sources/multiline/rows").json()["rows"]
    assert sorted(r[1] for r in rows) == ['a "quote", and, commas', "two\nlines"]


def test_mixed_types_in_one_column(daemon, project):
    (project / "data/mixed.csv").write_text("a\n1\ntwo\n3\n4.5\n2024-01-01\n")
    batch = landed(daemon, "mixed")
    assert (batch["accepted"], batch["quarantined"]) == (3, 2)
    q = daemon.get("/sources/mixed/quarantine").json()
    assert [(r["row"], r["column"], r["rule"], r["expected"]) for r in q] == \
        [(2, "a", "cast", "INTEGER"), (5, "a", "cast", "INTEGER")]
    rows = daemon.get("/sources/mixed/rows").json()["rows"]
    assert sorted(r[0] for r in rows) == [1, 3, 5]  # DuckDB's cast rounds 4.5 to 5: a documented coercion
    assert landed(daemon, "mixed_free")["accepted"] == 5  # undeclared: the sniffer makes it text
    assert daemon.get("/sources/mixed_free").json()["table_columns"] == [["a", "VARCHAR"]]


def test_two_thousand_columns(daemon, project):
    names = [f"c{i}" for i in range(2000)]
    rows = [",".join(str(r * 2000 + i) for i in range(2000)) for r in range(3)]
    (project / "data/wide.csv").write_text(",".join(names) + "\n" + "\n".join(rows) + "\n")
    assert landed(daemon, "wide")["accepted"] == 3
    assert len(daemon.get("/sources/wide").json()["table_columns"]) == 2000


def test_an_empty_file_and_a_header_alone_are_batches_of_no_rows(daemon, project):
    (project / "data/empty.csv").write_bytes(b"")
    (project / "data/header.csv").write_text("a,b\n")
    for source in ("empty", "header"):
        batch = landed(daemon, source)
        assert (batch["status"], batch["rows_in"], batch["accepted"]) == ("accepted", 0, 0)
        assert landed(daemon, source)["status"] == "duplicate"


def test_a_truncated_parquet_file_is_refused(daemon, project):
    pq.write_table(pa.table({"a": list(range(1000))}), project / "data/full.parquet")
    data = (project / "data/full.parquet").read_bytes()
    (project / "data/truncated.parquet").write_bytes(data[: len(data) // 2])
    error = refused(daemon, "truncated")
    assert error.startswith("data/truncated.parquet:") and "magic bytes" in error


def test_json_with_duplicate_keys_is_refused_naming_line_and_key(daemon, project):
    (project / "data/dupkeys.jsonl").write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": "y", "a": 3}\n')
    error = refused(daemon, "dupkeys")
    assert "data/dupkeys.jsonl" in error and "line 2" in error and 'duplicate key "a"' in error


def test_json_with_a_single_very_long_line(daemon, project):
    long = "x" * (20 << 20)  # beyond DuckDB's default 16 MiB object size
    (project / "data/long.jsonl").write_text(json.dumps({"a": 1, "b": long}) + "\n")
    batch = landed(daemon, "longline")
    assert batch["accepted"] == 1


def test_a_second_file_whose_schema_drifted_is_refused(daemon, project):
    pq.write_table(pa.table({"id": [1, 2], "x": [0.5, 1.5]}), project / "data/drift/1.parquet")
    job = ingest(daemon, "drift", "data/drift/1.parquet")
    assert job["state"] == "succeeded"
    pq.write_table(pa.table({"id": [3], "y": [2.5]}), project / "data/drift/2.parquet")
    job = ingest(daemon, "drift", "data/drift/2.parquet")
    assert job["state"] == "failed"
    assert "data/drift/2.parquet: the schema drifted" in job["error"]
    assert "missing column(s) 'x'" in job["error"] and "unexpected column(s) 'y'" in job["error"]
    pq.write_table(pa.table({"id": ["three"], "x": [2.5]}), project / "data/drift/3.parquet")
    batch = ingest(daemon, "drift", "data/drift/3.parquet")["result"]["batches"][0]
    assert batch["quarantined"] == 1  # a changed type is cast, and what does not fit is quarantined
    s = daemon.get("/sources/drift").json()
    assert (s["rows"], s["batches"]) == (2, 2)


def test_paths_outside_the_data_directories_are_refused(daemon, project):
    for path in ["outside.csv", "../outside.csv", str(project / "outside.csv"), "data/../outside.csv"]:
        r = daemon.post("/sources/bom/ingest", {"files": [path]})
        assert r.status_code == 400 and "outside the data directories" in r.json()["error"]["message"], path
    (project / "data/link.csv").symlink_to(project / "outside.csv")
    r = daemon.post("/sources/bom/ingest", {"files": ["data/link.csv"]})
    assert r.status_code == 400 and "outside the data directories" in r.json()["error"]["message"]


def test_quotes_and_semicolons_in_names(daemon, project):
    evil = 'x"; drop table raw.bom; --'
    (project / "data/weird.csv").write_text(f'"{evil.replace(chr(34), 2 * chr(34))}",b\n1,2\n')
    assert landed(daemon, "weird")["accepted"] == 1
    assert daemon.get("/sources/weird/rows").json()["columns"] == [evil, "b", "_batch_id"]
    assert daemon.get("/sources/bom").json()["rows"] == 2  # still there
    bad = project / "bad.toml"
    bad.write_text((project / "appliance.toml").read_text() + '\n[sources."a;b"]\nkind = "csv"\npath = "data/x.csv"\n')
    out = daemon.cli("apply", str(bad))
    assert out.returncode == 1 and "sources.a;b" in out.stderr and "a source name must be" in out.stderr
    bad.write_text('[ingest]\ndata_dirs = ["../elsewhere"]\n')
    out = daemon.cli("apply", str(bad))
    assert out.returncode == 1 and "ingest.data_dirs" in out.stderr and "outside the project" in out.stderr
    assert daemon.get("/sources/bom").status_code == 200  # the running configuration stayed


def test_a_nul_byte_in_a_path_is_a_400_naming_the_path(daemon):
    failures = len(daemon.get("/plugins").json()["failures"])
    r = daemon.post("/sources/bom/ingest", {"files": ["data/bom\x00.csv"]})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "'data/bom\\x00.csv'" in message and "NUL" in message
    r = daemon.post("/apply", {"project": "elsewhere\x00/appliance.toml"})
    assert r.status_code == 400 and "NUL" in r.json()["error"]["message"], r.text
    assert len(daemon.get("/plugins").json()["failures"]) == failures
