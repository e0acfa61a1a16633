"""``appliance sources``, ``ingest``, ``quarantine`` and ``batches``: the control API from the shell."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.cli import connect
from appliance.cli.output import emit_json, json_option, table, when

from .report import quarantine_lines


@click.command()
@json_option
@click.pass_context
def sources(ctx, as_json):
    """Sources declared in the project, with rows, quarantined rows and held batches."""
    rows = connect(ctx).get("/sources")
    if as_json:
        return emit_json(rows)
    table([(s["name"], s["kind"], s["path"] or s["glob"] or s["watch"], s["rows"], s["quarantined_rows"],
            s["batches"], s["held"]) for s in rows],
          ["NAME", "KIND", "FROM", "ROWS", "QUARANTINED", "BATCHES", "HELD"])


@click.command()
@click.argument("source")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--no-wait", is_flag=True, help="Queue the job and return.")
@json_option
@click.pass_context
def ingest(ctx, source, files, no_wait, as_json):
    """Ingest FILES (default: the source's own path, glob or watched directory) into SOURCE."""
    c = connect(ctx)
    # Paths are the user's, relative to where they run the command; the daemon confines them to the data dirs.
    body = {"files": [str(f.resolve()) for f in files]} if files else {}
    job = c.post(f"/sources/{source}/ingest", body)
    if not no_wait:
        job = c.wait_job(job)
    if as_json:
        emit_json(job)
    elif job["state"] in ("queued", "running"):
        click.echo(f"job {job['id']}: {job['state']}")
    else:
        for b in (job.get("result") or {}).get("batches", []):
            if b["status"] == "duplicate":
                click.echo(f"{b['file']}: {b['message']}")
            elif b["quarantined"]:  # not a plain success: say what was lost, and to which rule
                share = b["quarantined"] / b["rows_in"] if b["rows_in"] else 0
                click.echo(f"{b['file']}: batch {b['batch_id']} {b['status']} with {b['quarantined']} of "
                           f"{b['rows_in']} rows quarantined ({share:.1%}); {b['accepted']} accepted")
                for line in quarantine_lines(b):
                    click.echo(f"  {line}")
                click.echo(f"  see them: appliance quarantine {source} --batch {b['batch_id']}")
            else:
                click.echo(f"{b['file']}: batch {b['batch_id']} {b['status']}: {b['rows_in']} rows in, "
                           f"{b['accepted']} accepted, 0 quarantined")
            if b["status"] != "duplicate":
                for reason in b["reasons"]:
                    click.echo(f"  held: {reason}")
        if job.get("error"):
            click.echo(f"error: {job['error']}", err=True)
    if not no_wait and job["state"] != "succeeded":
        sys.exit(1)


@click.command()
@click.argument("source")
@click.option("--batch", type=int, help="Only this batch's rows.")
@click.option("--limit", default=100, show_default=True)
@json_option
@click.pass_context
def quarantine(ctx, source, batch, limit, as_json):
    """Rows of SOURCE that failed its contract: file, row, column, rule, expected and got."""
    rows = connect(ctx).get(f"/sources/{source}/quarantine", batch=batch, limit=limit)
    if as_json:
        return emit_json(rows)
    table([(r["batch_id"], r["file"], r["row"], r["column"], r["rule"], r["expected"], (r["got"] or "")[:40])
           for r in rows], ["BATCH", "FILE", "ROW", "COLUMN", "RULE", "EXPECTED", "GOT"])


@click.group(invoke_without_command=True)
@click.option("--source")
@click.option("--state", type=click.Choice(["accepted", "held", "approved", "rejected"]))
@click.option("--limit", default=50, show_default=True)
@json_option
@click.pass_context
def batches(ctx, source, state, limit, as_json):
    """List batches (newest first), or approve or reject a held one."""
    if ctx.invoked_subcommand is not None:
        return
    rows = connect(ctx).get("/batches", source=source, state=state, limit=limit)
    if as_json:
        return emit_json(rows)
    table([(b["id"], b["source"], b["state"], b["file"], b["rows_in"], b["accepted"], b["quarantined"],
            when(b["time"]), "; ".join(b["reasons"])[:60]) for b in rows],
          ["ID", "SOURCE", "STATE", "FILE", "IN", "ACCEPTED", "QUARANTINED", "TIME", "REASONS"])


def _decide(ctx, batch_id: int, verb: str, as_json: bool) -> None:
    b = connect(ctx).post(f"/batches/{batch_id}/{verb}")
    if as_json:
        return emit_json(b)
    click.echo(f"batch {b['id']} ({b['source']}, {b['file']}): {b['state']}")


@batches.command("approve")
@click.argument("batch_id", type=int)
@json_option
@click.pass_context
def batches_approve(ctx, batch_id, as_json):
    """Merge a held batch into its source's raw table."""
    _decide(ctx, batch_id, "approve", as_json)


@batches.command("reject")
@click.argument("batch_id", type=int)
@json_option
@click.pass_context
def batches_reject(ctx, batch_id, as_json):
    """Drop a held batch; its file stays in the ledger, so it is not ingested again."""
    _decide(ctx, batch_id, "reject", as_json)


COMMANDS = [sources, ingest, quarantine, batches]
