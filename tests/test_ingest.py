"""Ingestion against a real daemon: the contract, the ledger, the poisoning guard, watch mode and the surfaces.

One daemon for the module; each test uses its own source, so tests do not see each other's rows.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from conftest import FIXTURE_PLUGINS

from appliance.testing import DaemonProcess

PROJECT = """
[ingest]
data_dirs = ["data"]
poll_seconds = 0.1

[sources.orders]
kind = "csv"
glob = "data/orders/*.csv"
unique = ["id"]
[sources.orders.columns]
id = "BIGINT"
amount = { type = "DOUBLE", not_null = true, min = 0, max = 100 }
country = { type = "VARCHAR", allowed = ["DE", "FR"] }
email = { type = "VARCHAR", pattern = "[a-z]+@[a-z]+\\\\.com" }

[sources.ledger]
kind = "csv"
path = "data/ledger.csv"
[sources.ledger.columns]
id = "BIGINT"
x = "DOUBLE"

[sources.events]
kind = "csv"
glob = "data/events/*.csv"
label = "clicked"
[sources.events.columns]
id = "BIGINT"
score = "DOUBLE"
device = "VARCHAR"
clicked = "INTEGER"
[sources.events.guard]
min_history_rows = 500
min_batch_rows = 50
exclude = ["id"]

[sources.tolerant]
kind = "csv"
glob = "data/tolerant/*.csv"
mostly = 0.9
[sources.tolerant.columns]
id = "BIGINT"
x = { type = "DOUBLE", min = 0, max_null_fraction = 0.2 }

[sources.incoming]
kind = "jsonl"
watch = "data/incoming"
pattern = "*.jsonl"
[sources.incoming.columns]
id = "BIGINT"
name = "VARCHAR"

[sources.piped]
kind = "psv"
path = "data/piped.psv"
[sources.piped.columns]
id = "BIGINT"
word = "VARCHAR"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest-project")
    for d in ("data/orders", "data/events", "data/tolerant", "data/incoming", "plugins"):
        (root / d).mkdir(parents=True)
    (root / "plugins" / "ingest_psv.py").write_text((FIXTURE_PLUGINS / "ingest_psv.py").read_text())
    (root / "appliance.toml").write_text(PROJECT)
    return root


@pytest.fixture(scope="module")
def daemon(project, tmp_path_factory):
    with DaemonProcess(tmp_path_factory.mktemp("ingest-home") / "home", project=project) as d:
        yield d


def ingest(d, source: str, *files: str) -> dict:
    r = d.post(f"/sources/{source}/ingest", {"files": list(files)} if files else {})
    assert r.status_code == 202, r.text
    return d.wait_job(r.json()["id"])


def counts(d, source: str) -> dict:
    return d.get(f"/sources/{source}").json()


def events_csv(rng: random.Random, n: int, start: int, shift: float = 0.0, click: float = 0.1) -> str:
    devices = ["ios", "android", "web"]
    lines = ["id,score,device,clicked"]
    for i in range(start, start + n):
        lines.append(f"{i},{rng.gauss(50 + shift, 10):.3f},{rng.choice(devices)},{int(rng.random() < click)}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the contract


def test_mixed_good_and_bad_rows_land_with_exact_counts_and_reasons(daemon, project):
    (project / "data/orders/a.csv").write_text(
        "id,amount,country,email\n"
        "1,5,DE,ann@mail.com\n"        # row 1: good
        "2,abc,FR,bob@mail.com\n"      # row 2: not a number
        "3,500,FR,cy@mail.com\n"       # row 3: above max
        "4,6,DE\n"                     # row 4: ragged
        "5,7,US,dee@mail.com\n"        # row 5: not an allowed value
        "1,8,DE,eve@mail.com\n"        # row 6: id 1 again
        "6,,DE,fay@mail.com\n"         # row 7: null amount
        "7,9,FR,not-an-email\n"        # row 8: pattern
        "8,9.5,FR,gus@mail.com\n")     # row 9: good
    job = ingest(daemon, "orders", "data/orders/a.csv")
    assert job["state"] == "succeeded", job["error"]
    batch = job["result"]["batches"][0]
    assert (batch["rows_in"], batch["accepted"], batch["quarantined"]) == (9, 2, 7)
    rows = daemon.get("/sources/orders/rows").json()
    assert sorted(r[0] for r in rows["rows"]) == [1, 8]
    assert {r[-1] for r in rows["rows"]} == {batch["batch_id"]}
    q = daemon.get("/sources/orders/quarantine").json()
    got = {(r["row"], r["column"], r["rule"]) for r in q}
    assert got == {(2, "amount", "cast"), (3, "amount", "max"), (4, "email", "missing columns"),
                   (5, "country", "allowed"), (6, "id", "unique"), (7, "amount", "not_null"),
                   (8, "email", "pattern")}
    by_row = {r["row"]: r for r in q}
    assert by_row[2]["expected"] == "DOUBLE" and "abc" in by_row[2]["got"]
    assert (by_row[3]["expected"], by_row[3]["got"]) == ("<= 100", "500.0")
    assert all(r["file"] == "data/orders/a.csv" and r["batch_id"] == batch["batch_id"] for r in q)
    ev = [e for e in daemon.events("ingest.batch") if e["data"]["source"] == "orders"]
    rules = ev[-1]["data"].pop("quarantine_rules")
    assert ev[-1]["data"] == {"source": "orders", "batch_id": batch["batch_id"], "file": "data/orders/a.csv",
                                   "state": "accepted", "rows_in": 9, "accepted": 2, "quarantined": 7, "held": 0}
    assert sum(r["rows"] for r in rules) == 7 and {"column": "amount", "rule": "cast", "expected": "DOUBLE",
                                                   "rows": 1, "example": "abc"} in rules


def test_a_row_breaking_several_rules_is_reported_once_by_the_first_and_nul_bytes_are_shown_escaped(daemon,
                                                                                                       project):
    (project / "data/orders/multi.csv").write_bytes(
        b"id,amount,country,email\n"
        b"100,500,US,no-email\n"          # row 1: max, allowed and pattern broken: amount comes first
        b"101,5,D\x00E,ann@mail.com\n"     # row 2: a NUL byte in a column with an allowed list
        b"102,5,FR,bob@mail.com\n")       # row 3: good
    batch = ingest(daemon, "orders", "data/orders/multi.csv")["result"]["batches"][0]
    assert (batch["rows_in"], batch["accepted"], batch["quarantined"]) == (3, 1, 2)
    q = [r for r in daemon.get("/sources/orders/quarantine").json() if r["file"] == "data/orders/multi.csv"]
    assert sorted((r["row"], r["column"], r["rule"], r["got"]) for r in q) == [
        (1, "amount", "max", "500.0"), (2, "country", "allowed", "D\\0E")]


def test_a_key_already_accepted_is_quarantined_in_a_later_batch(daemon, project):
    (project / "data/orders/b.csv").write_text("id,amount,country,email\n8,1,DE,hal@mail.com\n9,2,FR,ida@mail.com\n")
    job = ingest(daemon, "orders", "data/orders/b.csv")
    batch = job["result"]["batches"][0]
    assert (batch["accepted"], batch["quarantined"]) == (1, 1)
    q = daemon.get("/sources/orders/quarantine", params={"batch": batch["batch_id"]}).json()
    assert [(r["row"], r["rule"], r["got"]) for r in q] == [(1, "unique", "8")]


# ------------------------------------------------------------------------------------------------ exactly once


def test_the_same_file_again_changes_nothing_and_a_changed_file_is_a_new_batch(daemon, project):
    path = project / "data/ledger.csv"
    path.write_text("id,x\n1,1.5\n2,2.5\n")
    first = ingest(daemon, "ledger")["result"]["batches"][0]
    assert first["status"] == "accepted"
    before = counts(daemon, "ledger")
    events_before = len(daemon.events("ingest.batch"))
    again = ingest(daemon, "ledger")["result"]["batches"][0]
    assert again["status"] == "duplicate" and again["duplicate_of"] == first["batch_id"]
    assert counts(daemon, "ledger") == before
    assert len(daemon.events("ingest.batch")) == events_before
    path.write_text("id,x\n1,1.5\n2,2.5\n3,3.5\n")
    changed = ingest(daemon, "ledger")["result"]["batches"][0]
    assert changed["status"] == "accepted" and changed["batch_id"] != first["batch_id"]
    assert counts(daemon, "ledger")["rows"] == 5
    ledger = daemon.get("/batches", params={"source": "ledger"}).json()
    assert len(ledger) == 2 and len({b["content_hash"] for b in ledger}) == 2
    assert all(b["file"] == "data/ledger.csv" and b["time"] > 0 for b in ledger)


# ------------------------------------------------------------------------------------------------ the guard


def test_a_poisoned_batch_is_held_out_of_the_raw_table_until_approved(daemon, project):
    rng = random.Random(7)
    for i in range(2):
        (project / f"data/events/h{i}.csv").write_text(events_csv(rng, 400, i * 400))
        job = ingest(daemon, "events", f"data/events/h{i}.csv")
        assert job["result"]["batches"][0]["status"] == "accepted"
    assert counts(daemon, "events")["rows"] == 800
    normal = project / "data/events/normal.csv"
    normal.write_text(events_csv(rng, 300, 800))
    assert ingest(daemon, "events", "data/events/normal.csv")["result"]["batches"][0]["status"] == "accepted"
    (project / "data/events/shifted.csv").write_text(events_csv(rng, 300, 1100, shift=25))
    held = ingest(daemon, "events", "data/events/shifted.csv")["result"]["batches"][0]
    assert held["status"] == "held"
    assert any("'score'" in r and "PSI" in r for r in held["reasons"]), held["reasons"]
    assert held["psi"]["score"] > 0.25 and held["psi"]["device"] < 0.25
    assert counts(daemon, "events")["rows"] == 1100  # the held rows are not visible
    assert daemon.events("ingest.held")[-1]["data"]["batch_id"] == held["batch_id"]
    out = daemon.cli("batches", "approve", str(held["batch_id"]), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"] == "approved"
    assert counts(daemon, "events")["rows"] == 1400
    assert daemon.events("ingest.approved")[-1]["data"] == {"source": "events", "batch_id": held["batch_id"],
                                                            "rows": 300}
    r = daemon.post(f"/batches/{held['batch_id']}/approve")
    assert r.status_code == 409 and "approved" in r.json()["error"]["message"]


def test_a_label_rate_jump_is_held_and_a_rejected_batch_never_lands(daemon, project):
    rng = random.Random(8)
    (project / "data/events/labels.csv").write_text(events_csv(rng, 300, 5000, click=0.6))
    held = ingest(daemon, "events", "data/events/labels.csv")["result"]["batches"][0]
    assert held["status"] == "held"
    assert any("label 'clicked'" in r for r in held["reasons"]), held["reasons"]
    before = counts(daemon, "events")["rows"]
    out = daemon.cli("batches", "reject", str(held["batch_id"]), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"] == "rejected"
    assert counts(daemon, "events")["rows"] == before
    assert daemon.events("ingest.rejected")[-1]["data"]["batch_id"] == held["batch_id"]
    again = ingest(daemon, "events", "data/events/labels.csv")["result"]["batches"][0]
    assert again["status"] == "duplicate" and again["state"] == "rejected"


def test_tolerance_and_null_fraction_hold_a_batch(daemon, project):
    good = "id,x\n" + "".join(f"{i},{i}\n" for i in range(20))
    (project / "data/tolerant/ok.csv").write_text(good)
    assert ingest(daemon, "tolerant", "data/tolerant/ok.csv")["result"]["batches"][0]["status"] == "accepted"
    bad = "id,x\n" + "".join(f"{i},{-1 if i < 103 else i}\n" for i in range(100, 120))
    (project / "data/tolerant/negative.csv").write_text(bad)
    held = ingest(daemon, "tolerant", "data/tolerant/negative.csv")["result"]["batches"][0]
    assert (held["status"], held["accepted"], held["quarantined"]) == ("held", 17, 3)
    assert "tolerance mostly = 0.9" in held["reasons"][0]
    nulls = "id,x\n" + "".join(f"{i},{'' if i % 2 else i}\n" for i in range(200, 220))
    (project / "data/tolerant/nulls.csv").write_text(nulls)
    held = ingest(daemon, "tolerant", "data/tolerant/nulls.csv")["result"]["batches"][0]
    assert held["status"] == "held" and "50.0% nulls exceeds max_null_fraction = 0.2" in held["reasons"][0]
    assert counts(daemon, "tolerant")["rows"] == 20


# ------------------------------------------------------------------------------------------------ watch mode


def test_watch_mode_ingests_new_files_in_the_watched_directory(daemon, project):
    tmp = project / "data/incoming/.part"
    tmp.write_text('{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n')
    tmp.rename(project / "data/incoming/one.jsonl")
    (project / "data/incoming/notes.txt").write_text("not matched by the pattern")
    deadline = time.monotonic() + 20
    while counts(daemon, "incoming")["rows"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counts(daemon, "incoming")["rows"] == 2
    (project / "data/incoming/two.jsonl").write_text('{"id": 3, "name": "c"}\n')
    while counts(daemon, "incoming")["rows"] < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # several more polls: nothing is ingested twice
    c = counts(daemon, "incoming")
    assert (c["rows"], c["batches"]) == (3, 2)
    jobs = daemon.get("/jobs", params={"kind": "ingest"}).json()
    assert {j["origin"] for j in jobs if j["params"]["source"] == "incoming"} == {"watch"}


# ------------------------------------------------------------------------------------------------ the hook


def test_hook_register_sources(daemon, project):
    (project / "data/piped.psv").write_text("id|word\n1|one\n2|two\nthree|3\n")
    batch = ingest(daemon, "piped")["result"]["batches"][0]
    assert (batch["accepted"], batch["quarantined"]) == (2, 1)
    q = daemon.get("/sources/piped/quarantine").json()
    assert [(r["row"], r["column"], r["rule"], r["expected"], r["got"]) for r in q] == \
        [(3, "id", "type", "BIGINT", "three")]
    kinds = {p["name"]: p["registrations"] for p in daemon.get("/plugins").json()["plugins"]}
    assert kinds["ingest_psv"]["sources"] == ["psv"]
    assert set(kinds["ingest"]["sources"]) == {"csv", "parquet", "jsonl", "json"}


# ------------------------------------------------------------------------------------------------ surfaces


def test_cli_commands_speak_json_and_tables(daemon, project):
    out = daemon.cli("sources", "--json")
    assert out.returncode == 0, out.stderr
    by_name = {s["name"]: s for s in json.loads(out.stdout)}
    assert by_name["ledger"]["rows"] == 5 and by_name["orders"]["kind"] == "csv"
    assert "ledger" in daemon.cli("sources").stdout
    (project / "data/orders/cli.csv").write_text("id,amount,country,email\n100,1,DE,x@y.com\n101,-1,DE,z@y.com\n")
    out = daemon.cli("ingest", "orders", str(project / "data/orders/cli.csv"), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["result"]["batches"][0]
    assert (result["accepted"], result["quarantined"]) == (1, 1)
    out = daemon.cli("ingest", "orders", str(project / "data/orders/cli.csv"))
    assert "already ingested as batch" in out.stdout
    out = daemon.cli("quarantine", "orders", "--batch", str(result["batch_id"]), "--json")
    assert [(r["row"], r["column"], r["rule"]) for r in json.loads(out.stdout)] == [(2, "amount", "min")]
    assert "min" in daemon.cli("quarantine", "orders").stdout
    out = daemon.cli("batches", "--source", "orders", "--json")
    assert result["batch_id"] in {b["id"] for b in json.loads(out.stdout)}
    out = daemon.cli("ingest", "nosuch")
    assert out.returncode == 1 and "no source 'nosuch'" in out.stderr


def test_api_errors_are_clear_and_never_500(daemon):
    assert daemon.get("/sources/nosuch").status_code == 404
    assert daemon.get("/batches/999999").status_code == 404
    r = daemon.post("/sources/ledger/ingest", {"files": ["data/missing.csv"]})
    assert r.status_code == 400 and "no such file" in r.json()["error"]["message"]
    assert daemon.get("/batches", params={"state": "weird"}).status_code == 400
    assert daemon.post("/sources/ledger/ingest", {"file": "x"}).status_code == 400
