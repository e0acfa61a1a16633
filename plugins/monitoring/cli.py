"""``appliance monitors``, ``appliance alerts`` and ``appliance drift``: the control API, for people or as JSON."""

from __future__ import annotations

import sys

import click

from appliance.cli import connect
from appliance.cli.output import emit_json, json_option, table, when


def _checks(run: dict | None) -> str:
    if not run:
        return "-"
    firing = [c["rule"].split(".", 1)[-1] for c in run.get("checks", []) if c["firing"]]
    return ",".join(firing) or "-"


@click.group()
def monitors():
    """Monitors: drift, data quality, model quality, bias, serving health, the GPUs and the box."""


@monitors.command("list")
@json_option
@click.pass_context
def list_(ctx, as_json):
    """Every monitor with its kind, schedule and last run; then the kinds there are."""
    got = connect(ctx).get("/monitors")
    if as_json:
        return emit_json(got)
    table([(m["name"], m["kind"], f"{m['every_s']:g} s" if m["every_s"] else "-",
            (m["last_run"] or {}).get("status", "-"), when((m["last_run"] or {}).get("time")), _checks(m["last_run"]))
           for m in got["monitors"]], ["NAME", "KIND", "EVERY", "LAST RUN", "AT", "FIRING"])
    click.echo()
    table([(k["name"], k["plugin"], k["description"]) for k in got["kinds"]], ["KIND", "PLUGIN", "DESCRIPTION"])


@monitors.command()
@click.argument("name")
@click.option("--no-wait", is_flag=True, help="Queue the run and return at once.")
@json_option
@click.pass_context
def run(ctx, name, no_wait, as_json):
    """Run monitor NAME now; exits 1 if the run failed, 2 if an alert is firing."""
    client = connect(ctx)
    job = client.post(f"/monitors/{name}/run")
    if not no_wait:
        job = client.wait_job(job)
    if as_json:
        emit_json(job)
    elif no_wait:
        click.echo(f"job {job['id']} queued")
    elif job["state"] != "succeeded":
        click.echo(f"monitor {name}: {job['state']}: {job.get('error') or job.get('message') or ''}", err=True)
    else:
        result = job["result"]
        click.echo(f"monitor {name}: {result['status']}")
        table([(c["rule"], c["subject"], "FIRING" if c["firing"] else "ok", c["message"]) for c in result["checks"]],
              ["RULE", "SUBJECT", "STATE", "MESSAGE"])
    if not no_wait:
        if job["state"] != "succeeded":
            sys.exit(1)
        if job["result"]["status"] == "alert":
            sys.exit(2)


@click.group()
def alerts():
    """Alerts raised by monitors and other plugins: list them, acknowledge them."""


@alerts.command("list")
@click.option("--state", default="active", show_default=True,
              type=click.Choice(["active", "open", "acked", "resolved", "all"]))
@click.option("--limit", default=100, show_default=True)
@json_option
@click.pass_context
def alerts_list(ctx, state, limit, as_json):
    """Alerts, newest first (active = open or acknowledged)."""
    rows = connect(ctx).get("/alerts", state=state, limit=limit)
    if as_json:
        return emit_json(rows)
    table([(a["id"], a["state"], a["severity"], a["rule"], a["subject"], a["count"], when(a["last_seen"]),
            a["message"][:80]) for a in rows], ["ID", "STATE", "SEVERITY", "RULE", "SUBJECT", "SEEN", "LAST", "MESSAGE"])


@alerts.command()
@click.argument("alert_id", type=int)
@click.option("--by", default="", help="Who acknowledges it (default: your user name).")
@click.option("--note", default="", help="Why, or what is being done about it.")
@json_option
@click.pass_context
def ack(ctx, alert_id, by, note, as_json):
    """Acknowledge alert ALERT_ID: someone is on it. It still resolves by itself when the condition clears."""
    import getpass

    alert = connect(ctx).post(f"/alerts/{alert_id}/ack", {"by": by or getpass.getuser(), "note": note})
    if as_json:
        return emit_json(alert)
    click.echo(f"alert {alert['id']} ({alert['rule']} on {alert['subject']}) acknowledged by {alert['acked_by']}")


@click.command()
@click.argument("model")
@click.option("--window", "window_s", default=86400, show_default=True, help="Seconds of the log to compare.")
@click.option("--reference", default=None, help='"training_set" (default), "window", or a Parquet path.')
@json_option
@click.pass_context
def drift(ctx, model, window_s, reference, as_json):
    """Drift of MODEL's (or a deployment's) recent inputs against its reference, per column."""
    got = connect(ctx).get(f"/drift/{model}", window_s=window_s, reference=reference)
    if as_json:
        return emit_json(got)
    if got["status"] == "no data":
        click.echo(f"{model}: not enough data: {got.get('no_data')}")
        return
    d = got["drift"]
    click.echo(f"{model} (deployment {got['deployment']}): {len(d['drifted_columns'])} of {len(d['columns'])} "
               f"column(s) drifted; dataset drift: {'YES' if d['dataset_drift'] else 'no'}")
    table([(c["column"], c["test"], f"{c['statistic']:.4g}", f"{c['threshold']:g}", "DRIFT" if c["drifted"] else "ok")
           for c in d["columns"]], ["COLUMN", "TEST", "STATISTIC", "THRESHOLD", "VERDICT"])


COMMANDS = [monitors, alerts, drift]
