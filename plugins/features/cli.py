"""``appliance features ...`` and ``appliance training-sets ...``: thin clients of the control API."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli import connect
from appliance.cli.output import emit_json, json_option, table, when


def _wait(client, job: dict, wait: bool) -> dict:
    if wait:
        job = client.wait_job(job)
    if wait and job["state"] != "succeeded":
        raise click.ClickException(f"job {job['id']} {job['state']}: {job.get('error') or ''}")
    return job


@click.group("features")
def features() -> None:
    """Feature views: list, inspect, materialize, and read online values."""


@features.command("list")
@json_option
@click.pass_context
def list_views(ctx, as_json):
    """The project's feature views and their current versions."""
    rows = connect(ctx).get("/features")
    if as_json:
        return emit_json(rows)
    table([(r["name"], r["version"], ", ".join(r["entities"]), len(r["features"] or []), r["rows"],
            r["watermark"] or "-", "-" if r["online_age_s"] is None else f"{r['online_age_s']:.0f}s")
           for r in rows], ["VIEW", "VERSION", "ENTITIES", "FEATURES", "ROWS", "WATERMARK", "ONLINE AGE"])


@features.command("show")
@click.argument("view")
@json_option
@click.pass_context
def show(ctx, view, as_json):
    """One feature view: definition, versions and feature statistics."""
    info = connect(ctx).get(f"/features/{view}")
    if as_json:
        return emit_json(info)
    click.echo(f"{info['name']} v{info['version']}  {info['description']}")
    click.echo(f"rows {info['rows']}, watermark {info['watermark'] or '-'}, "
               f"materialized {when(info['materialized'])}")
    feats = ((info.get("stats") or {}).get("features")) or {}
    columns = (info.get("schema") or {}).get("columns", {})
    table([(f, columns.get(f, ""), s.get("count"), s.get("nulls"), s.get("min", "-"), s.get("max", "-"),
            s.get("mean", "-")) for f, s in feats.items()],
          ["FEATURE", "TYPE", "COUNT", "NULLS", "MIN", "MAX", "MEAN"])
    table([(v["version"], v["digest"][:12], when(v["created"]), when(v["materialized"]), v["rows"])
           for v in info["versions"]], ["VERSION", "DIGEST", "CREATED", "MATERIALIZED", "ROWS"])


@features.command("materialize")
@click.argument("view")
@click.option("--full", is_flag=True, help="Recompute the whole history instead of only what is new.")
@click.option("--wait", is_flag=True, help="Wait for the job to finish.")
@json_option
@click.pass_context
def materialize(ctx, view, full, wait, as_json):
    """Compute a view's new history into its offline table and refresh its online values."""
    client = connect(ctx)
    job = _wait(client, client.post(f"/features/{view}/materialize", {"full": full}), wait)
    if as_json:
        return emit_json(job)
    r = job.get("result")
    if not r:
        return click.echo(f"job {job['id']} {job['state']}")
    click.echo(f"{r['view']} v{r['version']}: {r['rows_added']} row(s) added, {r['rows']} in all, watermark "
               f"{r['watermark'] or '-'}, {r['online_entities']} entities online")
    if r.get("duplicates_dropped"):
        click.echo(f"  dropped {r['duplicates_dropped']} duplicate (entity, event time) row(s): "
                   f"{r['duplicates_kept']}")
    if r.get("late_rows_skipped"):
        click.echo(f"  skipped {r['late_rows_skipped']} late row(s) at or before the previous watermark; "
                   f"--full takes them")


@features.command("get")
@click.argument("entity_key", nargs=-1, required=True)
@click.option("--feature", "-f", "feature_refs", multiple=True, help="view:feature (default: all that apply).")
@click.option("--at", "at", metavar="TIME", help="As of this time (ISO 8601, e.g. 2013-01-01T10:00), from the "
              "offline tables, with the TTL a training set applies then.")
@json_option
@click.pass_context
def get(ctx, entity_key, feature_refs, at, as_json):
    """Values for one entity, given as KEY=VALUE (one per join key): online (now) or --at a past time. Each
    says whether it is fresh, expired (older than its view's TTL, so a model sees null) or missing."""
    entity = {}
    for item in entity_key:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="ENTITY_KEY")
        entity[key] = value
    answer = connect(ctx).post("/features/online", {"entity": entity, "features": list(feature_refs) or None,
                                                     "at": at, "explain": True})
    detail = answer["detail"][0]
    if as_json:
        return emit_json(detail)
    if at:
        click.echo(f"as of {answer['at']}")
    table([(f, "-" if d["value"] is None else d["value"], d["state"], _time(d["event_time"]))
           for f, d in sorted(detail.items())], ["FEATURE", "VALUE", "STATE", "FROM"])


def _time(value) -> str:
    if value is None:
        return "-"
    return when(value) if isinstance(value, int | float) else str(value)


@click.group("training-sets")
def training_sets() -> None:
    """Point-in-time correct training sets: build, list, show."""


@training_sets.command("build")
@click.argument("name")
@click.option("--spine", help="The spine: a table (raw.labels) or a Parquet path.")
@click.option("--spine-sql", help="The spine as a query instead.")
@click.option("--event-time", default="event_time", show_default=True, help="The spine's timestamp column.")
@click.option("--feature", "-f", "feature_refs", multiple=True, required=True, help="view:feature, repeatable.")
@click.option("--wait", is_flag=True, help="Wait for the build to finish.")
@json_option
@click.pass_context
def build(ctx, name, spine, spine_sql, event_time, feature_refs, wait, as_json):
    """Build a training set NAME from a spine and features, as a Parquet snapshot."""
    client = connect(ctx)
    job = client.post("/training-sets", {"name": name, "spine": spine, "spine_sql": spine_sql,
                                         "event_time": event_time, "features": list(feature_refs)})
    job = _wait(client, job, wait)
    if as_json:
        return emit_json(job)
    click.echo(f"job {job['id']} {job['state']}" + (f": {job['result']}" if job.get("result") else ""))


@training_sets.command("list")
@json_option
@click.pass_context
def list_sets(ctx, as_json):
    """Training sets, newest first."""
    rows = connect(ctx).get("/training-sets")
    if as_json:
        return emit_json(rows)
    table([(r["id"], r["name"], r["rows"], ", ".join(f"{v}@{n}" for v, n in r["views"].items()),
            r["sha256"][:12], when(r["created"])) for r in rows],
          ["ID", "NAME", "ROWS", "VIEWS", "SHA256", "CREATED"])


@training_sets.command("show")
@click.argument("id_or_name")
@json_option
@click.pass_context
def show_set(ctx, id_or_name, as_json):
    """One training set (by id or name) with its manifest."""
    rec = connect(ctx).get(f"/training-sets/{id_or_name}")
    if as_json:
        return emit_json(rec)
    m = rec["manifest"]
    click.echo(f"training set {rec['id']} {rec['name']}: {m['row_count']} rows, sha256 {rec['sha256']}")
    click.echo(f"spine {m['spine']['source']} (event time {m['spine']['event_time']})")
    table([(col, ref) for col, ref in m["columns"].items()], ["COLUMN", "FEATURE"])


@training_sets.command("export")
@click.argument("id_or_name")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]),
              help="Default: csv when PATH ends in .csv, else parquet.")
@json_option
@click.pass_context
def export_set(ctx, id_or_name, path, fmt, as_json):
    """Write a training set (by id or name) to a new file PATH, as Parquet or CSV, to read it elsewhere."""
    r = connect(ctx).post(f"/training-sets/{id_or_name}/export", {"path": str(path.resolve()), "format": fmt})
    if as_json:
        return emit_json(r)
    click.echo(f"wrote training set {r['id']} {r['name']} ({r['rows']} rows, {r['format']}) to {r['path']}")
