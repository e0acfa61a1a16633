"""A drop-in fixture plugin: exposes the feature store's in-daemon services over routes, as a peer plugin
(serving, training, monitoring) would call them in-process."""

from appliance import Route, hookimpl

APPLIANCE_CONTRACT = "1.0"


def _service(req, name):
    return req.app.registry("services").get(name)


def online(req):
    body = req.json_object()
    svc = _service(req, "online_features")
    return {"one": svc.get(body["entities"][0], body["features"]),
            "many": svc.get_many(body["entities"], body["features"]), "freshness": svc.freshness()}


def training_set(req):
    got = _service(req, "training_sets").get(req.path_params["id"])
    import pyarrow.parquet as pq

    return {**got, "table": pq.read_table(got["path"]).to_pylist()}


def statistics(req):
    return _service(req, "feature_statistics").get(req.path_params["view"])


@hookimpl
def register_routes(register):
    register(Route("POST", "/probe/online", online))
    register(Route("GET", "/probe/training-sets/{id}", training_set))
    register(Route("GET", "/probe/stats/{view}", statistics))
