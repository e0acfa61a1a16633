"""The plugin as users get it: installed, loaded by real daemons (``appliance_daemon``) and in-process apps
(``appliance_app``), ingesting SQLite tables through the built-in ingest plugin."""

from __future__ import annotations

import sqlite3

import appliance_sqlite
import pytest

from appliance import ConfigError

TOML = """\
[ingest]
data_dirs = ["data"]

[sources.customers]
kind = "sqlite"
path = "data/crm.sqlite"
table = "customers"
order_by = "id"
unique = ["id"]

[sources.customers.columns]
id = "BIGINT"
name = "VARCHAR"
spend = { type = "DOUBLE", min = 0 }
"""


def make_database(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("create table if not exists customers (id integer primary key, name text, spend real)")
    con.executemany("insert into customers values (?, ?, ?)", rows)
    con.commit()
    con.close()


def test_a_table_is_ingested_under_the_sources_contract(appliance_app):
    app = appliance_app(TOML, plugins=[appliance_sqlite], builtins=["ingest"])
    make_database(app.app.config.project_dir / "data" / "crm.sqlite",
                  [(2, "bob", 5.5), (1, "ada", 12.0), (3, "eve", -1.0)])
    job = app.wait_job(app.post("/sources/customers/ingest").json()["id"])
    assert job["state"] == "succeeded", job
    assert [r[:3] for r in app.get("/sources/customers/rows").json()["rows"]] == [[1, "ada", 12.0], [2, "bob", 5.5]]
    [bad] = app.get("/sources/customers/quarantine").json()
    assert (bad["rule"], bad["column"], bad["got"]) == ("min", "spend", "-1.0")


def test_the_daemon_loads_the_kind_from_its_entry_point_and_ingests_changes(appliance_daemon):
    d = appliance_daemon(TOML)
    record = next(p for p in d.get("/plugins").json()["plugins"] if p["name"] == "sqlite")
    assert (record["source"], record["status"]) == ("entrypoint", "loaded")
    database = d.project / "data" / "crm.sqlite"
    make_database(database, [(1, "ada", 12.0)])
    assert d.wait_job(d.post("/sources/customers/ingest").json()["id"])["state"] == "succeeded"
    make_database(database, [(2, "bob", 5.5)])
    assert d.wait_job(d.post("/sources/customers/ingest").json()["id"])["state"] == "succeeded"
    assert [r[0] for r in d.get("/sources/customers/rows").json()["rows"]] == [1, 2]
    assert list((d.home / "appliance_sqlite").glob("customers-*.jsonl"))  # kept under the home


@pytest.mark.parametrize("change, error", [
    ('table = "customers"\n', "appliance.toml:4: sources.customers: table is required (the table to read)"),
    ('order_by = "id"', "appliance.toml:8: sources.customers.order_by: expected a string, got int 3"),
])
def test_option_mistakes_name_file_line_and_key(appliance_app, change, error):
    bad = TOML.replace(change, "" if change.endswith("\n") else "order_by = 3")
    with pytest.raises(ConfigError) as err:
        appliance_app(bad, plugins=[appliance_sqlite], builtins=["ingest"])
    assert error in str(err.value)
