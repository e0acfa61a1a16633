"""The feature store against a real daemon: config, materialization, training sets, online values, surfaces.

One daemon for the module; the project's sources are Parquet files in the project dir (the ingest plugin's
``raw.*`` tables are DuckDB tables the same code reads). A drop-in probe plugin calls the in-daemon services
as the serving and training plugins do.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.testing import DaemonProcess

HERE = Path(__file__).parent
T = dt.datetime

PROJECT = """
[entities.customer]
join_keys = ["customer_id"]

[entities.merchant]
join_keys = ["merchant"]

[feature_views.spend]
source = "data/transactions.parquet"
entities = ["customer"]
event_time = "ts"
ttl = "{ttl}"
sql = "select customer_id, ts, amount, amount >= 20 as large from source"
description = "what a customer spends"

[[feature_views.spend.windows]]
column = "amount"
function = "sum"
over = ["1d"]

[feature_views.pair]
source = "data/transactions.parquet"
entities = ["customer", "merchant"]
event_time = "ts"
features = ["amount"]

[feature_views.late]
source = "data/late.parquet"
entities = ["customer"]
event_time = "ts"
features = ["score"]
"""

TRANSACTIONS = [
    (1, T(2024, 1, 1, 10), 10.0, "a"),
    (1, T(2024, 1, 1, 11), 20.0, "b"),
    (1, T(2024, 1, 2, 10), 5.0, "a"),
    (2, T(2024, 1, 1, 9), 100.0, "a"),
    (3, T(2100, 1, 1), 7.0, "c"),  # in the future: online, it stays fresh whatever day the test runs
]
SPINE = [
    (1, "a", T(2024, 1, 1, 10, 30), 1),
    (1, "b", T(2024, 1, 1, 10, 59), 0),  # 11:00's values are later: never used
    (1, "a", T(2024, 1, 4, 12), 1),  # spend's last value (2 Jan 10:00) is past its 2 day TTL; pair has none
    (2, "a", T(2024, 1, 1, 9), 0),  # a value stamped exactly at the spine time is used
    (9, "z", T(2024, 1, 1), 1),  # no such customer: kept, with NULLs
]
FEATURES = ["spend:amount", "spend:large", "spend:amount_sum_1d", "pair:amount"]
EXPECTED = [
    (10.0, False, 10.0, 10.0),
    (10.0, False, 10.0, None),
    (None, None, None, 5.0),
    (100.0, True, 100.0, 100.0),
    (None, None, None, None),
]


def write_parquet(path: Path, names: list[str], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows]), path)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("features-project")
    (root / "appliance.toml").write_text(PROJECT.format(ttl="2d"))
    write_parquet(root / "data/transactions.parquet", ["customer_id", "ts", "amount", "merchant"], TRANSACTIONS)
    write_parquet(root / "data/spine.parquet", ["customer_id", "merchant", "event_time", "label"], SPINE)
    (root / "plugins").mkdir()
    shutil.copy(HERE / "plugins" / "features_probe.py", root / "plugins" / "features_probe.py")
    return root


@pytest.fixture(scope="module")
def daemon(project, tmp_path_factory):
    with DaemonProcess(tmp_path_factory.mktemp("features-home") / "home", project=project) as d:
        for view in ("spend", "pair"):
            job = d.wait_job(d.post(f"/features/{view}/materialize").json()["id"])
            assert job["state"] == "succeeded", job
        yield d


def cli_json(d: DaemonProcess, *args: str):
    done = d.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def build(d: DaemonProcess, name: str, features=FEATURES, **spine) -> dict:
    r = d.post("/training-sets", {"name": name, "features": features,
                                  **(spine or {"spine": "data/spine.parquet"})})
    assert r.status_code == 202, r.text
    job = d.wait_job(r.json()["id"])
    assert job["state"] == "succeeded", job
    return job["result"]


def test_materialize_records_versions_rows_and_events(daemon):
    views = {v["name"]: v for v in cli_json(daemon, "features", "list")}
    assert views["spend"]["version"] == 1 and views["spend"]["rows"] == 5
    assert views["spend"]["features"] == ["amount", "large", "amount_sum_1d"]
    assert views["pair"]["features"] == ["amount"]
    events = daemon.events("features.materialized")
    assert {e["data"]["view"] for e in events} == {"spend", "pair"}
    again = cli_json(daemon, "features", "materialize", "spend", "--wait")
    assert again["result"]["rows_added"] == 0 and again["result"]["rows"] == 5  # incremental, nothing new


def test_training_set_is_point_in_time_correct_and_reads_through_the_service(daemon):
    result = build(daemon, "churn")
    got = daemon.get(f"/probe/training-sets/{result['id']}").json()
    assert Path(got["path"]).is_file()
    manifest = got["manifest"]
    assert manifest["row_count"] == 5 and manifest["hash"] == result["sha256"]
    assert manifest["views"]["spend"]["version"] == 1 and manifest["spine"]["event_time"] == "event_time"
    rows = got["table"]
    assert [r["label"] for r in rows] == [s[3] for s in SPINE]  # spine order kept
    cols = ["spend__amount", "spend__large", "spend__amount_sum_1d", "pair__amount"]
    assert [tuple(r[c] for c in cols) for r in rows] == EXPECTED
    assert daemon.events("training_set.built")[-1]["data"]["id"] == result["id"]
    # The same inputs give the same bytes: a second build is the same artifact.
    assert build(daemon, "churn")["sha256"] == result["sha256"]
    by_name = daemon.get("/probe/training-sets/churn").json()
    assert by_name["id"] > result["id"]


def test_training_sets_cli(daemon):
    job = cli_json(daemon, "training-sets", "build", "cli-set", "--spine-sql",
                   "select * from read_parquet('data/spine.parquet')".replace(
                       "data/", str(daemon.project / "data") + "/"),
                   "-f", "spend:amount", "-f", "pair:*", "--wait")
    assert job["state"] == "succeeded"
    listed = cli_json(daemon, "training-sets", "list")
    assert listed[0]["name"] == "cli-set" and listed[0]["views"] == {"spend": 1, "pair": 1}
    shown = cli_json(daemon, "training-sets", "show", "cli-set")
    assert shown["manifest"]["columns"] == {"spend__amount": "spend@1:amount", "pair__amount": "pair@1:amount"}
    assert daemon.cli("training-sets", "show", "cli-set").returncode == 0


def test_online_values_through_the_service_and_the_cli(daemon):
    answer = daemon.post("/probe/online", {"entities": [{"customer_id": 3, "merchant": "c"},
                                                        {"customer_id": 404, "merchant": "x"}],
                                           "features": ["spend:amount", "pair:amount", "spend:large"]}).json()
    assert answer["one"] == {"spend:amount": 7.0, "pair:amount": 7.0, "spend:large": False}
    assert answer["many"][1] == {"spend:amount": None, "pair:amount": None, "spend:large": None}
    assert answer["freshness"]["spend"] < 0  # its newest value is stamped in 2100
    # Customer 1's newest spend value (2 Jan 2024) is older than the 2 day TTL: as in a training set, None.
    old = daemon.post("/probe/online", {"entities": [{"customer_id": 1, "merchant": "a"}],
                                        "features": ["spend:amount", "pair:amount"]}).json()
    assert old["one"] == {"spend:amount": None, "pair:amount": 5.0}
    values = cli_json(daemon, "features", "get", "customer_id=3", "merchant=c")
    assert {f: d["value"] for f, d in values.items()} == {"spend:amount": 7.0, "spend:large": False,
                                                         "spend:amount_sum_1d": 7.0, "pair:amount": 7.0}
    assert {d["state"] for d in values.values()} == {"fresh"}


def test_features_get_says_expired_and_answers_as_of_a_time(daemon):
    out = daemon.cli("features", "get", "customer_id=1", "-f", "spend:amount", "-f", "spend:large")
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("spend:amount"))
    assert "expired" in line and "-" in line  # past its 2 day TTL: a model sees null, and it says why
    got = cli_json(daemon, "features", "get", "customer_id=1", "-f", "spend:amount", "--at", "2024-01-01T11:30")
    assert got["spend:amount"] == {"value": 20.0, "state": "fresh", "event_time": "2024-01-01 11:00:00",
                                   "ttl_s": 172800}
    got = cli_json(daemon, "features", "get", "customer_id=1", "-f", "spend:amount", "--at", "2024-01-04T12:00")
    assert (got["spend:amount"]["value"], got["spend:amount"]["state"]) == (None, "expired")
    got = cli_json(daemon, "features", "get", "customer_id=1", "-f", "spend:amount", "--at", "2023-12-31T00:00")
    assert got["spend:amount"]["state"] == "missing"
    out = daemon.cli("features", "get", "customer_id=1", "--at", "yesterday")
    assert out.returncode != 0 and "ISO 8601" in out.stderr


def test_statistics_are_kept_per_version(daemon):
    stats = daemon.get("/probe/stats/spend").json()
    amount = stats["features"]["amount"]
    assert stats["rows"] == 5 and amount["count"] == 5 and amount["nulls"] == 0
    assert amount["min"] == 5.0 and amount["max"] == 100.0 and amount["mean"] == pytest.approx(28.4)
    assert stats["features"]["large"]["top"][0] == {"value": "false", "count": 3}
    shown = cli_json(daemon, "features", "show", "spend")
    assert shown["stats"] == stats and shown["versions"][0]["rows"] == 5
    assert daemon.cli("features", "show", "spend").returncode == 0


@pytest.mark.parametrize("body, status, words", [
    ({"features": ["spend:nope"]}, 400, ["spend", "'nope'"]),
    ({"features": ["ghost:amount"]}, 404, ["'ghost'"]),
    ({"features": ["spend amount"]}, 400, ["'spend amount'"]),
    ({"features": ["spend:amount"], "event_time": "when"}, 400, ["'when'"]),
    ({"features": ["spend:amount"], "spine_sql": "select customer_id::varchar as customer_id, event_time "
                                                 "from read_parquet('{data}/spine.parquet')"},
     400, ["'customer_id'", "'spend'", "VARCHAR"]),
    ({"features": ["pair:amount"], "spine_sql": "select customer_id, event_time "
                                                "from read_parquet('{data}/spine.parquet')"},
     400, ["'merchant'", "'pair'"]),
])
def test_bad_training_set_requests_name_what_is_wrong(daemon, body, status, words):
    body = {"name": "bad", **body}
    if "spine_sql" in body:
        body["spine_sql"] = body["spine_sql"].format(data=daemon.project / "data")
    else:
        body["spine"] = "data/spine.parquet"
    r = daemon.post("/training-sets", body)
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert all(w in message for w in words), message


def test_bad_online_requests_name_what_is_wrong(daemon):
    r = daemon.post("/features/online", {"entity": {"customer_id": "abc"}, "features": ["spend:amount"]})
    assert r.status_code == 400 and "'customer_id'" in r.text and "int" in r.text, r.text
    r = daemon.post("/features/online", {"entity": {"customer_id": 1}, "features": ["spend:ghost"]})
    assert r.status_code == 400 and "'ghost'" in r.text, r.text
    r = daemon.post("/features/online", {"entity": {"customer_id": 1}, "features": ["pair:amount"]})
    assert r.status_code == 400 and "'merchant'" in r.text, r.text
    r = daemon.post("/features/online", {"entity": {"customer_id": [1]}, "features": ["spend:amount"]})
    assert r.status_code == 400, r.text
    r = daemon.post("/training-sets", {"name": "x", "spine": 5, "features": ["spend:amount"]})
    assert r.status_code == 400 and "spine" in r.text, r.text
    r = daemon.post("/features/ghost/materialize")
    assert r.status_code == 404 and "'ghost'" in r.text


def test_a_view_whose_sql_fails_is_refused_by_name(daemon, project):
    good = (project / "appliance.toml").read_text()
    try:
        (project / "appliance.toml").write_text(good.replace("amount >= 20 as large", "amount >= as large"))
        r = daemon.post("/apply")
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert "feature view 'spend'" in message and "appliance.toml:" in message and "sql" in message
        (project / "appliance.toml").write_text(good.replace('features = ["amount"]', 'features = ["amnt"]'))
        message = daemon.post("/apply").json()["error"]["message"]
        assert "'amnt'" in message and "pair" in message
        (project / "appliance.toml").write_text(good.replace('entities = ["customer"]', 'entities = ["client"]'))
        message = daemon.post("/apply").json()["error"]["message"]
        assert "'client'" in message and "spend" in message
        assert cli_json(daemon, "features", "list")[0]["version"] == 1  # nothing changed
    finally:
        (project / "appliance.toml").write_text(good)


def test_a_changed_view_is_a_new_version_and_old_versions_stay_readable(daemon, project):
    good = (project / "appliance.toml").read_text()
    try:
        (project / "appliance.toml").write_text(PROJECT.format(ttl="30d"))
        assert daemon.post("/apply").status_code == 200
        spend = next(v for v in cli_json(daemon, "features", "list") if v["name"] == "spend")
        assert spend["version"] == 2 and spend["rows"] == 0
        index_dir = daemon.home / "features" / "index"
        assert not list(index_dir.glob("spend__v1.*"))  # a replaced version's index goes; it is rebuilt on demand
        assert list(index_dir.glob("pair__v1.*"))
        job = cli_json(daemon, "features", "materialize", "spend", "--wait")
        assert job["result"]["version"] == 2
        old = build(daemon, "v1", ["spend@1:amount"])
        new = build(daemon, "v2", ["spend:amount"])
        old_rows = daemon.get(f"/probe/training-sets/{old['id']}").json()["table"]
        new_rows = daemon.get(f"/probe/training-sets/{new['id']}").json()["table"]
        assert old_rows[2]["spend__amount"] is None  # 2 day TTL
        assert new_rows[2]["spend__amount"] == 5.0  # 30 day TTL
        assert [v["version"] for v in cli_json(daemon, "features", "show", "spend")["versions"]] == [1, 2]
    finally:
        (project / "appliance.toml").write_text(good)
        assert daemon.post("/apply").status_code == 200


def test_training_sets_follow_new_rows_and_outlive_a_lost_or_damaged_index(daemon, project):
    """Builds read a sorted index made at materialization; it must never serve stale or broken data."""
    source = project / "data" / "late.parquet"
    rows = [(1, T(2024, 1, 1, 9), 1.0)]
    write_parquet(source, ["customer_id", "ts", "score"], rows)

    def score() -> float | None:
        assert cli_json(daemon, "features", "materialize", "late", "--wait")["state"] == "succeeded"
        return build_score(daemon)

    assert score() == 1.0
    index_dir = daemon.home / "features" / "index"
    assert any(index_dir.glob("late__v1.*.rows.arrow"))
    rows.append((1, T(2024, 1, 1, 10), 2.0))  # newer, still before the spine's 10:30
    write_parquet(source, ["customer_id", "ts", "score"], rows)
    assert score() == 2.0
    for f in index_dir.glob("late__v1.*.rows.arrow"):
        f.write_bytes(b"not arrow")
    assert build_score(daemon) == 2.0
    for f in index_dir.glob("late__v1.*"):
        f.unlink()
    assert build_score(daemon) == 2.0


def build_score(d: DaemonProcess) -> float | None:
    result = build(d, f"late-{time.monotonic_ns()}", ["late:score"])
    return d.get(f"/probe/training-sets/{result['id']}").json()["table"][0]["late__score"]


def test_online_values_come_back_after_a_restart(daemon):
    daemon.restart()
    for _ in range(100):
        answer = daemon.post("/features/online", {"entity": {"customer_id": 3}, "features": ["spend:amount"]})
        if answer.status_code == 200:
            break
        time.sleep(0.05)
    assert answer.json()["values"] == [{"spend:amount": 7.0}]
