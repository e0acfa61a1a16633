"""Is the catalog or the store damaged? Looked at when the daemon starts, and every day after.

At start, the catalog gets SQLite's ``quick_check`` before anything else reads it (it costs a read of the file:
0.18 s for a million events from the page cache) and the store is opened, which checks its headers and
catalog. Reading every block of the store costs a full read of it, so that runs here, in the background at
background priority, right after the daemon is ready and then daily, with the catalog's check again. Damage
found goes to ``app.health``: ``/api/v1/health`` and ``appliance status`` say "damaged" and how to restore a
backup, and requests that meet the damage get a 503 that says the same.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .threads import become_background

log = logging.getLogger("appliance.integrity")

#: The checks run again this long after the last ones.
EVERY_S = 24 * 3600.0


class IntegrityWatch:
    """The background checks: the store's blocks now, then the store and the catalog every ``every_s``."""

    def __init__(self, app: Any, every_s: float = EVERY_S):
        self.app, self.every_s = app, every_s
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="integrity-check", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the checks (one in progress is interrupted): the daemon calls it before closing the stores."""
        self._halt.set()
        self.app.store.stop_verifying()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        become_background("integrity-check")
        first = True
        while not self._halt.is_set():
            self.check(catalog=not first)  # the daemon's start checked the catalog already
            first = False
            self._halt.wait(self.every_s)

    def check(self, *, catalog: bool = True) -> None:
        started = time.perf_counter()
        try:
            found = [self.app.catalog.check()] if catalog else []
            found.append(self.app.store.verify())
        except Exception:
            if not self._halt.is_set():
                log.exception("the integrity check failed; it runs again in %g h", self.every_s / 3600)
            return
        for damage in filter(None, found):
            log.error("%s", damage)
        log.info("integrity check done in %.2f s: %s", time.perf_counter() - started,
                 "damage found" if any(found) else "sound")
