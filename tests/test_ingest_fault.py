"""``kill -9`` of the daemon while it ingests a large file: nothing of the file survives, and ingesting it again
lands every row exactly once, with one ledger entry."""

from __future__ import annotations

import hashlib
import time

import duckdb

from appliance.testing import DaemonProcess

ROWS = 8_000_000  # seconds of reading even on a quiet machine: the kill must land mid-read


def test_kill_9_while_ingesting_leaves_nothing_and_a_rerun_lands_every_row_once(tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "appliance.toml").write_text(
        '[ingest]\ndata_dirs = ["data"]\n\n[sources.big]\nkind = "csv"\npath = "data/big.csv"\n'
        'unique = ["id"]\ncolumns = { id = "BIGINT", x = "DOUBLE", s = "VARCHAR" }\n')
    # Written by DuckDB in this process: a file of its own, not the daemon's store.
    duckdb.sql(f"copy (select range as id, range * 0.5 as x, 'row ' || range as s from range({ROWS})) "
               f"to '{project / 'data/big.csv'}' (header)")
    d = DaemonProcess(tmp_path / "home", project=project).start()
    try:
        job = d.post("/sources/big/ingest").json()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            j = d.get(f"/jobs/{job['id']}").json()
            assert j["state"] in ("queued", "running"), j
            if j["state"] == "running":
                break
            time.sleep(0.01)
        time.sleep(0.3)  # inside the read: an 8M-row file takes seconds
        assert d.get(f"/jobs/{job['id']}").json()["state"] == "running"
        d.kill()
        d.start()
        assert d.get(f"/jobs/{job['id']}").json()["state"] == "failed"
        s = d.get("/sources/big").json()
        assert (s["rows"], s["quarantined_rows"], s["batches"]) == (0, 0, 0)
        again = d.wait_job(d.post("/sources/big/ingest").json()["id"], timeout=120)
        assert again["state"] == "succeeded", again["error"]
        batch = again["result"]["batches"][0]
        assert (batch["rows_in"], batch["accepted"], batch["quarantined"]) == (ROWS, ROWS, 0)
        s = d.get("/sources/big").json()
        assert (s["rows"], s["batches"]) == (ROWS, 1)
        assert d.wait_job(d.post("/sources/big/ingest").json()["id"])["result"]["batches"][0]["status"] == \
            "duplicate"
        assert len(d.get("/batches", params={"source": "big"}).json()) == 1
    finally:
        d.stop()


def test_a_ledger_from_before_blake3_still_knows_its_files(tmp_path):
    """Upgrading keeps exactly-once: batches ledgered with a sha256 (the old ``sha256`` column) are renamed in
    place, and a file that one of them holds is still a duplicate, not a second copy of its rows."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "appliance.toml").write_text(
        '[ingest]\ndata_dirs = ["data"]\n\n[sources.old]\nkind = "csv"\npath = "data/old.csv"\n'
        'columns = { id = "BIGINT", x = "DOUBLE" }\n')
    data = project / "data/old.csv"
    data.write_text("id,x\n1,0.5\n2,1.5\n")
    home = tmp_path / "home"
    d = DaemonProcess(home, project=project).start()
    try:
        first = d.wait_job(d.post("/sources/old/ingest").json()["id"])["result"]["batches"][0]
        assert first["status"] == "accepted" and first["content_hash"].startswith("blake3:")
    finally:
        d.stop()
    # Rewrite the ledger as the previous release left it: a bare sha256 hex in a column named sha256.
    con = duckdb.connect(str(home / "store.duckdb"))
    con.execute("alter table ingest.batches rename column content_hash to sha256")
    con.execute("update ingest.batches set sha256 = ?", [hashlib.sha256(data.read_bytes()).hexdigest()])
    con.close()
    d.start()
    try:
        again = d.wait_job(d.post("/sources/old/ingest").json()["id"])["result"]["batches"][0]
        assert again["status"] == "duplicate" and again["duplicate_of"] == first["batch_id"]
        assert d.get("/sources/old").json()["rows"] == 2
        (ledger,) = d.get("/batches", params={"source": "old"}).json()
        assert ledger["content_hash"] == "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    finally:
        d.stop()


def test_a_file_too_big_for_the_disk_is_refused_before_a_byte_is_written(tmp_path):
    """A file too big for the store's disk fails its ingest saying so (needed, free, where) before writing: a
    rolled-back load would leave DuckDB's file grown (it does not give blocks back), the disk full, and the
    failure unrecordable. The failure is recorded, the space is all there, and the next (smaller) file lands."""
    from faults.harness import free_bytes, small_disk

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "appliance.toml").write_text(
        '[ingest]\ndata_dirs = ["data"]\n\n[sources.big]\nkind = "parquet"\nglob = "data/*.parquet"\n')
    duckdb.sql(f"copy (select range as id, random() as x, md5(range::varchar) as s from range(1000000)) "
               f"to '{project / 'data/big.parquet'}'")
    with small_disk(tmp_path / "disk", mb=24) as disk:
        d = DaemonProcess(disk / "home", project=project)
        d.stderr_path = tmp_path / "daemon-stderr.log"
        d.start()
        try:
            free = free_bytes(disk)
            for _ in range(2):
                job = d.wait_job(d.post("/sources/big/ingest", {"files": ["data/big.parquet"]}).json()["id"],
                                 timeout=30)
                assert job["state"] == "failed", job
                assert "not enough space on the disk holding the store" in job["error"], job["error"]
                assert f"free at {disk / 'home'}; nothing was written" in job["error"], job["error"]
                assert free_bytes(disk) > free - (2 << 20), "the failed batch kept its space"
            duckdb.sql(f"copy (select 1 as id, 0.5 as x, 'a' as s) to '{project / 'data/small.parquet'}'")
            job = d.wait_job(d.post("/sources/big/ingest", {"files": ["data/small.parquet"]}).json()["id"])
            assert job["state"] == "succeeded", job["error"]
            assert d.get("/sources/big").json()["rows"] == 1
        finally:
            d.stop()
