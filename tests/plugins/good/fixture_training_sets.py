"""A stand-in ``training_sets`` service (the feature store's role): files in the project's data/ folder.

It lets the training tests show lineage back to feature-view versions through the same service contract the
feature store implements, without depending on that plugin.
"""

import hashlib

from appliance import NotFound, hookimpl

APPLIANCE_CONTRACT = "1.0"


class TrainingSets:
    name = "training_sets"

    def __init__(self):
        self.app = None

    def get(self, id_or_name):
        path = self.app.config.project_dir / "data" / f"{id_or_name}.parquet"
        if not path.is_file():
            raise NotFound(f"no training set {id_or_name!r}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return {"id": f"ts-{id_or_name}", "path": str(path),
                "manifest": {"views": {"transactions": 3, "merchants": 1}, "spine": "labels",
                             "row_count": None, "hash": digest}}


SERVICE = TrainingSets()


@hookimpl
def register_services(register):
    register(SERVICE)


@hookimpl
def startup(app):
    SERVICE.app = app
