"""A plugin whose startup hook raises: it must end up failed, with its routes, jobs and sink gone."""

from appliance import JobKind, Route, hookimpl

APPLIANCE_CONTRACT = "1.0"

SEEN = []


@hookimpl
def startup(app):
    raise RuntimeError("could not reach the license server")


@hookimpl
def register_routes(register):
    register(Route("GET", "/raising-startup", lambda request: {"seen": len(SEEN)}))


@hookimpl
def register_job_kinds(register):
    register(JobKind("raising_startup_job", lambda job: {}))


@hookimpl
def on_event(event, app):
    SEEN.append(event.id)


@hookimpl
def shutdown(app):
    raise AssertionError("shutdown of a plugin whose startup failed must not be called")
