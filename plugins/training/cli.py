"""``appliance train`` and ``appliance runs``: thin clients of the control API."""

from __future__ import annotations

import json
import sys
import time

import click

from appliance.cli import connect
from appliance.cli.output import emit_json, json_option, table, when

FINAL = ("succeeded", "failed", "cancelled")


def parse_sets(items: tuple[str, ...]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@click.command()
@click.argument("spec")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a spec value (VALUE is JSON when it parses): lr=0.01, split.holdout=0.2, layers=[32].")
@click.option("--sweep", is_flag=True, help="Run the spec's sweep instead of one run.")
@click.option("--wait", is_flag=True, help="Wait until the run(s) finish; exit non-zero if one fails.")
@json_option
@click.pass_context
def train(ctx, spec, sets, sweep, wait, as_json):
    """Train a model from the [training.SPEC] table of appliance.toml."""
    c = connect(ctx)
    body = {"spec": spec, "set": parse_sets(sets)}
    started = c.post("/sweeps" if sweep else "/runs", body)
    run_ids = [r["run_id"] for r in started["runs"]] if sweep else [started["run_id"]]
    runs = [c.get(f"/runs/{i}") for i in run_ids]
    while wait and any(r["state"] not in FINAL for r in runs):
        time.sleep(0.5)
        runs = [c.get(f"/runs/{i}") for i in run_ids]
    if as_json:
        emit_json(c.get(f"/sweeps/{started['sweep_id']}") if sweep else runs[0])
    else:
        if sweep:
            click.echo(f"sweep {started['sweep_id']}: {len(run_ids)} run(s)")
        for r in runs:
            click.echo(f"run {r['id']} ({r['spec_name']}): {r['state']}" + (f": {r['error']}" if r["error"] else ""))
            for line in _outcome(r):
                click.echo(f"  {line}")
    if wait and any(r["state"] != "succeeded" for r in runs):
        sys.exit(1)


@click.group()
def runs():
    """Training runs: list, show, compare, resume, metrics."""


@runs.command("list")
@click.option("--experiment")
@click.option("--spec")
@click.option("--state", type=click.Choice(["queued", "running", *FINAL]))
@click.option("--limit", default=50, show_default=True)
@json_option
@click.pass_context
def runs_list(ctx, experiment, spec, state, limit, as_json):
    """Runs, newest first."""
    rows = connect(ctx).get("/runs", experiment=experiment, spec=spec, state=state, limit=limit)
    if as_json:
        return emit_json(rows)
    table([(r["id"], r["experiment"], r["spec_name"], r["state"], r["epoch"], when(r["created"]),
            _headline(r)) for r in rows], ["ID", "EXPERIMENT", "SPEC", "STATE", "EPOCH", "CREATED", "HOLDOUT"])


def _outcome(run: dict) -> list[str]:
    """What a finished run left out and where its model went: the lines a person checks after training."""
    result = run.get("result") or {}
    out = []
    rows = result.get("rows") or {}
    dropped = (result.get("dropped") or {}).get("null_labels")
    if rows:
        out.append(f"trained on {rows.get('train', 0)} rows ({rows.get('validation', 0)} validation, "
                   f"{rows.get('holdout', 0)} holdout)" + (f"; left out {dropped} row(s) with no label "
                                                             f"{run['params'].get('label')!r}" if dropped else ""))
    reg = result.get("registered")
    if reg:
        line = f"registered {reg['name']} version {reg.get('version', '?')}"
        if reg.get("alias"):
            line += f", promoted to {reg['alias']}"
        if reg.get("alias_refused"):
            line += f"; not promoted: {reg['alias_refused']}"
        if reg.get("error"):
            line += f"; {reg['error']}"
        out.append(line)
    return out


def _headline(run: dict) -> str:
    metrics = (run.get("result") or {}).get("holdout_metrics") or {}
    return "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())[:3])


@runs.command("show")
@click.argument("run_id", type=int)
@json_option
@click.pass_context
def runs_show(ctx, run_id, as_json):
    """One run: params, metrics, environment, artifacts."""
    r = connect(ctx).get(f"/runs/{run_id}")
    if as_json:
        return emit_json(r)
    click.echo(f"run {r['id']}  {r['experiment']}/{r['spec_name']}  {r['state']}  epoch {r['epoch']}  "
               f"attempts {r['attempts']}  created {when(r['created'])}")
    if r["error"]:
        click.echo(f"error: {r['error']}")
    click.echo(f"config {r['config_hash'][:12]}  seed {r['seed']}  data {r['data'].get('sha256') or r['data']['path']}")
    click.echo("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in r["params"]["hyperparameters"].items()))
    table([(k, f"{v:.6g}") for k, v in sorted(r["metrics"].items())], ["METRIC", "LAST"])
    result = r["result"] or {}
    for k, v in sorted((result.get("holdout_metrics") or {}).items()):
        click.echo(f"holdout {k}: {v:.6g}")
    for line in _outcome(r):
        click.echo(line)


@runs.command("compare")
@click.argument("a", type=int)
@click.argument("b", type=int)
@json_option
@click.pass_context
def runs_compare(ctx, a, b, as_json):
    """What differs between runs A and B: params, metrics, environment, data."""
    diff = connect(ctx).get("/runs/compare", a=a, b=b)
    if as_json:
        return emit_json(diff)
    for section in ("params", "metrics", "environment", "data"):
        rows = [(k, v["a"], v["b"]) for k, v in diff[section].items()]
        click.echo(f"{section}: " + ("no differences" if not rows else ""))
        if rows:
            table(rows, ["KEY", f"RUN {a}", f"RUN {b}"])


@runs.command("resume")
@click.argument("run_id", type=int)
@json_option
@click.pass_context
def runs_resume(ctx, run_id, as_json):
    """Resume a failed or cancelled run from its last checkpoint."""
    r = connect(ctx).post(f"/runs/{run_id}/resume")
    if as_json:
        return emit_json(r)
    where = f"epoch {r['resume']['epoch']}" if r["resume"] else "the start (it had no checkpoint)"
    click.echo(f"run {run_id}: resuming from {where} as job {r['job_id']}")


@runs.command("metrics")
@click.argument("run_id", type=int)
@click.option("--key", help="Only this metric.")
@json_option
@click.pass_context
def runs_metrics(ctx, run_id, key, as_json):
    """A run's metric series."""
    rows = connect(ctx).get(f"/runs/{run_id}/metrics", key=key, limit=1_000_000)
    if as_json:
        return emit_json(rows)
    table([(m["key"], m["step"], m["epoch"] if m["epoch"] is not None else "", f"{m['value']:.6g}") for m in rows],
          ["KEY", "STEP", "EPOCH", "VALUE"])
