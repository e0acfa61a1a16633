"""Scheduled backups: a timer thread that queues a ``backup`` job every ``[backup] every_hours``.

The clock starts when the plugin first ran on this home (kept in the catalog), so a daemon restarted more often
than the period still backs up on time, and a fresh home does not back up an empty box the moment it starts.
"""

from __future__ import annotations

from appliance import Migrations
from appliance.periodic import Periodic, first_run_clock

migrations = Migrations("backup")


@migrations()
def m001_schedule(db) -> None:
    db.execute("create table backup_schedule (since real not null)")


def timer(app, settings: dict) -> Periodic:
    """The backup timer; its clock starts the first time the plugin runs on this home."""
    return Periodic(app, "backup", lambda: settings["every_hours"] * 3600, first_run_clock(app, "backup_schedule"))
