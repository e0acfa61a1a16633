"""Scheduled backups: a timer thread that queues a ``backup`` job every ``[backup] every_hours``.

The clock starts when the plugin first ran on this home (kept in the catalog), so a daemon restarted more often
than the period still backs up on time, and a fresh home does not back up an empty box the moment it starts.
"""

from __future__ import annotations

import logging
import threading
import time

from appliance import Migrations

log = logging.getLogger("appliance.backup")

migrations = Migrations("backup")

#: The longest the timer sleeps between looks, so a changed period takes effect soon.
MAX_SLEEP_S = 60.0


@migrations()
def m001_schedule(db) -> None:
    db.execute("create table backup_schedule (since real not null)")


class Timer:
    def __init__(self, app, kind: str, settings: dict):
        self.app, self.kind, self.settings = app, kind, settings
        self._thread = threading.Thread(target=self._run, name=f"{kind}-timer", daemon=True)
        self._last_submit = 0.0

    def start(self) -> None:
        db = self.app.catalog.db
        db.execute("insert into backup_schedule (since) select ? where not exists (select 1 from backup_schedule)",
                   [time.time()])
        self._thread.start()

    def next_due(self) -> float | None:
        every = self.settings["every_hours"] * 3600
        if every <= 0:
            return None
        done = self.app.jobs.list(kind=self.kind, state="succeeded", limit=1)
        since = self.app.catalog.db.execute("select since from backup_schedule").fetchone()[0]
        last = done[0]["finished"] if done else since
        # A failed attempt is retried after at most an hour, not hammered every minute.
        return max(last + every, self._last_submit + min(every, 3600))

    def _run(self) -> None:
        while True:
            try:
                due = self.next_due()
                if due is not None and time.time() >= due and not self._pending():
                    self._last_submit = time.time()
                    self.app.jobs.submit(self.kind, {}, origin="schedule")
                wait = MAX_SLEEP_S if due is None else min(MAX_SLEEP_S, max(0.2, due - time.time()))
            except Exception:
                log.exception("the %s schedule failed; trying again in a minute", self.kind)
                wait = MAX_SLEEP_S
            if self.app.stopping.wait(wait):
                return

    def _pending(self) -> bool:
        return any(self.app.jobs.list(kind=self.kind, state=s, limit=1) for s in ("queued", "running"))

    def stop(self) -> None:
        self._thread.join(2)
