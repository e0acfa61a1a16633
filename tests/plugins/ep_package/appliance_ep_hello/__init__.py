"""A third-party plugin installed as a package: found through the `appliance` entry-point group."""

from appliance import Route, hookimpl

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def register_routes(register):
    register(Route("GET", "/ep-hello", lambda request: {"from": "entry point"}))
