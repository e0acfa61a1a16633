"""Damage inside catalog.db or store.duckdb is found, said, and never blamed on the client.

A bad disk is played by overwriting bytes inside a page of the catalog or a block of the store while the daemon
is down. At the next start, health says "damaged" and how to restore a backup; a request that meets the
damage is a 503 that says so, not a 500, and not a 400 blaming its sender.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.testing import DaemonProcess
from faults.harness import corrupt

PROJECT = """
[entities.customer]
join_keys = ["customer_id"]

[feature_views.spend]
source = "data/transactions.parquet"
entities = ["customer"]
event_time = "ts"
features = ["amount"]
"""


def _until(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def _damage_catalog(path) -> None:
    """Many events, then garbage over the header of an events page in the middle of the file."""
    con = sqlite3.connect(path)
    con.executemany("insert into events (time, type, subject, data) values (?, 'filler', '', ?)",
                    [(time.time(), json.dumps({"pad": "x" * 400})) for _ in range(3000)])
    con.commit()
    leaves = [p for (p,) in con.execute("select pageno from dbstat where name = 'events' and pagetype = 'leaf' "
                                        "order by pageno")]
    page_size = con.execute("pragma page_size").fetchone()[0]
    con.close()
    corrupt(path, (leaves[len(leaves) // 2] - 1) * page_size)


def test_a_damaged_catalog_is_found_at_start_and_every_surface_says_how_to_restore(tmp_path):
    d = DaemonProcess(tmp_path / "home")
    with d:
        backup = d.wait_job(d.submit("backup")["id"], timeout=60)
        assert backup["state"] == "succeeded"
    _damage_catalog(tmp_path / "home" / "catalog.db")
    with d:
        health = d.get("/health").json()
        assert health["status"] == "damaged"
        [problem] = [p for p in health["problems"] if p["part"] == "catalog.db"]
        restore = f"appliance restore {backup['result']['path']} --home NEW_HOME"
        assert restore in problem["remedy"]
        shown = d.cli("status")
        assert shown.returncode == 0 and "health: damaged" in shown.stdout and restore in shown.stdout
        read = d.get("/events", params={"after": 0, "limit": 100_000})
        assert read.status_code == 503, read.text
        assert read.json()["error"]["title"] == "Store damaged" and restore in read.json()["error"]["message"]


def _damage_store_table(path, schema: str) -> None:
    """Garbage inside the first data block of each table in ``schema``."""
    con = duckdb.connect(str(path), read_only=True)
    tables = [t for (t,) in con.execute("select table_name from duckdb_tables() where schema_name = ?",
                                        [schema]).fetchall()]
    blocks = {b for t in tables for (b,) in con.execute(
        f"select block_id from pragma_storage_info('{schema}.\"{t}\"') where block_id >= 0").fetchall()}
    block_size = con.execute("select block_size from pragma_database_size()").fetchone()[0]
    con.close()
    assert blocks
    for block in blocks:
        corrupt(path, 3 * 4096 + block * block_size + 64)  # past the file's three headers and the block's sum


def test_a_damaged_store_block_is_found_and_online_lookups_say_so_instead_of_blaming_the_client(tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "appliance.toml").write_text(PROJECT)
    rows = [{"customer_id": i % 500, "ts": dt.datetime(2100, 1, 1) - dt.timedelta(minutes=i), "amount": float(i)}
            for i in range(20_000)]
    pq.write_table(pa.Table.from_pylist(rows), project / "data" / "transactions.parquet")
    d = DaemonProcess(tmp_path / "home", project)
    with d:
        done = d.wait_job(d.post("/features/spend/materialize").json()["id"], timeout=60)
        assert done["state"] == "succeeded", done
        lookup = {"entity": {"customer_id": 1}, "features": ["spend:amount"]}
        assert d.post("/features/online", lookup).json()["values"] == [{"spend:amount": 1.0}]
    _damage_store_table(tmp_path / "home" / "store.duckdb", "features")
    with d:
        assert _until(lambda: d.get("/health").json()["status"] == "damaged")
        [problem] = [p for p in d.get("/health").json()["problems"] if p["part"] == "store.duckdb"]
        assert "appliance restore BACKUP_DIR --home NEW_HOME" in problem["remedy"]  # no backup was taken
        assert _until(lambda: d.post("/features/online", lookup).status_code == 503)  # once loading gave up
        assert "store.duckdb is damaged" in d.post("/features/online", lookup).json()["error"]["message"]


def test_a_store_too_damaged_to_open_refuses_the_start_and_says_how_to_restore(tmp_path):
    d = DaemonProcess(tmp_path / "home")
    with d:
        pass
    corrupt(tmp_path / "home" / "store.duckdb", 4096, b"\xde\xad\xbe\xef" * 2048)  # both database headers
    out = d.cli("up", "--port", "0")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "error: Store damaged: store.duckdb is damaged" in out.stderr
    assert "appliance restore BACKUP_DIR --home NEW_HOME" in out.stderr


def test_a_damaged_store_gives_entity_key_inference_a_503_that_says_so(tmp_path):
    """The serving port's entity-key path meets the same damage: a 503 naming it, not a 400 for the client."""
    from conftest import make_project
    from serving_models import linear_model

    toml = PROJECT + ('\n[serving]\nport = 0\n\n[deployments.scored]\nmodel = "fraud@champion"\n'
                      'entity_keys = ["customer_id"]\nfeatures = ["spend:amount"]\nfeatures_input = "features"\n')
    project = make_project(tmp_path / "project", [], toml)
    (project / "data").mkdir()
    rows = [{"customer_id": i % 500, "ts": dt.datetime(2000, 1, 1) + dt.timedelta(minutes=i), "amount": float(i)}
            for i in range(20_000)]
    pq.write_table(pa.Table.from_pylist(rows), project / "data" / "transactions.parquet")
    body = {"inputs": [{"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [1]}]}
    d = DaemonProcess(tmp_path / "home", project)
    with d:
        assert d.wait_job(d.post("/features/spend/materialize").json()["id"], timeout=60)["state"] == "succeeded"
        model = linear_model(tmp_path / "m.onnx", seed=1, n_features=1)
        d.register_model("fraud", model)
        assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
        infer = f"http://127.0.0.1:{d.info['ports']['serving']}/v2/models/scored/infer"
        assert _until(lambda: httpx.post(infer, json=body).status_code == 200)
    _damage_store_table(tmp_path / "home" / "store.duckdb", "features")
    with d:
        infer = f"http://127.0.0.1:{d.info['ports']['serving']}/v2/models/scored/infer"
        assert _until(lambda: d.get("/health").json()["status"] == "damaged")
        assert _until(lambda: httpx.post(infer, json=body).status_code == 503)
        answer = httpx.post(infer, json=body)
        assert answer.status_code == 503 and "store.duckdb is damaged" in answer.json()["error"], answer.text
