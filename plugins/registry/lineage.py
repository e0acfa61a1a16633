"""A model version's lineage as a chain: version, run, training data, feature-view versions, ingest batches.

The registry keeps what the run recorded when it registered the version (its training set's manifest, taken when
the run started); the batches behind each view version are the ones its table held at the materialization the
training set was built from, so a batch approved later never appears. Each link is read through the service of
the plugin that owns it (``run_tracking``, ``ingest_batches``); a link whose plugin is not loaded, or whose record
is gone, is said to be so rather than left out.
"""

from __future__ import annotations

from appliance import ApplianceError


def chain(app, registry, name: str, number: int) -> dict:
    """``{"model", "version", "created", "source", "run", "data", "views"}`` for version ``number`` of ``name``."""
    version = registry.version(name, number)
    lineage = version["lineage"] or {}
    services = app.registry("services")
    out = {"model": name, "version": version["version"], "created": version["created"],
           "onnx_sha256": version["onnx_sha256"], "source": lineage.get("source", "training"),
           "run": _run(services.get("run_tracking"), version["run_id"]), "data": _data(lineage), "views": []}
    manifest = lineage.get("manifest") or {}
    batches = services.get("ingest_batches")
    for view, entry in (manifest.get("views") or {}).items():
        ranges = entry.get("batches")
        out["views"].append({"view": view, "version": entry.get("version"), "digest": entry.get("digest"),
                             "source": entry.get("source"), "features": entry.get("features") or [],
                             "batches": _batches(batches, ranges), "batches_recorded": ranges is not None})
    return out


def _run(service, run_id: int | None) -> dict | None:
    if run_id is None:
        return None
    if service is None:
        return {"id": run_id, "missing": "the training plugin is not loaded"}
    try:
        run = service.get(run_id)
    except ApplianceError:
        return {"id": run_id, "missing": "the run was deleted"}
    return {"id": run["id"], "spec": run["spec_name"], "experiment": run["experiment"], "state": run["state"],
            "config_hash": run["config_hash"], "created": run["created"], "finished": run["finished"]}


def _data(lineage: dict) -> dict | None:
    """What the version was trained on (a training set or a Parquet file), or the file it was uploaded as."""
    manifest = lineage.get("manifest") or {}
    if lineage.get("training_set") is not None:
        return {"kind": "training_set", "id": lineage["training_set"], "name": manifest.get("name"),
                "sha256": manifest.get("hash") or lineage.get("data_sha256"), "rows": manifest.get("row_count"),
                "spine": (manifest.get("spine") or {}).get("source")}
    if lineage.get("source") == "upload":
        return {"kind": "upload", "file": lineage.get("file"), "sample_sha256": lineage.get("sample_sha256")}
    if lineage.get("data_sha256"):
        return {"kind": "parquet", "path": manifest.get("path"), "sha256": lineage["data_sha256"],
                "rows": manifest.get("row_count")}
    return None


def _batches(service, ranges: list | None) -> list[dict] | None:
    if ranges is None or service is None:
        return None
    return [{"id": b["id"], "source": b["source"], "file": b["file"], "content_hash": b["content_hash"],
             "rows": b["accepted"], "state": b["state"], "time": b["time"]} for b in service.records(ranges)]
