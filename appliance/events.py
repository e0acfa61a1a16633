"""The event bus: every state change is persisted, handed to ``on_event`` sinks, and streamed to clients.

Order is the catalog's id order: an emit persists and fans out under one lock, so every subscriber sees ids
ascending. Sinks each get a thread and a bounded queue, so one that is slow, hangs or raises delays nobody.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .contract import Event
from .outbox import STALL_S, Outbox

if TYPE_CHECKING:
    from .catalog import Catalog
    from .host import PluginHost

log = logging.getLogger("appliance.events")

SINK_QUEUE = 10_000


def row_to_event(row: dict) -> Event:
    return Event(id=row["id"], time=row["time"], type=row["type"], subject=row["subject"],
                 data=json.loads(row["data"]), source=row["source"])


class Subscriber:
    """A live stream for one client (the SSE endpoint): an asyncio queue fed from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, types: tuple[str, ...] = ()):
        self.loop = loop
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=50_000)
        self.types = types
        self.overflowed = False

    def offer(self, event: Event | None) -> None:
        if event is not None and self.types and not event.type.startswith(self.types):
            return

        def put():
            try:
                self.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.overflowed = True  # the client is too slow; the stream ends and it resumes from its last id

        try:
            self.loop.call_soon_threadsafe(put)
        except RuntimeError:
            pass  # loop closed


def _sink(bus: EventBus, impl: Any, stall_s: float) -> Outbox:
    """One plugin's ``on_event`` sink: its own thread and bounded queue, reported when it hangs or drops."""
    plugin = impl.plugin_name

    def deliver(event: Event) -> None:
        if event.type == "plugin.failed" and event.data.get("hook") == "on_event" and event.data.get("plugin") == plugin:
            return  # news of this sink's own failure would fail it again, and again: a feedback loop
        bus.host.call_impl(impl, "on_event", {"event": event, "app": bus.app})

    def report(message: str, tb: str) -> None:
        bus.host.record_failure(plugin, "on_event", f"sink {message}", tb)

    return Outbox(f"sink-{plugin}", deliver, report=report, size=SINK_QUEUE, stall_s=stall_s,
                  describe=lambda e: f"event {e.id} ({e.type})")


class EventBus:
    def __init__(self, catalog: Catalog, host: PluginHost):
        self.catalog = catalog
        self.host = host
        self.app: Any = None
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._sinks: dict[str, Outbox] = {}
        self._listeners: list[Callable[[Event], None]] = []
        host.on_unload.append(self.stop_sink)

    def start_sinks(self, app: Any, plugins: Any = None) -> None:
        """Start the ``on_event`` sinks of every plugin (or of the named ``plugins``, loaded later). A sink busy
        on one event for longer than ``[daemon] sink_timeout_s`` is reported against its plugin."""
        self.app = app
        stall_s = float(app.config.daemon.get("sink_timeout_s", STALL_S))
        for impl in self.host.impls("on_event"):
            if (plugins is None or impl.plugin_name in plugins) and impl.plugin_name not in self._sinks:
                self._sinks[impl.plugin_name] = _sink(self, impl, stall_s).start()

    def stop_sink(self, plugin: str) -> None:
        """Stop a plugin's sink (the plugin was disabled or is reloading); a hung one is abandoned."""
        sink = self._sinks.pop(plugin, None)
        if sink is not None:
            sink.close()

    def listen(self, fn: Callable[[Event], None]) -> None:
        """Call ``fn(event)`` synchronously for each event (in-daemon reactions, such as event triggers).

        ``fn`` must be quick and must not emit events itself from the same thread while holding locks.
        """
        self._listeners.append(fn)

    def emit(self, type: str, subject: str = "", data: dict | None = None, source: str = "appliance") -> Event:
        data = data or {}
        now = time.time()
        with self._lock:
            cur = self.catalog.db.execute(
                "insert into events (time, type, subject, data, source) values (?, ?, ?, ?, ?)",
                [now, type, str(subject), json.dumps(data, default=str), source],
            )
            event = Event(id=cur.lastrowid, time=now, type=type, subject=str(subject), data=data, source=source)
            for sub in list(self._subscribers):
                sub.offer(event)
        for sink in list(self._sinks.values()):
            sink.offer(event)
        for fn in self._listeners:
            try:
                fn(event)
            except Exception:
                log.exception("event listener failed on %s", type)
        return event

    def list(self, *, after: int = 0, limit: int = 100, type: str | None = None,
             subject: str | None = None) -> list[Event]:
        sql = "select * from events where id > ?"
        args: list[Any] = [after]
        if type:
            sql += " and type like ?"
            args.append(type.replace("*", "%") if "*" in type else type)
        if subject:
            sql += " and subject = ?"
            args.append(subject)
        sql += " order by id limit ?"
        args.append(limit)
        return [row_to_event(r) for r in self.catalog.db.query(sql, args)]

    def latest(self, limit: int = 100) -> list[Event]:
        rows = self.catalog.db.query("select * from events order by id desc limit ?", [limit])
        return [row_to_event(r) for r in reversed(list(rows))]

    def subscribe(self, sub: Subscriber, after: int | None) -> list[Event]:
        """Register a live subscriber; returns the backlog after ``after`` with no gap or duplicate."""
        with self._lock:
            backlog = self.list(after=after, limit=100_000) if after is not None else []
            self._subscribers.add(sub)
        return backlog

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def end_streams(self) -> None:
        with self._lock:
            for sub in self._subscribers:
                sub.offer(None)
            self._subscribers.clear()

    def close(self, timeout: float = 2.0) -> None:
        """End every stream and stop the sinks (a hung sink is abandoned: its thread is a daemon thread)."""
        self.end_streams()
        sinks = list(self._sinks.values())
        for sink in sinks:
            sink.close()
        deadline = time.monotonic() + timeout
        for sink in sinks:
            sink.close(max(0.001, deadline - time.monotonic()))
