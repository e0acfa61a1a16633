"""``appliance train``, ``appliance runs`` and ``appliance run``: thin clients of the control API."""

from __future__ import annotations

import json
import os
import shutil
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
    source = r["spec"].get("source")
    if source:
        command = f": {' '.join(r['spec']['command'])}" if r["spec"].get("command") else ""
        click.echo(f"tracked from outside ({source}{command})")
    else:
        click.echo(f"config {r['config_hash'][:12]}  seed {r['seed']}  data {r['data'].get('sha256') or r['data']['path']}")
    click.echo("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in r["params"].get("hyperparameters", {}).items()))
    if r["tags"]:
        click.echo("tags: " + ", ".join(f"{k}={v}" for k, v in sorted(r["tags"].items())))
    env = r["env"] or {}
    if env:
        git = env.get("git") or {}
        click.echo(f"environment: python {env.get('python')}  gpu {env.get('gpu') or '-'}  git "
                   f"{(git.get('commit') or '-')[:12]}{' (dirty)' if git.get('dirty') else ''}")
    table([(k, f"{v:.6g}") for k, v in sorted(r["metrics"].items())], ["METRIC", "LAST"])
    files = [a for a in r["artifacts"] if a["kind"] == "file"]
    if files:
        click.echo("files:")
        table([(a["path"], a["size"], a["sha256"][:12]) for a in files], ["PATH", "BYTES", "SHA256"])
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


@runs.command("delete")
@click.argument("run_id", type=int)
@json_option
@click.pass_context
def runs_delete(ctx, run_id, as_json):
    """Delete a finished run; its metrics are pruned at the next retention run (`appliance jobs submit
    retention` prunes now). A run that trained a registered version is kept."""
    r = connect(ctx).request("DELETE", f"/runs/{run_id}")
    if as_json:
        return emit_json(r)
    click.echo(f"run {run_id} deleted; its metrics go at the next prune")


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


@click.group()
def sweeps():
    """Sweeps of a training spec's hyperparameters (start one with `appliance train SPEC --sweep`)."""


@sweeps.command("show")
@click.argument("sweep_id", type=int)
@json_option
@click.pass_context
def sweeps_show(ctx, sweep_id, as_json):
    """A sweep's best trial and the table of its trials, each with the values it tried and its score."""
    s = connect(ctx).get(f"/sweeps/{sweep_id}")
    if as_json:
        return emit_json(s)
    metric, swept = s["metric"], s["parameters"]
    finished = sum(r["state"] in FINAL for r in s["runs"])
    click.echo(f"sweep {s['id']} of spec {s['spec']}: {s['method']} search, {metric} ({s['goal']}), "
               f"{finished} of {len(s['runs'])} trial(s) finished" + ("" if s["done"] else "; still running"))
    best = s["best"]
    if best:
        click.echo(f"best: run {best['run_id']}  {metric} {best[metric]:.6g}  "
                   + "  ".join(f"{k}={best['hyperparameters'].get(k)}" for k in swept))
    else:
        click.echo("best: none yet (no trial has succeeded with a score)")
    table([(r["run_id"], r["state"], f"{r[metric]:.6g}" if r[metric] is not None else "-",
            *(r["hyperparameters"].get(k) for k in swept), "*" if best and r["run_id"] == best["run_id"] else "")
           for r in s["runs"]], ["RUN", "STATE", metric.upper(), *(k.upper() for k in swept), "BEST"])


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--gpu", is_flag=True, help="Wait for the GPU gate (one GPU job at a time) before starting.")
@click.option("--name", help="The run's name (default: the command line).")
@click.option("--experiment", default="commands", show_default=True)
@click.option("--timeout", "timeout_s", type=float, help="Stop the command after this many seconds.")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable for it.")
@click.option("--detach", is_flag=True, help="Start it and return (follow with `appliance jobs logs JOB`).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(ctx, gpu, name, experiment, timeout_s, env, detach, command):
    """Run COMMAND as a job under the box's care: `appliance run --gpu -- python train.py --lr 0.1`.

    It runs on the daemon's machine, as the daemon's user, in this directory, with its output in the job's log
    (shown here as it comes), system and GPU metrics and its environment on a run of its own, and
    APPLIANCE_RUN_ID set so appliance.track (or MLflow's client) logs into that run. Ctrl-C cancels it.
    """
    c = connect(ctx)
    program = command[0] if os.sep in command[0] else (shutil.which(command[0]) or command[0])
    body = {"command": [program, *command[1:]], "cwd": os.getcwd(), "gpu": gpu, "experiment": experiment,
            "env": dict(_pair(e) for e in env), "timeout_s": timeout_s}
    if name:
        body["name"] = name
    started = c.post("/runs/command", body)
    run_id, job_id = started["run_id"], started["job_id"]
    click.echo(f"run {run_id} (job {job_id}): {' '.join(command)}", err=True)
    if detach:
        return
    job = _follow(c, job_id)
    click.echo(f"run {run_id}: {job['state']}" + (f": {job['error']}" if job.get("error") else ""), err=True)
    sys.exit(0 if job["state"] == "succeeded" else 130 if job["state"] == "cancelled" else 1)


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--env")
    return key, value


def _follow(c, job_id: int) -> dict:
    """Print the job's log as it grows until the job ends; Ctrl-C cancels it (and keeps following to the end)."""
    after = 0
    while True:
        try:
            job = c.get(f"/jobs/{job_id}", wait=1)
            while True:
                lines = c.get(f"/jobs/{job_id}/logs", after=after, limit=10_000)
                for line in lines:
                    click.echo(line["line"])
                if lines:
                    after = lines[-1]["seq"]
                if len(lines) < 10_000:
                    break
            if job["state"] in FINAL:
                return job
        except KeyboardInterrupt:
            click.echo(f"cancelling job {job_id}...", err=True)
            c.post(f"/jobs/{job_id}/cancel")
