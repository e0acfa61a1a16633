"""Monitoring and alerts against a real daemon: drift over twenty calm windows and an injected shift, data
quality, prediction drift, realized performance, bias, serving health, a fake GPU overheating and throttling
(through the same hook as NVML), the real NVML provider without a GPU, alert dedup / auto-resolve / ack, alerts
from other plugins, an alert's pipeline action, sinks that hang or raise, Prometheus metrics, the CLI, bad input.

Prediction-log rows are written by a fixture plugin with chosen times, and monitors pin their windows with
``window_end``, so every window's data is exact.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_project
from prometheus_client.parser import text_string_to_metric_families
from sklearn import metrics as skm

from appliance.testing import DaemonProcess

W = 3600.0
T0 = 1_700_000_000.0
COLS = ["x0", "x1", "x2", "x3", "x4"]
REGIONS = ["north", "south", "west"]
rng = np.random.default_rng(11)


def _inputs(n, shift=0.0):
    x = rng.normal(size=(n, len(COLS)))
    x[:, :4] += shift
    regions = rng.choice(REGIONS, n)
    return [{**{c: float(v) for c, v in zip(COLS, row, strict=True)}, "region": str(r)} for row, r in zip(x, regions,
                                                                                                        strict=True)]


def _times(n, window_index):
    return list(T0 + window_index * W + np.linspace(1, W - 1, n))


def _monitor(name, kind, **options):
    return f"[monitors.{name}]\nkind = \"{kind}\"\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())


def _toml(root):
    steps_log = str(root / "steps.log")
    # The feature store is left out so that the fixture's stand-in ``training_sets`` service answers.
    parts = ["[daemon]\nworkers = 4\n\n[plugins]\ndeny = [\"features\"]\n\n[serving]\nport = 0\n\n"
             "[monitoring]\ngpu_provider = \"fake_gpu\"\n",
             f"[pipelines.retrain]\n[[pipelines.retrain.steps]]\nname = \"train\"\nkind = \"step_record\"\n"
             f"params = {{log = {json.dumps(steps_log)}, label = \"retrain\"}}\n",
             "[pipelines.breaks]\n[[pipelines.breaks.steps]]\nname = \"bad\"\nkind = \"step_fail\"\nparams = {}\n"]
    ref = {"reference": "reference.parquet", "window_s": W}
    for i in range(20):
        parts.append(_monitor(f"calm{i:02d}", "drift", deployment="calm", window_end=T0 + (i + 1) * W, **ref))
    parts += [
        _monitor("shifted", "drift", deployment="shifted", window_end=T0 + W, pipeline="retrain", **ref),
        _monitor("trained", "drift", deployment="trained", window_s=W, window_end=T0 + W),
        _monitor("quality", "data_quality", deployment="messy", window_end=T0 + W, **ref),
        _monitor("predictions", "prediction_drift", deployment="preds", output="probability", window_s=W,
                 window_end=T0 + 2 * W),
        _monitor("performance", "performance", deployment="labeled", output="probability", window_s=W,
                 window_end=T0 + W, min_auc=0.99, severity="error"),
        _monitor("bias_gap", "bias", deployment="gap", output="probability", group="region", window_s=W,
                 window_end=T0 + W),
        _monitor("bias_fair", "bias", deployment="fair", output="probability", group="region", window_s=W,
                 window_end=T0 + W),
        _monitor("latency", "serving", deployment="calm", window_s=W, window_end=T0 + W, max_p99_ms=1000),
        _monitor("gpu", "gpu", provider="fake_gpu", max_temperature_c=85),
        _monitor("gpu_real", "gpu", provider="nvml"),
        _monitor("gpu_sched", "gpu", provider="fake_gpu", every_s=0.3, max_temperature_c=500,
                 throttle_reasons=[]),
        _monitor("box", "box"),
        _monitor("level", "level", limit=1.0),
    ]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    project = make_project(root / "project", ["good/fake_gpu", "good/monitor_fixtures", "good/pipeline_steps",
                                              "good/hanging_sink", "bad/raising_sink", "good/fixture_training_sets"],
                           _toml(root))
    ref_rows = _inputs(800)
    reference = pa.table({k: [r[k] for r in ref_rows] for k in [*COLS, "region"]})
    pq.write_table(reference, project / "reference.parquet")
    (project / "data").mkdir()
    pq.write_table(reference, project / "data" / "snapshot-1.parquet")
    with DaemonProcess(root / "home", project) as daemon:
        daemon.root = root

        def write(deployment, inputs, ts, outputs=None, **extra):
            outputs = outputs or [{"probability": [0.5]} for _ in inputs]
            r = daemon.post("/fixture/predictions", {"deployment": deployment, "inputs": inputs, "ts": ts,
                                                     "outputs": outputs, "prefix": deployment, **extra})
            assert r.status_code == 200, r.text

        daemon.latencies = [int(v) for v in rng.integers(200, 50_000, 300)]
        calm = [_inputs(300) for _ in range(20)]
        for i, rows in enumerate(calm):
            write("calm", rows, _times(300, i), prefix=f"calm{i}",
                  **({"latency_us": daemon.latencies} if i == 0 else {}))
        write("shifted", _inputs(300, shift=1.0), _times(300, 0))
        r = daemon.post("/fixture/model-version", {"name": "fraud", "training_set": "snapshot-1"})
        assert r.status_code == 200, r.text
        write("trained", _inputs(300, shift=1.0), _times(300, 0), model="fraud", version=r.json()["version"])
        messy = _inputs(200)
        for i, row in enumerate(messy):
            if i % 5 == 0:
                row["x0"] = None
            if i % 10 == 1:
                row["x1"] = 100.0
            if i % 10 == 2:
                row["region"] = "mars"
            if i % 10 == 3:
                row["region"] = None
        write("messy", messy, _times(200, 0))
        probs = np.concatenate([rng.uniform(0.2, 0.4, 200), rng.uniform(0.6, 0.8, 200)])
        write("preds", _inputs(400), _times(200, 0) + _times(200, 1), [{"probability": [p]} for p in probs])
        daemon.labels = rng.integers(0, 2, 400)
        daemon.scores = np.round(np.clip(daemon.labels * 0.25 + rng.normal(0.4, 0.2, 400), 0, 1), 3)
        write("labeled", _inputs(400), _times(400, 0), [{"probability": [float(s)]} for s in daemon.scores],
              labels=[float(v) for v in daemon.labels])
        for name, rates in (("gap", {"north": 0.8, "south": 0.3}), ("fair", {"north": 0.5, "south": 0.5})):
            inputs, outputs, labels = [], [], []
            for region, rate in rates.items():
                for i in range(100):  # the same labels in each group; selection set exactly by the rate
                    inputs.append({**_inputs(1)[0], "region": region})
                    outputs.append({"probability": [0.9 if i < rate * 100 else 0.1]})
                    labels.append(float(i % 2))
            write(name, inputs, _times(200, 0), outputs, labels=labels)
        yield daemon


def run(d, name, state="succeeded"):
    r = d.post(f"/monitors/{name}/run")
    assert r.status_code == 202, r.text
    job = d.wait_job(r.json()["id"], timeout=60)
    assert job["state"] == state, job
    return job


def alerts(d, state="all", rule=None):
    r = d.get("/alerts", params={"state": state, **({"rule": rule} if rule else {})})
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------------------------------------ hooks


def test_hook_register_monitors(d):
    kinds = {k["name"]: k["plugin"] for k in d.get("/monitors").json()["kinds"]}
    assert kinds["level"] == "monitor_fixtures"
    assert {"drift", "prediction_drift", "data_quality", "performance", "bias", "serving", "gpu", "box"} <= set(kinds)
    assert all(kinds[k] == "monitoring" for k in ("drift", "gpu", "box"))
    d.post("/fixture/level", {"value": 0.5})
    result = run(d, "level")["result"]
    assert result["status"] == "ok" and result["checks"][0]["rule"] == "level.too_high"


def test_hook_register_gpu_providers(d):
    """The fake GPU (registered like NVML) overheats and throttles: both alerts; it cools: both resolve."""
    d.post("/fixture/gpu", {"temperature_c": 97, "throttle_reasons": ["hw_thermal_slowdown", "gpu_idle"]})
    result = run(d, "gpu")["result"]
    firing = {c["rule"] for c in result["checks"] if c["firing"]}
    assert firing == {"gpu.temperature", "gpu.throttling"}
    got = {a["rule"]: a for a in alerts(d, "active") if a["subject"] == "gpu:0"}
    assert "97" in got["gpu.temperature"]["message"] and "hw_thermal_slowdown" in got["gpu.throttling"]["message"]
    assert "gpu_idle" not in got["gpu.throttling"]["message"]  # idle is not harm
    assert result["details"]["gpu"]["devices"][0]["processes"] == [{"pid": 4242, "memory_bytes": 9 * 2**30}]
    d.post("/fixture/gpu", {"temperature_c": 60, "throttle_reasons": []})
    run(d, "gpu")
    resolved = {a["rule"] for a in alerts(d, "resolved") if a["subject"] == "gpu:0"}
    assert {"gpu.temperature", "gpu.throttling"} <= resolved


def test_real_nvml_provider_without_a_gpu_says_no_gpu_and_carries_on(d):
    job = run(d, "gpu_real")
    assert job["result"]["status"] == "no GPU"
    assert job["result"]["details"]["no_gpu"].startswith("no GPU")
    assert d.get("/health").status_code == 200


def test_hook_register_metrics_collectors(d):
    d.post("/fixture/gpu", {"temperature_c": 61})
    run(d, "gpu")
    r = d.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families["fixture_constant"].samples[0].value == 42  # a third-party collector; the broken one is skipped
    temps = [s for s in families["appliance_monitor_gpu_temperature_c"].samples if s.labels["monitor"] == "gpu"]
    assert temps[0].value == 61
    assert families["appliance_gpu_temperature_c"].samples[0].value == 61
    assert families["appliance_gpu_available"].samples[0].value == 1
    serving = httpx.get(f"http://127.0.0.1:{d.info['ports']['serving']}/metrics").text
    names = {f.name for f in text_string_to_metric_families(serving)}
    assert {"fixture_constant", "appliance_gpu_temperature_c", "appliance_monitor_gpu_temperature_c"} <= names


def test_a_scheduled_monitor_runs_by_itself(d):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = d.get("/monitors/gpu_sched").json()["runs"]
        if len(runs) >= 3:
            break
        time.sleep(0.2)
    assert len(runs) >= 3
    assert all(j["origin"] == "schedule" for j in d.get("/jobs", params={"kind": "monitor"}).json()
               if j["params"]["monitor"] == "gpu_sched")


# ------------------------------------------------------------------------------------------------ model monitors


def test_twenty_calm_windows_raise_at_most_one_drift_alert_and_an_injected_shift_is_caught(d):
    jobs = [d.post(f"/monitors/calm{i:02d}/run").json()["id"] for i in range(20)]
    results = [d.wait_job(j, timeout=120) for j in jobs]
    assert all(j["state"] == "succeeded" for j in results), [(j["state"], j.get("error")) for j in results]
    tests = {c["test"] for j in results for c in j["result"]["details"]["drift"]["columns"]}
    assert tests == {"ks", "chisquare"}  # an 800-row reference: Evidently's small-sample tests
    raised = [j for j in results if j["result"]["status"] == "alert"]
    assert len(raised) <= 1
    shifted = run(d, "shifted")["result"]
    assert shifted["status"] == "alert"
    assert set(shifted["details"]["drift"]["drifted_columns"]) >= {"x0", "x1", "x2", "x3"}
    alert = alerts(d, "active", "shifted.dataset_drift")[0]
    assert alert["subject"] == "deployment:shifted" and "x0" in alert["message"]


def test_drift_against_the_served_models_training_set(d):
    """The default reference: the training set in the lineage of the model version the log says was served."""
    result = run(d, "trained")["result"]
    assert result["details"]["reference"] == {"source": "training set snapshot-1.parquet", "rows": 800}
    assert result["status"] == "alert"
    assert set(result["details"]["drift"]["drifted_columns"]) >= {"x0", "x1", "x2", "x3"}


def test_a_drift_alert_starts_its_pipeline(d):
    alert = alerts(d, "all", "shifted.dataset_drift")
    if not alert:
        run(d, "shifted")
        alert = alerts(d, "all", "shifted.dataset_drift")
    action = alert[0]["action"]
    assert action["pipeline"] == "retrain" and action["run_id"], action
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if d.get(f"/pipelines/retrain/runs/{action['run_id']}").json()["status"] == "succeeded":
            break
        time.sleep(0.1)
    log = (d.root / "steps.log").read_text()
    assert '"retrain"' in log


def test_data_quality_finds_nulls_out_of_range_and_unseen_categories(d):
    result = run(d, "quality")["result"]
    q = result["details"]["quality"]
    assert q["x0"]["null_rate"] == pytest.approx(0.2)
    assert q["x1"]["out_of_range_rate"] == pytest.approx(0.1)
    assert q["region"]["null_rate"] == pytest.approx(0.1)
    assert q["region"]["unseen_rate"] == pytest.approx(20 / 180) and q["region"]["unseen"] == ["mars"]
    firing = {c["rule"] for c in result["checks"] if c["firing"]}
    assert firing == {"quality.null_rate", "quality.out_of_range_rate", "quality.unseen_rate"}


def test_prediction_drift_against_the_previous_window(d):
    result = run(d, "predictions")["result"]
    assert result["details"]["drift"]["test"] == "ks" and result["details"]["drift"]["drifted"]
    assert result["status"] == "alert"


def test_performance_from_feedback_equals_sklearn_and_raises_below_its_bound(d):
    result = run(d, "performance")["result"]
    m = result["details"]["metrics"]
    y, s = d.labels, d.scores
    assert abs(m["auc"] - skm.roc_auc_score(y, s)) <= 1e-9
    assert abs(m["f1"] - skm.f1_score(y, s >= 0.5)) <= 1e-9
    assert abs(m["accuracy"] - skm.accuracy_score(y, s >= 0.5)) <= 1e-9
    alert = alerts(d, "active", "performance.performance")[0]
    assert alert["severity"] == "error" and "auc" in alert["message"]


def test_bias_gap_raises_and_no_gap_does_not(d):
    gap = run(d, "bias_gap")["result"]
    assert gap["details"]["demographic_parity_difference"] == pytest.approx(0.5)
    assert {c["rule"] for c in gap["checks"] if c["firing"]} == {"bias_gap.demographic_parity_difference",
                                                                 "bias_gap.equal_opportunity_difference"}
    fair = run(d, "bias_fair")["result"]
    assert fair["details"]["demographic_parity_difference"] == 0.0
    assert fair["details"]["equal_opportunity_difference"] == 0.0
    assert fair["status"] == "ok" and not alerts(d, "all", "bias_fair.demographic_parity_difference")


def test_serving_health_latency_quantiles_and_throughput(d):
    health = run(d, "latency")["result"]["details"]["health"]
    lat = np.array(d.latencies) / 1000.0
    assert health["p50_ms"] == pytest.approx(np.percentile(lat, 50), abs=1e-9)
    assert health["p99_ms"] == pytest.approx(np.percentile(lat, 99), abs=1e-9)
    assert health["rows"] == 300 and health["rows_per_s"] == pytest.approx(300 / W)
    assert health["error_rate"] == 0.0


# ------------------------------------------------------------------------------------------------ alerts


def test_alert_dedup_auto_resolve_and_ack(d):
    after = d.events()[-1]["id"]
    d.post("/fixture/level", {"value": 5})
    for _ in range(3):
        run(d, "level")
    active = alerts(d, "active", "level.too_high")
    assert len(active) == 1 and active[0]["count"] == 3  # dedup: one alert per rule and subject
    raised = [e for e in d.events("alert.raised", after=after) if e["data"]["rule"] == "level.too_high"]
    assert len(raised) == 1 and raised[0]["source"] == "monitoring"

    r = d.post(f"/alerts/{active[0]['id']}/ack", {"by": "ana", "note": "looking"})
    assert r.status_code == 200 and r.json()["state"] == "acked" and r.json()["acked_by"] == "ana"
    assert [e for e in d.events("alert.acked", after=after) if e["data"]["alert_id"] == active[0]["id"]]
    run(d, "level")
    assert alerts(d, "active", "level.too_high")[0]["id"] == active[0]["id"]  # acked still dedups

    d.post("/fixture/level", {"value": 0})
    run(d, "level")
    assert not alerts(d, "active", "level.too_high")
    assert d.get(f"/alerts/{active[0]['id']}").json()["state"] == "resolved"
    assert [e for e in d.events("alert.resolved", after=after) if e["data"]["alert_id"] == active[0]["id"]]
    assert d.post(f"/alerts/{active[0]['id']}/ack").status_code == 409  # resolved: nothing to acknowledge

    d.post("/fixture/level", {"value": 9})
    run(d, "level")
    again = alerts(d, "active", "level.too_high")
    assert len(again) == 1 and again[0]["id"] != active[0]["id"]  # a new episode is a new alert


def test_an_open_alert_follows_its_latest_run_and_says_so(d):
    d.post("/fixture/level", {"value": 0})
    run(d, "level")
    d.post("/fixture/level", {"value": 5})
    run(d, "level")
    after = d.events()[-1]["id"]
    d.post("/fixture/level", {"value": 6})
    run(d, "level")
    alert = alerts(d, "active", "level.too_high")[0]
    assert alert["message"] == "level 6 (limit 1)"
    updated = [e["data"] for e in d.events("alert.updated", after=after) if e["data"]["alert_id"] == alert["id"]]
    assert [u["message"] for u in updated] == ["level 6 (limit 1)"]
    run(d, "level")  # the same reading again: nothing new to say
    assert len([e for e in d.events("alert.updated", after=after) if e["data"]["alert_id"] == alert["id"]]) == 1
    d.post("/fixture/level", {"value": 0})
    run(d, "level")


def test_sinks_that_hang_or_raise_do_not_delay_other_sinks(d):
    """hanging_sink blocks forever and raising_sink raises on every event; alert events still reach the
    fixture's recording sink and the built-in log sink at once."""
    d.post("/fixture/level", {"value": 0})
    run(d, "level")
    d.post("/fixture/level", {"value": 7})
    run(d, "level")
    deadline = time.monotonic() + 10
    mine = []
    while time.monotonic() < deadline and not mine:
        mine = [e for e in d.get("/fixture/seen").json() if e["type"] == "alert.raised" and
                e["data"]["rule"] == "level.too_high" and e["data"]["message"].startswith("level 7")]
        time.sleep(0.05)
    assert mine and mine[-1]["seen"] - mine[-1]["event_time"] < 2.0
    logged = (d.home / "logs" / "events.jsonl").read_text().splitlines()
    assert any(json.loads(line)["id"] == mine[-1]["id"] for line in logged)
    failures = d.get("/plugins").json()["failures"]
    assert any(f["plugin"] == "raising_sink" and f["hook"] == "on_event" for f in failures)


def test_alerts_from_other_plugins_become_managed_alerts(d):
    r = d.post("/pipelines/breaks/run")
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not alerts(d, "active", "pipeline_failed"):
        time.sleep(0.1)
    got = alerts(d, "active", "pipeline_failed")
    assert len(got) == 1 and got[0]["origin"] == "event" and got[0]["subject"] == "pipeline:breaks"

    raise_ = {"type": "alert.raised", "subject": "deployment:fraud",
              "data": {"rule": "deployment_load_failed", "severity": "error", "message": "v3 failed to load"}}
    d.post("/fixture/emit", raise_)
    d.post("/fixture/emit", raise_)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = alerts(d, "active", "deployment_load_failed")
        if got and got[0]["count"] == 2:
            break
        time.sleep(0.05)
    assert len(got) == 1 and got[0]["count"] == 2 and got[0]["severity"] == "error"
    d.post("/fixture/emit", {"type": "deployment.loaded", "subject": "deployment:fraud", "data": {"version": 4}})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alerts(d, "active", "deployment_load_failed"):
        time.sleep(0.05)
    assert d.get(f"/alerts/{got[0]['id']}").json()["state"] == "resolved"


# ------------------------------------------------------------------------------------------------ surfaces


def test_cli_monitors_alerts_and_drift(d):
    out = d.cli("monitors", "list", "--json")
    assert out.returncode == 0, out.stderr
    assert {m["name"] for m in json.loads(out.stdout)["monitors"]} >= {"calm00", "gpu", "box", "level"}
    out = d.cli("monitors", "list")
    assert "calm00" in out.stdout and "KIND" in out.stdout
    out = d.cli("monitors", "run", "box")
    assert out.returncode == 0 and "box.disk" in out.stdout, out.stderr
    d.post("/fixture/level", {"value": 8})
    out = d.cli("monitors", "run", "level", "--json")
    assert out.returncode == 2 and json.loads(out.stdout)["result"]["status"] == "alert"
    out = d.cli("alerts", "list", "--json")
    listed = json.loads(out.stdout)
    target = next(a for a in listed if a["rule"] == "level.too_high")
    out = d.cli("alerts", "ack", str(target["id"]), "--by", "sam", "--note", "on it")
    assert out.returncode == 0 and "acknowledged by sam" in out.stdout, out.stderr
    assert "level.too_high" in d.cli("alerts", "list", "--state", "acked").stdout
    out = d.cli("drift", "shifted", "--window", str(int(time.time() - T0) + 10), "--reference", "reference.parquet",
                "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["drift"]["dataset_drift"] is True
    out = d.cli("drift", "shifted", "--window", str(int(time.time() - T0) + 10), "--reference", "reference.parquet")
    assert "dataset drift: YES" in out.stdout and "x0" in out.stdout


def test_bad_input_is_a_clear_4xx(d):
    r = d.post("/monitors/nope/run")
    assert r.status_code == 404 and "no monitor 'nope'" in r.json()["error"]["message"]
    assert d.post("/monitors/box/run", {"window_s": 3}).status_code == 400
    r = d.get("/alerts", params={"state": "bogus"})
    assert r.status_code == 400 and "unknown alert state" in r.json()["error"]["message"]
    assert d.post("/alerts/abc/ack").status_code == 400
    assert d.post("/alerts/999999/ack").status_code == 404
    assert d.post("/alerts/1/ack", {"by": 3}).status_code == 400
    assert d.post("/alerts/1/ack", {"who": "x"}).status_code == 400
    r = d.get("/drift/nothing-served")
    assert r.status_code == 404 and "nothing-served" in r.json()["error"]["message"]
    r = d.get("/drift/shifted", params={"reference": "missing.parquet", "window_s": int(time.time() - T0) + 10})
    assert r.status_code == 400 and "missing.parquet" in r.json()["error"]["message"]
    assert d.get("/drift/shifted", params={"window_s": "a day"}).status_code == 400
    out = d.cli("monitors", "run", "nope")
    assert out.returncode != 0 and "no monitor 'nope'" in out.stderr


@pytest.mark.parametrize(("table", "expected"), [
    ('[monitors.m]\nkind = "drfit"\n', "appliance.toml:5: monitors.m.kind: unknown monitor kind 'drfit'; "
                                       "did you mean 'drift'?"),
    ('[monitors.m]\nkind = "drift"\ndeployment = "x"\nwindw_s = 5\n', "monitors.m.windw_s: unknown key"),
    ('[monitors.m]\nkind = "drift"\n', "a drift monitor needs deployment"),
    ('[monitors.m]\nkind = "box"\nevery_s = "often"\n', "monitors.m.every_s: expected a number, got str 'often'"),
    ('[monitors.m]\nkind = "box"\nseverity = "loud"\n', "expected one of info, warning, error, critical"),
    ('[monitors.m]\nkind = "gpu"\nthrottle_reasons = "all"\n', "expected a list of strings"),
    ('[monitoring]\ngpu_provider = "amd"\n', "no GPU provider 'amd'"),
])
def test_bad_configuration_is_refused_with_file_line_and_key(d, tmp_path, table, expected):
    bad = tmp_path / "appliance.toml"
    bad.write_text('[plugins]\ndeny = ["features"]\n\n' + table)  # the running [plugins]: only the mistake differs
    out = d.cli("apply", str(bad))
    assert out.returncode != 0
    assert expected in out.stderr, out.stderr
    assert d.get("/monitors/box").status_code == 200  # the running configuration stays
