"""A plugin whose configure hook has a bug (a KeyError, not a refusal of the configuration)."""

from appliance import Route, hookimpl

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def configure(app, config):
    return config.section("raising_configure")["missing"]


@hookimpl
def register_routes(register):
    register(Route("GET", "/raising-configure", lambda request: {"reached": True}))
