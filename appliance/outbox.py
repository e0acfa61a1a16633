"""``Outbox``: deliveries that may be slow, hang or raise, made from a thread of their own behind a bounded queue.

The event bus gives each ``on_event`` sink one, and the alert sinks get one each; a plugin may use it for its
own deliveries. Whoever offers an item never waits. A delivery busy for longer than ``stall_s`` is reported
once while it is still stuck, so a hung endpoint shows up within seconds rather than once the queue behind it
has overflowed; items offered to a full queue are dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from .threads import name_thread

log = logging.getLogger("appliance.outbox")

#: The default for how long one delivery may take before it is reported as stuck.
STALL_S = 30.0

_watched: weakref.WeakSet[Outbox] = weakref.WeakSet()
_watch_lock = threading.Lock()
_watchdog: threading.Thread | None = None


class Outbox:
    """``deliver(item)`` for each item offered, in order, in one thread; problems go to ``report(message,
    traceback)``. ``describe(item)`` names an item in those messages (``"event 42 (job.failed)"``)."""

    def __init__(self, name: str, deliver: Callable[[Any], Any], *, report: Callable[[str, str], None],
                 size: int = 10_000, stall_s: float = STALL_S, describe: Callable[[Any], str] = repr):
        self.name = name
        self.deliver = deliver
        self.report = report
        self.describe = describe
        self.stall_s = float(stall_s)
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.dropped = 0
        self.delivered = 0
        #: (when it began, the item, a token for this delivery) while one is in progress.
        self._busy: tuple[float, Any, object] | None = None
        self._stall_reported: object = None
        self._thread = threading.Thread(target=self._run, name=f"outbox-{name}", daemon=True)

    def start(self) -> Outbox:
        """Start delivering; returns the outbox."""
        self._thread.start()
        _watch(self)
        return self

    def offer(self, item: Any) -> bool:
        """Queue ``item`` without waiting; ``False`` when the queue is full and it was dropped."""
        try:
            self.queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 100, 10_000) or self.dropped % 100_000 == 0:
                self._report(f"not keeping up; {self.dropped} item(s) dropped for it", "")
            return False

    def close(self, timeout: float = 0.0) -> None:
        """Stop after the items already queued (a hung delivery is abandoned: the thread is a daemon thread)."""
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        if timeout and self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def busy_for(self) -> float:
        """Seconds the delivery in progress has taken so far (0 when idle)."""
        busy = self._busy
        return time.monotonic() - busy[0] if busy else 0.0

    def _run(self) -> None:
        name_thread(f"outbox-{self.name}")
        while True:
            item = self.queue.get()
            if item is None:
                return
            token = object()
            self._busy = (time.monotonic(), item, token)
            try:
                self.deliver(item)
                self.delivered += 1
            except Exception as exc:
                self._report(f"{type(exc).__name__}: {exc}", traceback.format_exc())
            finally:
                self._busy = None

    def _check_stall(self) -> None:
        busy = self._busy
        if busy is None or busy[2] is self._stall_reported:
            return
        took = time.monotonic() - busy[0]
        if took >= self.stall_s:
            self._stall_reported = busy[2]
            self._report(f"busy for {took:.1f} s on {self.describe(busy[1])}; {self.queue.qsize()} item(s) "
                         "waiting behind it", "")

    def _report(self, message: str, tb: str) -> None:
        try:
            self.report(message, tb)
        except Exception:
            log.exception("reporting a problem of outbox %s failed", self.name)


def _watch(outbox: Outbox) -> None:
    global _watchdog
    with _watch_lock:
        _watched.add(outbox)
        if _watchdog is None or not _watchdog.is_alive():
            _watchdog = threading.Thread(target=_watch_loop, name="outbox-watchdog", daemon=True)
            _watchdog.start()


def _watch_loop() -> None:
    name_thread("outbox-watch")
    while True:
        boxes = list(_watched)
        tick = min([b.stall_s / 4 for b in boxes] + [1.0])
        time.sleep(max(0.05, tick))
        for box in boxes:
            box._check_stall()
