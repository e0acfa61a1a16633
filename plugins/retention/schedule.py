"""Daily retention: a timer thread that queues a ``retention`` job every ``[retention] every_hours``.

The clock starts when the plugin first ran on this home (kept in the catalog), so a daemon restarted more often
than the period still prunes on time, and starting a daemon never queues work by itself.
"""

from __future__ import annotations

from appliance import Migrations
from appliance.periodic import Periodic, first_run_clock

migrations = Migrations("retention")


@migrations()
def m001_schedule(db) -> None:
    db.execute("create table retention_schedule (since real not null)")


def timer(app, settings: dict) -> Periodic:
    """The retention timer; its clock starts the first time the plugin runs on this home."""
    return Periodic(app, "retention", lambda: settings["every_hours"] * 3600, first_run_clock(app, "retention_schedule"))
