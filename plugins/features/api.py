"""Control API routes: ``/api/v1/features...`` and ``/api/v1/training-sets...``."""

from __future__ import annotations

from typing import Any

from appliance import BadRequest, Reply, Route

from . import asof, records
from .store import FeatureStore, TrainingSets


def routes(store: FeatureStore) -> list[Route]:
    def list_views(req) -> list[dict[str, Any]]:
        ages = store.online.freshness()
        out = []
        for name, act in sorted(store.views.items()):
            rec = records.version(req.app.catalog.db, name, act.version)
            out.append({"name": name, "version": act.version, "description": act.view.description,
                        "entities": act.view.entities, "source": act.view.source,
                        "features": act.schema.features if act.schema else None, "rows": rec["rows"],
                        "watermark": rec["watermark"], "materialized": rec["materialized"],
                        "online_age_s": ages.get(name)})
        return out

    def show_view(req) -> dict[str, Any]:
        name = req.path_params["view"]
        act = store.active(name)
        versions = records.versions(req.app.catalog.db, name)
        current = next(v for v in versions if v["version"] == act.version)
        return {"name": name, "version": act.version, "description": act.view.description,
                "definition": act.view.definition(), "schema": current["schema"], "rows": current["rows"],
                "watermark": current["watermark"], "materialized": current["materialized"],
                "stats": current["stats"], "online_age_s": store.online.freshness().get(name),
                "versions": [{k: v[k] for k in ("version", "digest", "created", "materialized", "rows",
                                                 "watermark")} for v in versions]}

    def view_stats(req) -> dict[str, Any]:
        name = req.path_params["view"]
        version = req.int_query("version") or store.active(name).version
        rec = records.version(req.app.catalog.db, name, version)
        return {"view": name, "version": version, "stats": rec["stats"]}

    def materialize(req) -> Reply:
        name = req.path_params["view"]
        store.active(name)
        body = req.json_object()
        job = req.app.jobs.submit("materialize", {"view": name, "full": bool(body.get("full", False))},
                                  origin="api")
        return Reply(job, 202)

    def online(req) -> dict[str, Any]:
        body = req.json_object()
        entities = body.get("entities")
        if entities is None and isinstance(body.get("entity"), dict):
            entities = [body["entity"]]
        if not isinstance(entities, list) or not entities or not all(isinstance(e, dict) for e in entities):
            raise BadRequest("give entity (an object of join key: value) or entities (a list of them)")
        features = body.get("features") or _features_for(store, entities[0])
        if not isinstance(features, list):
            raise BadRequest("features must be a list of view:feature names", title="Unknown feature")
        entities = [_coerce(store, e) for e in entities]
        if body.get("at") is not None:  # as of a past time, from the offline tables
            at = asof.parse_time(body["at"])
            con = req.app.store.cursor()
            detail = [asof.explain_at(store, con, e, features, at) for e in entities]
            return {"features": features, "at": str(at), "values": [{f: d[f]["value"] for f in features}
                                                                   for d in detail], "detail": detail}
        out = {"features": features, "values": store.online.get_many(entities, features)}
        if body.get("explain"):
            out["detail"] = [store.online.explain(e, features) for e in entities]
        return out

    def list_sets(req) -> list[dict[str, Any]]:
        limit = req.int_query("limit", 100, minimum=1, maximum=10_000)
        return [_brief(r) for r in records.training_sets(req.app.catalog.db, limit)]

    def build(req) -> Reply:
        body = req.json_object()
        store.plan(body)  # refuse bad input now, with a 400 naming what is wrong, not as a failed job later
        job = req.app.jobs.submit("build_training_set", body, origin="api")
        return Reply(job, 202)

    def show_set(req) -> dict[str, Any]:
        rec = records.training_set(req.app.catalog.db, req.path_params["id"])
        TrainingSets(store).get(rec["id"])  # verifies the snapshot still matches its hash
        return rec

    def export_set(req) -> dict[str, Any]:
        body = req.json_object()
        rec = records.training_set(req.app.catalog.db, req.path_params["id"])
        snapshot = TrainingSets(store).get(rec["id"])["path"]  # verified against its hash first
        return export_snapshot(req.app.store.cursor(), rec, snapshot, body.get("path"), body.get("format"))

    return [
        Route("GET", "/features", list_views, "feature views and their current versions"),
        Route("POST", "/features/online", online, "online feature values for entities"),
        Route("GET", "/features/{view}", show_view, "one feature view, its versions and statistics"),
        Route("GET", "/features/{view}/stats", view_stats, "statistics of a feature view version"),
        Route("POST", "/features/{view}/materialize", materialize, "queue a materialization of a view"),
        Route("GET", "/training-sets", list_sets, "training sets, newest first"),
        Route("POST", "/training-sets", build, "check and queue a training-set build"),
        Route("GET", "/training-sets/{id}", show_set, "one training set (by id or name) with its manifest"),
        Route("POST", "/training-sets/{id}/export", export_set,
              "write a training set to a new file (body: path, absolute; format: parquet or csv)"),
    ]


def export_snapshot(con, rec: dict, snapshot: str, path: Any, fmt: Any) -> dict[str, Any]:
    """Copy a training set's snapshot to ``path`` as Parquet (the snapshot's bytes) or CSV (DuckDB writes it);
    an existing file is never overwritten."""
    import os
    import shutil
    from pathlib import Path

    if not isinstance(path, str) or not path or "\0" in path or not Path(path).is_absolute():
        raise BadRequest("field 'path' must be an absolute file path (the CLI resolves a relative one)")
    fmt = fmt or ("csv" if path.lower().endswith(".csv") else "parquet")
    if fmt not in ("parquet", "csv"):
        raise BadRequest(f"format must be parquet or csv, got {fmt!r}")
    target = Path(path)
    if target.exists():
        raise BadRequest(f"{target} exists; give a new file name", title="Export refused")
    if not target.parent.is_dir():
        raise BadRequest(f"{target.parent} is not a directory", title="Export refused")
    tmp = target.with_name(f".{target.name}.partial")
    try:
        if fmt == "parquet":
            shutil.copyfile(snapshot, tmp)
        else:
            quoted = str(tmp).replace("'", "''")
            con.execute(f"copy (select * from read_parquet(?)) to '{quoted}' (format csv, header true)",
                        [snapshot]).fetchall()
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadRequest(f"{target}: {exc.strerror or exc}", title="Export refused") from None
    return {"id": rec["id"], "name": rec["name"], "path": str(target), "format": fmt,
            "rows": rec["manifest"]["row_count"], "sha256": rec["sha256"]}


def _brief(rec: dict) -> dict[str, Any]:
    m = rec["manifest"]
    return {"id": rec["id"], "name": rec["name"], "sha256": rec["sha256"], "rows": m["row_count"],
            "views": {v: d["version"] for v, d in m["views"].items()}, "created": rec["created"]}


def _features_for(store: FeatureStore, entity: dict) -> list[str]:
    """Without a feature list: every online feature of the views whose keys the entity gives."""
    out = []
    for name, features in store.online.features().items():
        if all(k in entity for k in store.views[name].view.join_keys):
            out += [f"{name}:{f}" for f in features]
    if not out:
        raise BadRequest(f"no materialized feature view is keyed by {', '.join(map(repr, entity))}",
                         title="Unknown feature")
    return out


def _coerce(store: FeatureStore, entity: dict) -> dict:
    """Keys typed on a command line arrive as text; an integer entity key gets its digits as an int."""
    ints = {k for name in store.online.features() for k, t in store.online.key_types(name).items() if t == "int"}
    return {k: int(v) if k in ints and isinstance(v, str) and v.lstrip("-").isdigit() else v
            for k, v in entity.items()}
