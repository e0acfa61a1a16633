"""Test helper plugin: registers an ONNX file the test built as a new version in the real model registry.

Serving tests need exact, tiny models (and broken ones) without training one each time; this goes through
the same registry service the training plugin uses.
"""

from pathlib import Path

from appliance import Route, hookimpl

APPLIANCE_CONTRACT = "1.0"


def _import(request):
    body = request.json_object()
    app = request.app
    digest = app.artifacts.put_file(Path(body["path"]))
    registry = app.registry("services").get("model_registry")
    return registry.register_version(body["name"], run_id=None, onnx_sha256=digest,
                                     signature=body.get("signature", {}), metrics=body.get("metrics", {}),
                                     holdout_sha256=None, lineage={"imported_from": body["path"]})


@hookimpl
def register_routes(register):
    register(Route("POST", "/fixture/import-model", _import))
