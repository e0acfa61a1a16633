"""A plugin that forgot @hookimpl on two of its hooks: they are never called, so the author gets a warning."""

from appliance import Route, hookimpl

APPLIANCE_CONTRACT = "1.0"


def startup(app):
    raise AssertionError("never called: not marked")


def register_routes(register):
    register(Route("GET", "/unmarked", lambda request: {}))


@hookimpl
def register_job_kinds(register):
    pass
