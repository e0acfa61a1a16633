"""Control API routes of the model registry: models, versions, aliases, audit, export."""

from __future__ import annotations

from pathlib import Path

from appliance import BadRequest, Route

from . import lineage, triton, upload


def _registry(req):
    return req.app.registry("services").get("model_registry")


def _text(body: dict, key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise BadRequest(f"field {key!r} must be a string")
    return value


def _describe(req, version: int | None) -> dict:
    body = req.json_object()
    tags = body.get("tags")
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise BadRequest("field 'tags' must be an object of string values")
    untag = body.get("untag")
    if untag is not None and not (isinstance(untag, list) and all(isinstance(k, str) for k in untag)):
        raise BadRequest("field 'untag' must be a list of tag keys")
    description = _text(body, "description") if "description" in body else None
    name = req.path_params["name"]
    _registry(req).describe(name, version, description=description, tags=tags, untag=untag)
    return _registry(req).model(name) if version is None else _registry(req).version(name, version)


def list_models(req) -> list:
    return _registry(req).models()


def get_model(req) -> dict:
    name = req.path_params["name"]
    reg = _registry(req)
    return {**reg.model(name), "versions": reg.versions(name), "audit": reg.audit(name)}


def describe_model(req) -> dict:
    return _describe(req, None)


def get_version(req) -> dict:
    return _registry(req).version(req.path_params["name"], req.int_param("version"))


def version_lineage(req) -> dict:
    return lineage.chain(req.app, _registry(req), req.path_params["name"], req.int_param("version"))


def describe_version(req) -> dict:
    return _describe(req, req.int_param("version"))


def resolve(req) -> dict:
    return _registry(req).resolve(req.path_params["name"], req.path_params["ref"])


def set_alias(req) -> dict:
    body = req.json_object()
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadRequest("field 'version' (the version number to point the alias at) is required")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise BadRequest("field 'force' must be true or false")
    return _registry(req).set_alias(req.path_params["name"], req.path_params["alias"], version,
                                    reason=_text(body, "reason"), actor="api", gate=not force,
                                    action="force" if force else "promote")


def rollback(req) -> dict:
    body = req.json_object()
    return _registry(req).rollback(req.path_params["name"], req.path_params["alias"], reason=_text(body, "reason"),
                                   actor="api")


def audit(req) -> list:
    return _registry(req).audit(req.path_params["name"], req.int_query("limit", 1000, minimum=1, maximum=100_000))


def export(req) -> dict:
    body = req.json_object()
    directory = _text(body, "triton_dir")
    if not directory:
        raise BadRequest("field 'triton_dir' (an absolute directory path) is required")
    resolved = _registry(req).resolve(req.path_params["name"], str(body.get("ref") or "latest"))
    return triton.write_repository(resolved, Path(directory))


ROUTES = [
    Route("GET", "/models", list_models, "registered models"),
    Route("GET", "/models/{name}", get_model, "a model: versions, aliases, audit log"),
    Route("POST", "/models/{name}", describe_model, "set a model's description, add tags (tags) or remove them "
          "(untag: a list of keys)"),
    Route("POST", "/models/{name}/versions", upload.post_version, "register an ONNX file trained elsewhere (the "
          "file as the body, or a multipart form: model, sample, description, tolerance, run_id)",
          max_body=upload.body_limit),
    Route("GET", "/models/{name}/versions/{version}", get_version, "one version: lineage, metrics, signature"),
    Route("GET", "/models/{name}/versions/{version}/lineage", version_lineage, "a version's lineage: run, "
          "training set, feature-view versions and the ingest batches (files, content hashes, rows) behind them"),
    Route("POST", "/models/{name}/versions/{version}", describe_version,
          "set a version's description, add tags or remove them (untag)"),
    Route("GET", "/models/{name}/resolve/{ref}", resolve, "a version number, alias or 'latest' to a version"),
    Route("POST", "/models/{name}/aliases/{alias}", set_alias, "point an alias at a version (promotion gate)"),
    Route("POST", "/models/{name}/aliases/{alias}/rollback", rollback, "move an alias back to its previous version"),
    Route("GET", "/models/{name}/audit", audit, "the model's audit log, newest first"),
    Route("POST", "/models/{name}/export", export, "write a Triton model repository for a version"),
]
