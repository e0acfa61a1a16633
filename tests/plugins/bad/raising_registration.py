"""Registers one route, then raises: none of its registrations may survive."""

from appliance import Route, hookimpl

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def register_routes(register):
    register(Route("GET", "/half-registered", lambda request: {}))
    raise RuntimeError("registration went wrong")
