"""A plugin whose on_event hook always raises."""

from appliance import hookimpl

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def on_event(event, app):
    raise ValueError(f"sink exploded on {event.type}")
