"""Daily retention: a timer thread that queues a ``retention`` job every ``[retention] every_hours``.

The clock starts when the plugin first ran on this home (kept in the catalog), so a daemon restarted more often
than the period still prunes on time, and starting a daemon never queues work by itself.
"""

from __future__ import annotations

import logging
import threading
import time

from appliance import Migrations

log = logging.getLogger("appliance.retention")

migrations = Migrations("retention")

#: The longest the timer sleeps between looks, so a changed period takes effect soon.
MAX_SLEEP_S = 60.0


@migrations()
def m001_schedule(db) -> None:
    db.execute("create table retention_schedule (since real not null)")


class Timer:
    def __init__(self, app, settings: dict):
        self.app, self.settings = app, settings
        self._thread = threading.Thread(target=self._run, name="retention-timer", daemon=True)
        self._last_submit = 0.0

    def start(self) -> None:
        self.app.catalog.db.execute("insert into retention_schedule (since) select ? "
                                    "where not exists (select 1 from retention_schedule)", [time.time()])
        self._thread.start()

    def next_due(self) -> float | None:
        every = self.settings["every_hours"] * 3600
        if every <= 0:
            return None
        done = self.app.jobs.list(kind="retention", state="succeeded", limit=1)
        since = self.app.catalog.db.execute("select since from retention_schedule").fetchone()[0]
        last = done[0]["finished"] if done else since
        # A failed run is tried again after at most an hour, not every minute.
        return max(last + every, self._last_submit + min(every, 3600))

    def _run(self) -> None:
        while True:
            try:
                due = self.next_due()
                busy = any(self.app.jobs.list(kind="retention", state=s, limit=1) for s in ("queued", "running"))
                if due is not None and time.time() >= due and not busy:
                    self._last_submit = time.time()
                    self.app.jobs.submit("retention", {}, origin="schedule")
                wait = MAX_SLEEP_S if due is None else min(MAX_SLEEP_S, max(0.2, due - time.time()))
            except Exception:
                log.exception("the retention schedule failed; trying again in a minute")
                wait = MAX_SLEEP_S
            if self.app.stopping.wait(wait):
                return

    def stop(self) -> None:
        self._thread.join(2)
