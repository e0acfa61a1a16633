"""``kill -9`` of the daemon while it ingests a large file: nothing of the file survives, and ingesting it again
lands every row exactly once, with one ledger entry."""

from __future__ import annotations

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
