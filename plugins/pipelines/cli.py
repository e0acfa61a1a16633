"""``appliance pipelines ...`` and ``appliance schedule list``: the control API, printed for people or as JSON."""

from __future__ import annotations

import sys
import time

import click

from appliance.cli import connect
from appliance.cli.output import emit_json, json_option, table, when


def _duration(row: dict) -> str:
    if not row.get("started"):
        return "-"
    return f"{(row.get('finished') or time.time()) - row['started']:.1f} s"


@click.group()
def pipelines():
    """Pipelines: DAGs of job steps, run on schedules, on events, or by hand."""


@pipelines.command("list")
@json_option
@click.pass_context
def list_(ctx, as_json):
    """Every pipeline with its schedule, next fire time and last run."""
    rows = connect(ctx).get("/pipelines")
    if as_json:
        return emit_json(rows)
    table([(p["name"], len(p["steps"]), p["schedule"] or "-", when(p["next_fire"]),
            (p["last_run"] or {}).get("status", "-"), ",".join(map(str, p["running"])) or "-") for p in rows],
          ["NAME", "STEPS", "SCHEDULE", "NEXT FIRE", "LAST RUN", "RUNNING"])


@pipelines.command()
@click.argument("name")
@json_option
@click.pass_context
def show(ctx, name, as_json):
    """A pipeline's steps, schedule, triggers and recent runs."""
    p = connect(ctx).get(f"/pipelines/{name}")
    if as_json:
        return emit_json(p)
    click.echo(f"{p['name']}  {p['description']}".rstrip())
    click.echo(f"schedule: {p['schedule'] or '-'}  next fire: {when(p['next_fire'])}  "
               f"max overlap: {p['max_overlap'] or 'unlimited'}")
    for t in p["triggers"]:
        click.echo(f"trigger: event {t['event']}" + (f" subject {t['subject']}" if t["subject"] else "")
                   + f", debounce {t['debounce_s']:g} s")
    table([(s["name"], s["kind"], ",".join(s["depends_on"]) or "-", s["retries"] if s["retries"] is not None else "-",
            s["timeout_s"] or "-") for s in p["steps"]], ["STEP", "KIND", "DEPENDS ON", "RETRIES", "TIMEOUT"])


@pipelines.command()
@click.argument("name")
@click.option("--wait", is_flag=True, help="Wait for the run to finish; exit 1 unless it succeeded.")
@json_option
@click.pass_context
def run(ctx, name, wait, as_json):
    """Start a run of NAME now."""
    client = connect(ctx)
    got = client.post(f"/pipelines/{name}/run")
    if wait:
        while got["status"] == "running":
            time.sleep(0.2)
            got = client.get(f"/pipelines/{name}/runs/{got['id']}")
    if as_json:
        emit_json(got)
    else:
        click.echo(f"run {got['id']} of {name}: {got['status']}" + (f" ({got['reason']})" if got["reason"] else ""))
        if wait:
            _steps(got["steps"])
    if wait and got["status"] != "succeeded":
        sys.exit(1)


@pipelines.command()
@click.argument("name")
@click.option("--run", "run_id", type=int, help="Show one run's steps instead.")
@click.option("--limit", default=20, show_default=True)
@json_option
@click.pass_context
def history(ctx, name, run_id, limit, as_json):
    """NAME's runs, newest first: trigger, status, missed schedule times; or one run's steps with --run."""
    client = connect(ctx)
    if run_id is not None:
        got = client.get(f"/pipelines/{name}/runs/{run_id}")
        if as_json:
            return emit_json(got)
        click.echo(f"run {got['id']} of {name}: {got['status']} ({got['trigger']})")
        return _steps(got["steps"])
    rows = client.get(f"/pipelines/{name}/runs", limit=limit)
    if as_json:
        return emit_json(rows)
    table([(r["id"], r["trigger"], r["status"], when(r["started"] or r["created"]), _duration(r),
            len(r["missed"]) or "-", r["reason"] or "") for r in rows],
          ["RUN", "TRIGGER", "STATUS", "STARTED", "TOOK", "MISSED", "REASON"])


@pipelines.command()
@click.argument("name")
@click.option("--run", "run_id", type=int, help="Cancel only this run.")
@json_option
@click.pass_context
def cancel(ctx, name, run_id, as_json):
    """Cancel NAME's running run(s) and their running jobs."""
    got = connect(ctx).post(f"/pipelines/{name}/cancel", {"run_id": run_id} if run_id else {})
    if as_json:
        return emit_json(got)
    click.echo(f"cancelling run(s) {', '.join(str(r['id']) for r in got)} of {name}")


def _steps(steps: list[dict]) -> None:
    table([(s["step"], s["kind"], s["status"], s["job_id"] or "-", s["attempts"], _duration(s), s["error"] or "")
           for s in steps], ["STEP", "KIND", "STATUS", "JOB", "ATTEMPTS", "TOOK", "ERROR"])


@click.group()
def schedule():
    """Schedules of pipelines and single jobs."""


@schedule.command("list")
@json_option
@click.pass_context
def schedule_list(ctx, as_json):
    """Every schedule with its next and last fire times."""
    rows = connect(ctx).get("/schedules")
    if as_json:
        return emit_json(rows)
    table([(s["name"], s["type"], s["target"], s["schedule"], when(s["next_fire"]), when(s["last_fire"]))
           for s in rows], ["NAME", "TYPE", "RUNS", "SCHEDULE", "NEXT FIRE", "LAST FIRE"])
