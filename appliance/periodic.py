"""A job kind run on a fixed period, for plugins whose work is on by default (backups, retention).

The clock starts at ``since()`` (when the plugin first ran on this home: ``first_run_clock``), so a daemon
restarted more often than the period still runs the job on time and a fresh home does not run it the moment it
starts. The period is read on every look, so ``appliance apply`` changes it without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("appliance.periodic")

#: The longest the timer sleeps between looks, so a changed period takes effect soon.
MAX_SLEEP_S = 60.0


class Periodic:
    """Queue a ``kind`` job every ``every_s()`` seconds (0 or less: off), one at a time."""

    def __init__(self, app: Any, kind: str, every_s: Callable[[], float], since: Callable[[], float]):
        self.app, self.kind, self.every_s, self.since = app, kind, every_s, since
        self._thread = threading.Thread(target=self._run, name=f"{kind}-timer", daemon=True)
        self._last_submit = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.join(2)

    def next_due(self) -> float | None:
        every = self.every_s()
        if every <= 0:
            return None
        done = self.app.jobs.list(kind=self.kind, state="succeeded", limit=1)
        last = done[0]["finished"] if done else self.since()
        # A failed attempt is tried again after at most an hour, not every minute.
        return max(last + every, self._last_submit + min(every, 3600))

    def _busy(self) -> bool:
        return any(self.app.jobs.list(kind=self.kind, state=s, limit=1) for s in ("queued", "running"))

    def _run(self) -> None:
        while True:
            try:
                due = self.next_due()
                if due is not None and time.time() >= due and not self._busy():
                    self._last_submit = time.time()
                    self.app.jobs.submit(self.kind, {}, origin="schedule")
                wait = MAX_SLEEP_S if due is None else min(MAX_SLEEP_S, max(0.2, due - time.time()))
            except Exception:
                log.exception("the %s schedule failed; trying again in a minute", self.kind)
                wait = MAX_SLEEP_S
            if self.app.stopping.wait(wait):
                return


def first_run_clock(app: Any, table: str) -> Callable[[], float]:
    """A ``since`` for ``Periodic``: when the plugin first ran on this home, kept in its one-row ``table``
    (``since REAL``, made by the plugin's own migration). Recorded now if this is the first run."""
    app.catalog.db.execute(f"insert into {table} (since) select ? where not exists (select 1 from {table})",
                           [time.time()])
    # Read through app.catalog.db on every look: the timer's own thread asks, not this one.
    return lambda: app.catalog.db.execute(f"select since from {table}").fetchone()[0]
