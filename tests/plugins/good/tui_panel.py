"""Test helper plugin: contributes two dashboard panels (a table and a key-value one) reading its own routes."""

from appliance import Route, TuiPanel, hookimpl

APPLIANCE_CONTRACT = "1.0"

QUEUES = [{"queue": "emails", "depth": 7, "oldest_s": 12.5}, {"queue": "webhooks", "depth": 0, "oldest_s": 0.0}]


@hookimpl
def register_routes(register):
    register(Route("GET", "/fixture/queues", lambda req: {"queues": QUEUES}))
    register(Route("GET", "/fixture/license", lambda req: {"holder": "ACME", "seats": 5, "expires": "2030-01-01"}))


@hookimpl
def register_tui_panels(register):
    register(TuiPanel("queues", "Queue depth", "/fixture/queues", columns=("queue", "depth"), rows_key="queues",
                      refresh_s=1.0, description="outgoing queues of the fixture plugin"))
    register(TuiPanel("license", "License", "/fixture/license", kind="keyvalue"))
