"""``appliance demo``: a fresh home, the fraud project, the nightly pipeline end to end, live traffic, and the
dashboard (or, with ``--headless``, a summary and an exit code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from appliance import ApplianceError

from .project import generator, lay_out


def default_demo_home() -> Path:
    """The demo's own home, beside (never inside) the user's real one; ``APPLIANCE_DEMO_HOME`` moves it."""
    from appliance.home import default_home

    if os.environ.get("APPLIANCE_DEMO_HOME"):
        return Path(os.environ["APPLIANCE_DEMO_HOME"])
    return default_home().with_name(default_home().name + "-demo")


def say(msg: str) -> None:
    click.echo(msg, err=True)  # progress on stderr: stdout carries only the summary (--json)


def start_daemon(home: Path, project: Path):
    """Attach to the home's running daemon, or start one detached (it outlives a dashboard that crashes)."""
    from appliance.cli.client import Client
    from appliance.errors import DaemonNotRunning

    try:
        return Client(home), None
    except DaemonNotRunning:
        pass
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "demo-daemon.log", "ab")  # noqa: SIM115 - handed to the daemon process
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "--home", str(home), "up", "--project", str(project),
                             "--port", "0"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ApplianceError(f"the daemon exited with {proc.returncode}; see {home / 'demo-daemon.log'}",
                                 title="Demo failed")
        try:
            client = Client(home)
            client.get("/health")
            return client, proc
        except ApplianceError:
            time.sleep(0.1)
    raise ApplianceError("the daemon did not become ready within 60 s", title="Demo failed")


def run_pipeline(client) -> dict:
    run = client.post("/pipelines/nightly/run")
    run_id = run.get("id") or run.get("run", {}).get("id")
    last = None
    while True:
        detail = client.get(f"/pipelines/nightly/runs/{run_id}")
        steps = {s["step"]: s["status"] for s in detail.get("steps", [])}
        if steps != last:
            say("  " + "  ".join(f"{k}:{v}" for k, v in steps.items()))
            last = steps
        if detail["status"] not in ("queued", "running", "pending"):
            return detail
        time.sleep(0.5)


def wait_serving(client, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deps = {d["name"]: d for d in client.get("/deployments")["deployments"]}
        if deps.get("fraud", {}).get("state") == "ready":
            return deps["fraud"]
        time.sleep(0.2)
    raise ApplianceError("deployment 'fraud' did not become ready", title="Demo failed")


def summary(client, traffic) -> dict:
    source = client.get("/sources/transactions")
    model = client.get("/models/fraud")
    champion = next((v for v in model["versions"] if "champion" in v.get("aliases", [])), None)
    dep = client.get("/deployments/fraud")
    alerts = client.get("/events", type="alert.raised", after=0, limit=100_000)
    return {
        "rows_ingested": source["rows"], "rows_quarantined": source["quarantined_rows"],
        "model": "fraud", "model_version": champion["version"] if champion else None,
        "auc": round(champion["metrics"].get("auc", float("nan")), 4) if champion else None,
        "requests_served": dep.get("requests", 0), "p99_ms": dep.get("p99_ms"),
        "bad_requests_sent": traffic.bad_sent if traffic else 0, "alerts_raised": len(alerts),
    }


@click.command(name="demo")
@click.option("--headless", is_flag=True, help="No dashboard: run, print a summary, exit non-zero if a stage failed.")
@click.option("--seconds", default=60.0, show_default=True, help="How long traffic runs (headless).")
@click.option("--demo-home", type=click.Path(file_okay=False, path_type=Path),
              help="Where the demo lives (default: a home of its own beside the real one).")
@click.option("--keep", is_flag=True, help="Leave the daemon running when the demo ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (headless).")
@click.option("--drift-after", default=None, type=float, help="Seconds of traffic before drift is injected.")
def demo(headless, seconds, demo_home, keep, as_json, drift_after):
    """Card-fraud detection end to end on a fresh home: data, features, a model, serving, monitoring, traffic."""
    from .traffic import Traffic

    home = (demo_home or default_demo_home()).resolve()
    project = home / "project"
    say(f"demo home: {home}")
    counts = lay_out(project)
    if not counts.get("reused"):
        say(f"generated {counts['rows']} transactions in {counts['files']} files ({counts['bad_rows']} spoiled)")
    client, proc = start_daemon(home, project)
    traffic = None
    failed = []
    try:
        say("running the nightly pipeline: ingest -> materialize -> training set -> train -> promote")
        run = run_pipeline(client)
        if run["status"] != "succeeded":
            errors = "; ".join(f"{s['step']}: {s['error']}" for s in run.get("steps", []) if s.get("error"))
            raise ApplianceError(f"pipeline run {run.get('id')} {run['status']}: {errors}", title="Demo failed")
        wait_serving(client)
        port = client.info["ports"]["serving"]
        world = generator().World(seed=7)
        traffic = Traffic(f"http://127.0.0.1:{port}", world, feedback_token=client.get("/feedback/token")["token"],
                          drift_after=drift_after if drift_after is not None else min(30.0, seconds / 2))
        traffic.start()
        say(f"from another terminal: `appliance` (it offers to attach to this demo) or "
            f"`appliance --home {home}`")
        if headless:
            say(f"sending traffic for {seconds:g} s (drift after {traffic.drift_after:g} s)")
            time.sleep(seconds)
        else:
            from tui import run as run_dashboard  # the dashboard is a client; the core never imports it

            run_dashboard(home)
        traffic.stop()
        traffic.join(10)
        time.sleep(1.0)  # the prediction log and counters settle
        result = summary(client, traffic)
        if not result["requests_served"]:
            failed.append("no request was served")
        if result["model_version"] is None:
            failed.append("no model version holds the champion alias")
        result["failed"] = failed
        if as_json:
            click.echo(json.dumps(result))
        else:
            for key, value in result.items():
                click.echo(f"{key:>20}: {value}")
    finally:
        if traffic:
            traffic.stop()
        if proc is not None and not keep:
            try:
                client.post("/shutdown")
                proc.wait(60)
            except (ApplianceError, subprocess.TimeoutExpired):
                proc.terminate()
    if failed:
        click.echo("demo failed: " + "; ".join(failed), err=True)
        sys.exit(1)

