"""A plugin for the fixture tests: a route, a dashboard panel reading it, and a CLI command calling it."""

import click

from appliance import Route, TuiPanel, hookimpl
from appliance.cli import connect

APPLIANCE_CONTRACT = "1.1"

STATS = [{"queue": "emails", "depth": 3}, {"queue": "hooks", "depth": 0}]


@hookimpl
def register_routes(register):
    register(Route("GET", "/mypanel/stats", lambda request: {"queues": STATS}))


@hookimpl
def register_tui_panels(register):
    register(TuiPanel("mystats", "My queues", "/mypanel/stats", columns=("queue", "depth"), rows_key="queues"))


@hookimpl
def register_commands(register):
    @click.command("mypanel-stats")
    @click.pass_context
    def stats(ctx):
        """Queue depths from the mypanel plugin."""
        for row in connect(ctx).get("/mypanel/stats")["queues"]:
            click.echo(f"{row['queue']} {row['depth']}")

    register(stats)
