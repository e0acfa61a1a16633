"""``appliance models``: list, show, register, promote, rollback, export (a thin client of the control API)."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli import connect
from appliance.cli.client import multipart
from appliance.cli.output import emit_json, json_option, table, when

UPLOAD_TIMEOUT_S = 600.0  # a large model and its sample's checks take a while


@click.group()
def models():
    """Registered models: versions, aliases, registration, promotion, rollback, export to Triton."""


@models.command("list")
@json_option
@click.pass_context
def models_list(ctx, as_json):
    """Models with their latest version and aliases."""
    rows = connect(ctx).get("/models")
    if as_json:
        return emit_json(rows)
    table([(m["name"], m["latest"], ", ".join(f"{a}={v}" for a, v in m["aliases"].items()) or "-",
            when(m["created"]), m["description"]) for m in rows],
          ["NAME", "LATEST", "ALIASES", "CREATED", "DESCRIPTION"])


@models.command("show")
@click.argument("name")
@json_option
@click.pass_context
def models_show(ctx, name, as_json):
    """A model's versions (metrics, run, data) and its audit log."""
    m = connect(ctx).get(f"/models/{name}")
    if as_json:
        return emit_json(m)
    click.echo(f"{m['name']}  latest {m['latest']}  aliases: "
               + (", ".join(f"{a}={v}" for a, v in m["aliases"].items()) or "-"))
    if m["description"]:
        click.echo(m["description"])
    click.echo(f"tags: {tag_text(m['tags'])}")
    table([(v["version"], v["run_id"], ", ".join(v["aliases"]) or "-",
            "  ".join(f"{k}={val:.4g}" for k, val in sorted(v["metrics"].items())[:3]), tag_text(v["tags"]),
            v["onnx_sha256"][:12], when(v["created"])) for v in m["versions"]],
          ["VERSION", "RUN", "ALIASES", "HOLDOUT", "TAGS", "ONNX", "CREATED"])
    shown = next(iter(m["aliases"].values()), m["latest"])
    version = next((v for v in m["versions"] if v["version"] == shown), None)
    inputs = ((version or {}).get("signature") or {}).get("inputs") or []
    if inputs:
        click.echo(f"\ninputs of version {shown} (in order; a client sends these):")
        table([(i.get("name"), i.get("dtype"), i.get("shape"), ", ".join(i.get("features") or []) or "-",
                "yes" if i.get("nullable") else "no") for i in inputs],
              ["INPUT", "TYPE", "SHAPE", "FEATURES (IN ORDER)", "TAKES NULL"])
    click.echo("\naudit log (newest first):")
    table([(when(a["time"]), a["action"], a["alias"] or "", a["from_version"] or "", a["to_version"] or "",
            a["actor"], a["reason"]) for a in m["audit"]], ["TIME", "ACTION", "ALIAS", "FROM", "TO", "BY", "REASON"])


def tag_text(tags: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "-"


def _tag_pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="TAGS")
    return key, value


@models.command("tag")
@click.argument("name")
@click.argument("tags", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--version", type=int, help="Tag this version instead of the model.")
@json_option
@click.pass_context
def models_tag(ctx, name, tags, version, as_json):
    """Set tags on model NAME (or one of its versions): `appliance models tag fraud owner=risk --version 3`."""
    _retag(ctx, name, version, {"tags": dict(_tag_pair(t) for t in tags)}, as_json)


@models.command("untag")
@click.argument("name")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@click.option("--version", type=int, help="Untag this version instead of the model.")
@json_option
@click.pass_context
def models_untag(ctx, name, keys, version, as_json):
    """Remove tags (by key) from model NAME (or one of its versions)."""
    _retag(ctx, name, version, {"untag": list(keys)}, as_json)


def _retag(ctx, name: str, version: int | None, body: dict, as_json: bool) -> None:
    path = f"/models/{name}" + (f"/versions/{version}" if version is not None else "")
    r = connect(ctx).post(path, body)
    if as_json:
        return emit_json(r)
    click.echo(f"{name}{f' version {version}' if version is not None else ''} tags: {tag_text(r['tags'])}")


@models.command("lineage")
@click.argument("name")
@click.argument("version", type=int)
@json_option
@click.pass_context
def models_lineage(ctx, name, version, as_json):
    """Where VERSION of model NAME came from: its run, training set, feature-view versions, and the ingest
    batches (file, content hash, rows) behind each view."""
    c = connect(ctx).get(f"/models/{name}/versions/{version}/lineage")
    if as_json:
        return emit_json(c)
    for line in lineage_lines(c):
        click.echo(line)


def lineage_lines(c: dict, batches_shown: int = 20) -> list[str]:
    """The chain as indented lines, model version first and source files last."""
    out = [f"{c['model']} version {c['version']}  (onnx {c['onnx_sha256'][:12]}, registered {when(c['created'])})"]
    run = c.get("run")
    if run and run.get("missing"):
        out.append(f"  run {run['id']}: {run['missing']}")
    elif run:
        out.append(f"  run {run['id']}  {run['experiment']}/{run['spec']}  {run['state']}  config "
                   f"{run['config_hash'][:12]}")
    data = c.get("data") or {}
    if data.get("kind") == "training_set":
        out.append(f"    training set {data['id']} {data['name']}  sha256 {(data['sha256'] or '-')[:12]}  "
                   f"{data['rows']} rows")
    elif data.get("kind") == "parquet":
        out.append(f"    parquet {data['path']}  sha256 {data['sha256'][:12]}  {data['rows']} rows")
    elif data.get("kind") == "upload":
        out.append(f"    uploaded as {data['file'] or '-'}" + (f"  sample sha256 {data['sample_sha256'][:12]}"
                                                              if data.get("sample_sha256") else "  (no sample)"))
    for v in c["views"]:
        out.append(f"      feature view {v['view']} v{v['version']}  digest {(v['digest'] or '-')[:12]}  from "
                   f"{v['source'] or '?'}")
        if v["batches"] is None:
            out.append("        batches: " + _no_batches(v))
            continue
        for b in v["batches"][:batches_shown]:
            out.append(f"        batch {b['id']}  {b['file']}  {b['content_hash']}  {b['rows']} rows  {b['state']}")
        if len(v["batches"]) > batches_shown:
            out.append(f"        ... and {len(v['batches']) - batches_shown} more batches (--json lists them all)")
    return out


def _no_batches(view: dict) -> str:
    if view["batches_recorded"]:
        return "the ingest plugin is not loaded"
    if view["source"] is None or view["source"].startswith("raw."):
        return "not recorded (the view was materialized before lineage reached ingest batches)"
    return f"none ({view['source']} is not an ingested source)"


@models.command("register")
@click.argument("name")
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sample", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Rows (Parquet or JSON) to check parity and latency on; kept as the drift reference.")
@click.option("--description", default="", help="What this version is.")
@click.option("--tolerance", type=float, help="Largest parity difference accepted (default 1e-4).")
@click.option("--run", "run_id", type=int, help="The run that trained it (linked in its lineage).")
@click.option("--nullable", multiple=True, metavar="INPUT",
              help="An input the model imputes (takes NaN): serving lets a null through to it. Repeatable.")
@json_option
@click.pass_context
def models_register(ctx, name, onnx_file, sample, description, tolerance, run_id, nullable, as_json):
    """Register ONNX_FILE, trained elsewhere, as the next version of model NAME.

    The file is read here and sent; the daemon checks it (ONNX checker, opset, no external data, tensors in
    and out), reads its signature from the graph and, with --sample, runs the rows for parity and latency.
    """
    fields = {k: str(v) for k, v in (("description", description), ("tolerance", tolerance),
                                     ("run_id", run_id), ("nullable", ",".join(nullable))) if v not in (None, "")}
    files = {"model": (onnx_file.name, onnx_file.read_bytes())}
    if sample:
        files["sample"] = (sample.name, sample.read_bytes())
    body, ctype = multipart(fields, files)
    v = connect(ctx).request("POST", f"/models/{name}/versions", raw=body, content_type=ctype,
                             timeout=UPLOAD_TIMEOUT_S)
    if as_json:
        return emit_json(v)
    print_registered(v)


def print_registered(v: dict) -> None:
    """What was registered and what the checks found: signature, parity, latency, drift reference."""
    checks = v["checks"]
    made = ", ".join(str(x) for x in (checks["producer"], f"opset {checks['opset']}") if x)
    click.echo(f"registered {v['name']} version {v['version']} (sha256 {v['onnx_sha256'][:12]}, "
               f"{checks['size'] / 1024:.1f} kB, {made})")
    for kind in ("inputs", "outputs"):
        for t in v["signature"][kind]:
            features = f"  features: {', '.join(t['features'])}" if t.get("features") else ""
            click.echo(f"  {kind[:-1]:<6} {t['name']:<16} {t['dtype']:<6} {t['shape']}{features}")
    found = checks["sample"]
    if not found:
        click.echo("no sample: parity and latency not checked, no drift reference (add one with --sample)")
        return
    parity = found["parity"]
    if parity["against"]:
        click.echo(f"parity on {found['rows']} rows against {parity['against']}: max abs diff "
                   f"{parity['max_abs_diff']:.3g} (tolerance {parity['tolerance']:g})")
    lat = found["latency"]
    click.echo(f"latency: one request p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms over {lat['calls']} "
               f"calls; {lat['batch_rows']} rows in {lat['batch_ms']:.2f} ms")
    if found.get("reference_columns"):
        click.echo(f"drift reference: the sample's {len(found['reference_columns'])} feature column(s)")


@models.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.argument("alias")
@click.option("--reason", default="", help="Why; kept in the audit log.")
@click.option("--force", is_flag=True, help="Promote even where a promotion gate would refuse (audited as force).")
@json_option
@click.pass_context
def models_promote(ctx, name, version, alias, reason, force, as_json):
    """Point ALIAS of model NAME at VERSION (a promotion gate may refuse; --force overrides it)."""
    r = connect(ctx).post(f"/models/{name}/aliases/{alias}", {"version": version, "reason": reason,
                                                               "force": force})
    if as_json:
        return emit_json(r)
    click.echo(f"{name}@{alias}: {r['from_version'] or '-'} -> {r['to_version']}" +
               ("" if r["moved"] else " (already there)"))


@models.command("rollback")
@click.argument("name")
@click.argument("alias")
@click.option("--reason", default="", help="Why; kept in the audit log.")
@json_option
@click.pass_context
def models_rollback(ctx, name, alias, reason, as_json):
    """Move ALIAS of model NAME back to the version it held before its latest move."""
    r = connect(ctx).post(f"/models/{name}/aliases/{alias}/rollback", {"reason": reason})
    if as_json:
        return emit_json(r)
    click.echo(f"{name}@{alias}: {r['from_version']} -> {r['to_version']}")


@models.command("export")
@click.argument("ref", metavar="NAME[@ALIAS|@VERSION]")
@click.option("--triton", "triton_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Write a Triton model repository here (DIR/NAME/config.pbtxt, DIR/NAME/N/model.onnx).")
@json_option
@click.pass_context
def models_export(ctx, ref, triton_dir, as_json):
    """Export a model version (default: latest) as a Triton model repository."""
    name, _, which = ref.partition("@")
    r = connect(ctx).post(f"/models/{name}/export", {"ref": which or "latest",
                                                      "triton_dir": str(triton_dir.resolve())})
    if as_json:
        return emit_json(r)
    click.echo(f"wrote {r['name']} version {r['version']} to {r['directory']}")
