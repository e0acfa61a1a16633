"""Pipelines against a real daemon: DAG order and parallel branches, retries, timeouts, failure and alerts, cancel,
idempotent re-runs, the GPU gate across pipelines, overlap, event triggers, bad configuration, the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import make_project

from appliance.testing import DaemonProcess


def step(name, kind, depends_on=(), **extra):
    lines = [f'name = "{name}"', f'kind = "{kind}"']
    if depends_on:
        lines.append(f"depends_on = {json.dumps(list(depends_on))}")
    params = extra.pop("params", None)
    for key, value in extra.items():
        lines.append(f"{key} = {json.dumps(value)}")
    if params is not None:
        lines.append("params = {" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items()) + "}")
    return lines


def pipeline(name, steps, **table):
    out = [f"[pipelines.{name}]"] + [f"{k} = {v}" for k, v in table.items()]
    for s in steps:
        out += ["", f"[[pipelines.{name}.steps]]", *s]
    return "\n".join(out) + "\n\n"


def base_toml(root: Path) -> str:
    log = str(root / "steps.log")
    rec = lambda label, seconds=0.0: {"log": log, "label": label, "seconds": seconds}  # noqa: E731
    gpu = str(root / "gpu.log")
    return "[daemon]\nworkers = 8\ngpu_slots = 1\n\n" + "".join([
        pipeline("dag", [step("extract", "step_record", params=rec("dag.extract", 0.2)),
                         step("left", "step_record", ["extract"], params=rec("dag.left", 0.8)),
                         step("right", "step_record", ["extract"], params=rec("dag.right", 0.8)),
                         step("join", "step_record", ["left", "right"], params=rec("dag.join"))],
                 description='"fan out and in"'),
        pipeline("flaky", [step("wobbly", "step_flaky", retries=3, backoff_s=0.3,
                                params={"log": str(root / "flaky.log"), "succeed_on": 3}),
                           step("after", "step_record", ["wobbly"], params=rec("flaky.after"))]),
        pipeline("slowstep", [step("slow", "step_record", timeout_s=0.5, params=rec("slowstep.slow", 20)),
                              step("after", "step_record", ["slow"], params=rec("slowstep.after"))]),
        pipeline("breaks", [step("load", "step_record", params=rec("breaks.load")),
                            step("bad", "step_fail", ["load"], params={}),
                            step("downstream", "step_record", ["bad"], params=rec("breaks.downstream")),
                            step("further", "step_record", ["downstream"], params=rec("breaks.further")),
                            step("sibling", "step_record", ["load"], params=rec("breaks.sibling", 0.3))]),
        pipeline("long", [step("wait", "step_record", params=rec("long.wait", 30)),
                          step("never", "step_record", ["wait"], params=rec("long.never"))]),
        pipeline("reload", [step("ingest", "step_duck", params={"batch": "b-001", "rows": 100}),
                            step("materialize", "step_duck", ["ingest"], params={"batch": "b-001-features",
                                                                                  "rows": 10}),
                            step("check", "step_fail", ["materialize"],
                                 params={"marker": str(root / "reload.marker"), "once": True})]),
        pipeline("train_a", [step("train1", "step_gpu", params={"log": gpu, "label": "a1", "seconds": 0.4}),
                             step("train2", "step_gpu", params={"log": gpu, "label": "a2", "seconds": 0.4})]),
        pipeline("train_b", [step("train1", "step_gpu", params={"log": gpu, "label": "b1", "seconds": 0.4}),
                             step("train2", "step_gpu", params={"log": gpu, "label": "b2", "seconds": 0.4})]),
        pipeline("on_batch", [step("refresh", "step_record", params=rec("on_batch.refresh"))],
                 triggers='[{event = "fixture.batch*", debounce_s = 1.0}]'),
    ])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    project = make_project(root / "project", ["good/pipeline_steps"], base_toml(root))
    with DaemonProcess(root / "home", project) as d:
        d.root = root
        d.project = project
        yield d


def records(path: Path, prefix: str = "") -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if str(r.get("label", "")).startswith(prefix)]


def run(d, name) -> dict:
    r = d.post(f"/pipelines/{name}/run")
    assert r.status_code == 202, r.text
    return r.json()


def wait_run(d, name, run_id, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = d.get(f"/pipelines/{name}/runs/{run_id}").json()
        if got["status"] != "running" or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def steps_of(run_record) -> dict:
    return {s["step"]: s for s in run_record["steps"]}


def test_dag_order_with_parallel_branches(daemon):
    got = wait_run(daemon, "dag", run(daemon, "dag")["id"])
    assert got["status"] == "succeeded" and got["trigger"] == "manual"
    ran = {r["label"]: r for r in records(daemon.root / "steps.log", "dag.")}
    extract, left, right, join = (ran[f"dag.{n}"] for n in ("extract", "left", "right", "join"))
    assert extract["end"] <= left["start"] and extract["end"] <= right["start"]
    assert left["start"] < right["end"] and right["start"] < left["end"], "the two branches ran at once"
    assert join["start"] >= max(left["end"], right["end"])
    steps = steps_of(got)
    assert all(s["status"] == "succeeded" and s["job_id"] for s in steps.values())
    assert steps["join"]["logs"] == ["step dag.join ran"]
    types = [e["type"] for e in daemon.events("pipeline.*") if e["data"].get("run_id") == got["id"]]
    assert types[0] == "pipeline.run_started" and types[-1] == "pipeline.run_finished"
    assert types.count("pipeline.step_started") == 4 and types.count("pipeline.step_finished") == 4


def test_flaky_step_retried_with_backoff_then_succeeds(daemon):
    got = wait_run(daemon, "flaky", run(daemon, "flaky")["id"])
    assert got["status"] == "succeeded"
    assert steps_of(got)["wobbly"]["attempts"] == 3
    times = [r["t"] for r in records(daemon.root / "flaky.log")]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.3 and times[2] - times[1] >= 0.6, "exponential backoff between attempts"


def test_step_timeout_fails_it_and_skips_downstream(daemon):
    got = wait_run(daemon, "slowstep", run(daemon, "slowstep")["id"])
    steps = steps_of(got)
    assert got["status"] == "failed"
    assert steps["slow"]["status"] == "failed" and "timed out" in steps["slow"]["error"]
    assert steps["after"]["status"] == "skipped" and steps["after"]["job_id"] is None


def test_failure_skips_downstream_and_raises_alert(daemon):
    got = wait_run(daemon, "breaks", run(daemon, "breaks")["id"])
    steps = steps_of(got)
    assert got["status"] == "failed" and "bad" in got["reason"]
    assert steps["bad"]["status"] == "failed" and "on purpose" in steps["bad"]["error"]
    assert steps["bad"]["logs"][0] == "about to fail"
    assert steps["downstream"]["status"] == "skipped" and steps["further"]["status"] == "skipped"
    assert steps["sibling"]["status"] == "succeeded", "an independent branch still runs"
    assert records(daemon.root / "steps.log", "breaks.downstream") == []
    alerts = [e for e in daemon.events("alert.raised") if e["data"].get("run_id") == got["id"]]
    assert len(alerts) == 1
    assert alerts[0]["data"]["rule"] == "pipeline_failed" and alerts[0]["data"]["subject"] == "breaks"
    assert alerts[0]["data"]["severity"] == "error" and "on purpose" in alerts[0]["data"]["message"]


def test_manual_run_refused_while_running_then_cancel(daemon):
    started = run(daemon, "long")
    deadline = time.monotonic() + 10
    while steps_of(daemon.get(f"/pipelines/long/runs/{started['id']}").json())["wait"]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again = daemon.post("/pipelines/long/run")
    assert again.status_code == 409 and "already running" in again.json()["error"]["message"]
    r = daemon.cli("pipelines", "cancel", "long", "--json")
    assert r.returncode == 0, r.stderr
    assert [x["id"] for x in json.loads(r.stdout)] == [started["id"]]
    got = wait_run(daemon, "long", started["id"])
    steps = steps_of(got)
    assert got["status"] == "cancelled"
    assert steps["wait"]["status"] == "cancelled" and steps["never"]["status"] == "cancelled"
    assert daemon.get(f"/jobs/{steps['wait']['job_id']}").json()["state"] == "cancelled"
    assert daemon.post("/pipelines/long/cancel").status_code == 409


def test_rerunning_a_failed_pipeline_does_not_duplicate_data(daemon):
    first = wait_run(daemon, "reload", run(daemon, "reload")["id"])
    assert first["status"] == "failed" and steps_of(first)["ingest"]["status"] == "succeeded"
    second = wait_run(daemon, "reload", run(daemon, "reload")["id"])
    assert second["status"] == "succeeded"
    counts = daemon.get("/pipeline-fixture/duck").json()
    assert counts == {"rows": {"b-001": 100, "b-001-features": 10}, "ledger": 2}


def test_gpu_gate_holds_across_pipelines(daemon):
    a, b = run(daemon, "train_a"), run(daemon, "train_b")
    assert wait_run(daemon, "train_a", a["id"])["status"] == "succeeded"
    assert wait_run(daemon, "train_b", b["id"])["status"] == "succeeded"
    spans = sorted((r["start"], r["end"]) for r in records(daemon.root / "gpu.log"))
    assert len(spans) == 4
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, "two GPU steps ran at once"


def test_event_trigger_debounces_a_burst_into_one_run(daemon):
    before = {r["id"] for r in daemon.get("/pipelines/on_batch/runs").json()}
    assert daemon.post("/pipeline-fixture/emit", {"type": "fixture.batch_ingested", "count": 5}).status_code == 200
    time.sleep(0.3)
    assert daemon.post("/pipeline-fixture/emit", {"type": "fixture.batch_ingested", "count": 2}).status_code == 200
    assert daemon.post("/pipeline-fixture/emit", {"type": "fixture.other", "count": 3}).status_code == 200
    deadline = time.monotonic() + 15
    while not [r for r in daemon.get("/pipelines/on_batch/runs").json() if r["id"] not in before]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.5)  # past another debounce window: a second run here would be a bug
    new = [r for r in daemon.get("/pipelines/on_batch/runs").json() if r["id"] not in before]
    assert len(new) == 1
    assert new[0]["trigger"] == "event" and new[0]["cause"].startswith("7 event(s)")
    assert wait_run(daemon, "on_batch", new[0]["id"])["status"] == "succeeded"


def test_list_show_and_errors(daemon):
    names = [p["name"] for p in daemon.get("/pipelines").json()]
    assert names == sorted(names) and {"dag", "breaks", "on_batch"} <= set(names)
    shown = daemon.get("/pipelines/dag").json()
    assert shown["description"] == "fan out and in"
    assert [s["name"] for s in shown["steps"]] == ["extract", "left", "right", "join"]
    assert shown["steps"][3]["depends_on"] == ["left", "right"]
    for path in ("/pipelines/nope", "/pipelines/nope/runs", "/pipelines/dag/runs/999999"):
        r = daemon.get(path)
        assert r.status_code == 404 and "error" in r.json(), path
    assert daemon.post("/pipelines/nope/run").status_code == 404
    assert daemon.get("/pipelines/dag/runs/abc").status_code == 400
    assert daemon.post("/pipelines/dag/cancel", {"run_id": "x"}).status_code == 400


BAD_CONFIGS = {
    "unknown_kind": (pipeline("p", [step("a", "step_record"), step("b", "no_such_kind", ["a"])]),
                     "pipelines.p.steps[1].kind", "no job kind 'no_such_kind'", 9),
    "unknown_dep": (pipeline("p", [step("a", "step_record", ["ghost"])]),
                    "pipelines.p.steps[0].depends_on", "'ghost'", 6),
    "cycle": (pipeline("p", [step("a", "step_record", ["b"]), step("b", "step_record", ["a"])]),
              "pipelines.p.steps[0].depends_on", "cycle: a -> b -> a", 6),
    "bad_cron": (pipeline("p", [step("a", "step_record")], schedule='{cron = "61 * * * *"}'),
                 "pipelines.p.schedule.cron", "bad cron expression", 2),
    "typo": (pipeline("p", [step("a", "step_record", retires=2)]), "pipelines.p.steps[0].retires",
             "did you mean 'retries'", 6),
    "no_steps": ("[pipelines.p]\ndescription = \"x\"\n", "pipelines.p", "needs steps", 1),
    "schedule_kind": ('[schedules.s]\nkind = "nope"\ninterval_s = 5\n', "schedules.s.kind", "no job kind", 2),
    "both_overlaps": (pipeline("p", [step("a", "step_record")], allow_overlap="true", max_overlap=2),
                      "pipelines.p.max_overlap", "not both", 3),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_names_file_line_and_key(daemon, tmp_path, case):
    toml, key, words, line = BAD_CONFIGS[case]
    bad = make_project(tmp_path / case, [], toml)
    before = daemon.get("/pipelines").json()
    r = daemon.post("/apply", {"project": str(bad)})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert f"appliance.toml:{line}: " in message and key in message and words in message, message
    assert daemon.get("/pipelines").json() == before, "a refused configuration changes nothing"


def test_cli(daemon):
    listed = daemon.cli("pipelines", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "dag" in [p["name"] for p in json.loads(listed.stdout)]
    table = daemon.cli("pipelines", "list")
    assert table.returncode == 0 and "NEXT FIRE" in table.stdout and "on_batch" in table.stdout
    shown = daemon.cli("pipelines", "show", "dag")
    assert shown.returncode == 0 and "left" in shown.stdout and "extract" in shown.stdout
    ran = daemon.cli("pipelines", "run", "dag", "--wait", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "succeeded"
    failed = daemon.cli("pipelines", "run", "breaks", "--wait")
    assert failed.returncode == 1 and "skipped" in failed.stdout
    history = daemon.cli("pipelines", "history", "dag", "--json")
    assert history.returncode == 0 and json.loads(history.stdout)[0]["trigger"] == "manual"
    one = daemon.cli("pipelines", "history", "dag", "--run", str(json.loads(ran.stdout)["id"]))
    assert one.returncode == 0 and "join" in one.stdout
    missing = daemon.cli("pipelines", "show", "nope")
    assert missing.returncode != 0 and "no pipeline 'nope'" in missing.stderr + missing.stdout
    assert "Traceback" not in missing.stderr


def test_overlap_and_job_schedules_after_apply(daemon):
    """Re-applied config: a pipeline whose run outlasts its interval never overlaps itself (fires meanwhile are
    recorded as skipped), and a single-job schedule submits jobs; removing them stops both."""
    root = daemon.root
    extra = pipeline("busy", [step("work", "step_record",
                                   params={"log": str(root / "busy.log"), "label": "busy", "seconds": 1.6})],
                     schedule="{interval_s = 1}")
    extra += f'[schedules.heartbeat]\nkind = "step_record"\ninterval_s = 1\n' \
             f'params = {{log = "{root / "heartbeat.log"}", label = "beat"}}\n'
    toml_path = daemon.project / "appliance.toml"
    original = toml_path.read_text()
    toml_path.write_text(original + extra)
    try:
        r = daemon.post("/apply")
        assert r.status_code == 200, r.text
        time.sleep(5.5)
        listed = {s["name"]: s for s in daemon.get("/schedules").json()}
        assert listed["busy"]["next_fire"] > time.time() - 1 and listed["heartbeat"]["type"] == "job"
        schedule_table = daemon.cli("schedule", "list")
        assert schedule_table.returncode == 0 and "heartbeat" in schedule_table.stdout
    finally:
        toml_path.write_text(original)
        assert daemon.post("/apply").status_code == 200
    runs = daemon.get("/pipelines/busy/runs").json()
    ran = [r for r in runs if r["status"] != "skipped"]
    skipped = [r for r in runs if r["status"] == "skipped"]
    assert len(ran) >= 2 and len(skipped) >= 1
    assert all(r["reason"].startswith("overlap: run ") for r in skipped)
    assert all(r["trigger"] == "schedule" for r in runs)
    for r in ran:
        wait_run(daemon, "busy", r["id"])
    spans = sorted((r["start"], r["end"]) for r in records(root / "busy.log"))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, "two runs of one pipeline overlapped"
    fires = listed["heartbeat"]["fires"]
    assert len(fires) >= 3 and all(f["outcome"] == "submitted" for f in fires)
    assert all(daemon.wait_job(f["job_id"])["state"] == "succeeded" for f in fires)
    assert "heartbeat" not in {s["name"] for s in daemon.get("/schedules").json()}
    count = len(records(root / "heartbeat.log"))
    time.sleep(1.5)
    assert len(records(root / "heartbeat.log")) <= count + 1, "a removed schedule stops firing"
