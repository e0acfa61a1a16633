"""Logging that a flood cannot turn against the log files.

An error that a client can cause (a refused connection, a request that trips a bug, an accept that fails for
want of descriptors) may come thousands of times a second; logged each time, it rotates the files and takes the
evidence of what started it with them. ``LogThrottle`` logs each kind of message at most once per interval and
says, with the next one it logs, how many it held back meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time

#: Distinct messages remembered at once: ever-new keys (each with a client's address, say) must not grow it.
MAX_KEYS = 1024


class LogThrottle:
    """A logger's messages, each kind at most once every ``interval_s`` seconds.

    A message's kind is its ``key``, by default its unformatted template (``msg`` before ``args``), so
    ``log.error("refused %s", addr)`` is one kind whatever the address. Safe to call from any thread.
    """

    def __init__(self, logger: logging.Logger | str, interval_s: float = 60.0):
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.interval_s = interval_s
        self._kinds: dict[str, list] = {}  # key -> [when last logged, how many held back since]
        self._lock = threading.Lock()

    def log(self, level: int, msg: str, *args, key: str | None = None, exc_info=None) -> bool:
        """Log ``msg % args`` unless its kind was logged less than ``interval_s`` ago; True when it was logged."""
        now, key = time.monotonic(), key or msg
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None and now - kind[0] < self.interval_s:
                kind[1] += 1
                return False
            held = kind[1] if kind is not None else 0
            if kind is None and len(self._kinds) >= MAX_KEYS:
                self._kinds.clear()
            self._kinds[key] = [now, 0]
        if held:
            self.logger.log(level, msg + " (and %d more like it since the last one logged)", *args, held,
                            exc_info=exc_info)
        else:
            self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def info(self, msg: str, *args, **kw) -> bool:
        return self.log(logging.INFO, msg, *args, **kw)

    def warning(self, msg: str, *args, **kw) -> bool:
        return self.log(logging.WARNING, msg, *args, **kw)

    def error(self, msg: str, *args, **kw) -> bool:
        return self.log(logging.ERROR, msg, *args, **kw)

    def exception(self, msg: str, *args, **kw) -> bool:
        """``error`` with the current exception's traceback (only on the lines that are logged)."""
        return self.log(logging.ERROR, msg, *args, exc_info=True, **kw)
