"""``appliance disk``: where the home's space goes."""

from __future__ import annotations

import click

from appliance.cli import connect
from appliance.cli.output import emit_json, json_option, table


@click.command()
@json_option
@click.pass_context
def disk(ctx, as_json):
    """Disk use per area of the home (catalog, store, artifacts, logs, backups) and rows per store table."""
    usage = connect(ctx).get("/disk")
    if as_json:
        return emit_json(usage)
    click.echo(f"home {usage['home']}: {_size(usage['total'])}")
    table([(area, _size(n)) for area, n in usage["areas"].items()], ["AREA", "SIZE"])
    if usage["tables"]:
        click.echo("")
        table([(t["table"], t["rows"], t["columns"]) for t in usage["tables"]], ["STORE TABLE", "ROWS", "COLUMNS"])


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
