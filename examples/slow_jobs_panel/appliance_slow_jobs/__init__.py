"""appliance-slow-jobs: the slowest finished jobs as a control API route, a dashboard panel and a command.

Written against the public contract only: ``register_routes`` (the handler reads the catalog's ``jobs``
table), ``register_tui_panels`` (the panel is data: the dashboard reads the route), ``register_commands``
(the command asks the daemon through ``appliance.cli.connect``), and ``configure`` for ``[slow_jobs]``.
"""

from __future__ import annotations

import click

from appliance import Option, Options, Route, TuiPanel, hookimpl
from appliance.cli import connect
from appliance.cli.output import emit_json, json_option, table

APPLIANCE_CONTRACT = "1.1"

OPTIONS = Options(Option("limit", int, 10, "rows the dashboard panel shows"))
SETTINGS = dict(OPTIONS)


def slowest(request):
    """``GET /slow-jobs?limit=N&kind=K``: finished jobs, slowest first."""
    limit = request.int_query("limit", SETTINGS["limit"], minimum=1, maximum=1000)
    kind = request.query.get("kind") or None
    sql = ("select id, kind, state, finished - started as seconds, finished from jobs "
           "where started is not null and finished is not null")
    params: list = []
    if kind:
        sql += " and kind = ?"
        params.append(kind)
    sql += " order by seconds desc, id limit ?"
    rows = request.app.catalog.db.execute(sql, [*params, limit]).fetchall()
    return {"jobs": [{"id": i, "kind": k, "state": s, "seconds": round(sec, 3), "finished": f}
                     for i, k, s, sec, f in rows]}


@click.command("slow-jobs")
@click.option("--limit", default=10, show_default=True, help="How many jobs to show.")
@click.option("--kind", help="Only jobs of this kind.")
@json_option
@click.pass_context
def slow_jobs_command(ctx, limit, kind, as_json):
    """The slowest finished jobs, slowest first."""
    answer = connect(ctx).get("/slow-jobs", limit=limit, kind=kind)
    if as_json:
        return emit_json(answer)
    table([(j["id"], j["kind"], j["state"], f"{j['seconds']:.1f}") for j in answer["jobs"]],
          ["ID", "KIND", "STATE", "SECONDS"])


@hookimpl
def register_routes(register):
    register(Route("GET", "/slow-jobs", slowest, "the slowest finished jobs (?limit=, ?kind=)"))


@hookimpl
def register_tui_panels(register):
    register(TuiPanel("slow_jobs", "Slowest jobs", "/slow-jobs", columns=("id", "kind", "state", "seconds"),
                      rows_key="jobs", refresh_s=10, description="finished jobs, slowest first"))


@hookimpl
def register_commands(register):
    register(slow_jobs_command)


@hookimpl
def configure(app, config):
    settings = config.check_options(OPTIONS, config.section("slow_jobs"), "slow_jobs")
    if settings["limit"] < 1:
        raise config.error(f"expected at least 1, got {settings['limit']}", "slow_jobs", "limit")
    SETTINGS.update(settings)
