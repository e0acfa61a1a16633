"""The control port out of descriptors: one accept error per retry, and a log that says so once a minute.

When ``accept()`` fails for want of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM), asyncio (3.11) reports it,
pauses the port and retries a second later, but carries on with its accept loop of ``backlog`` tries: 2,048
tracebacks a second, which rotated every earlier line out of the daemon's log in seconds. ``guarded`` makes
the tries after the first in one go say "nothing to accept", which ends that loop; ``AcceptLog`` logs the first
failure and then a count once a minute, and hands everything else to asyncio's own handler.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable

log = logging.getLogger("appliance.api")

OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Seconds between two log lines about the same port's failing accepts.
REPORT_EVERY_S = 60.0


class _OneFailurePerTry(socket.socket):
    """A listening socket whose accept fails at most once in a row for want of resources: the next call says
    there is nothing to accept, and asyncio's accept loop stops there until its retry."""

    _failed = False

    def accept(self):
        if self._failed:
            self._failed = False
            raise BlockingIOError(errno.EAGAIN, "paused after an accept failure")
        try:
            return super().accept()
        except OSError as exc:
            self._failed = exc.errno in OUT_OF_RESOURCES
            raise


def guarded(sock: socket.socket) -> socket.socket:
    """``sock`` (a listening socket) as one whose resource failures end asyncio's accept loop."""
    return _OneFailurePerTry(sock.family, sock.type, sock.proto, fileno=sock.detach())


class AcceptLog:
    """An asyncio exception handler: accept failures for want of resources are logged once, then counted and
    reported every ``REPORT_EVERY_S``; anything else goes to the loop's default handler."""

    def __init__(self, port_name: str, clock: Callable[[], float] = time.monotonic):
        self.port_name = port_name
        self.clock = clock
        self.last_report: float | None = None
        self.unreported = 0

    def __call__(self, loop, context: dict) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES
                and context.get("message", "").startswith("socket.accept()")):
            loop.default_exception_handler(context)
            return
        now = self.clock()
        self.unreported += 1
        if self.last_report is None:
            log.warning("%s cannot accept connections: %s; retrying every second (further failures are counted "
                        "and logged once a minute)", self.port_name, exc.strerror)
        elif now - self.last_report >= REPORT_EVERY_S:
            log.warning("%s: %d accept failure(s) in the last %.0f s (%s)", self.port_name, self.unreported,
                        now - self.last_report, exc.strerror)
        else:
            return
        self.last_report, self.unreported = now, 0
