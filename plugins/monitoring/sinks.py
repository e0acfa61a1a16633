"""Alert sinks: where alerts go besides the dashboard. ``[alert_sinks.NAME]`` tables pick a registered kind
(``register_alert_sinks``) and give its options; each configured sink gets its own ``appliance.Outbox``, so a
slow or hung endpoint delays neither the daemon nor another sink, and one stuck past ``[daemon] sink_timeout_s``
is reported against the plugin that registered its kind.

    [alert_sinks.oncall]
    kind = "jsonl"                 # a registered alert sink kind (GET /api/v1/alert-sinks lists them)
    events = ["raised"]            # which of raised, resolved, acked to send (default: all three)
    min_severity = "error"         # leave out quieter alerts (default: info, so all of them)
    path = "alerts.jsonl"          # ... and the kind's own options
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from appliance import Option, Options, Outbox

from .context import SEVERITIES

EVENTS = ("raised", "resolved", "acked")
#: The keys every ``[alert_sinks.NAME]`` table takes, whatever its kind.
COMMON = Options(
    Option("kind", str, required=True, doc="the alert sink kind"),
    Option("events", list[str], list(EVENTS), "which alert changes to send: raised, resolved, acked"),
    Option("min_severity", str, "info", "the least severe alert to send", choices=SEVERITIES),
)


@dataclass(frozen=True)
class SinkSpec:
    name: str
    kind: str
    events: tuple[str, ...]
    min_severity: str
    options: dict

    def wants(self, alert: dict) -> bool:
        severity = alert.get("severity") if alert.get("severity") in SEVERITIES else "warning"
        return (alert["event"] in self.events
                and SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity))

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "events": list(self.events),
                "min_severity": self.min_severity, "options": self.options}


def read_specs(config, kinds) -> dict[str, SinkSpec]:
    """Check every ``[alert_sinks.NAME]`` table against its kind; the first mistake is a located ConfigError."""
    section = config.section("alert_sinks")
    if not isinstance(section, dict):
        raise config.error("expected tables [alert_sinks.NAME]", "alert_sinks")
    specs = {}
    for name, table in section.items():
        where = ("alert_sinks", name)
        if not isinstance(table, dict):
            raise config.error(f"expected a table [alert_sinks.{name}], got {type(table).__name__}", *where)
        common = config.check_options(COMMON, {k: v for k, v in table.items() if k in COMMON}, *where)
        kind = kinds.get(common["kind"])
        if kind is None:
            known = ", ".join(sorted(kinds.names())) or "none (no plugin registers one)"
            raise config.error(f"no alert sink kind {common['kind']!r}; registered: {known}", *where, "kind")
        for event in common["events"]:
            if event not in EVENTS:
                raise config.error(f"expected some of {', '.join(EVENTS)}, got {event!r}", *where, "events")
        options = config.check_options(Options.of(getattr(kind, "options", None)), table, *where,
                                       also=tuple(COMMON))
        specs[name] = SinkSpec(name, kind.name, tuple(common["events"]), common["min_severity"], options)
    return specs


class AlertSinks:
    """The configured sinks in the daemon, each delivering through its own outbox."""

    def __init__(self) -> None:
        self.app: Any = None
        self.specs: dict[str, SinkSpec] = {}
        self._boxes: dict[str, Outbox] = {}
        self._lock = threading.Lock()

    def use(self, app, specs: dict[str, SinkSpec]) -> None:
        """Switch to ``specs`` (from ``read_specs``): every sink starts afresh, the old ones finish their queue."""
        self.app = app
        with self._lock:
            old, self._boxes = self._boxes, {}
            self.specs = specs
            for spec in specs.values():
                self._boxes[spec.name] = self._outbox(spec)
        for box in old.values():
            box.close()

    def _outbox(self, spec: SinkSpec) -> Outbox:
        kinds = self.app.registry("alert_sinks")
        kind, owner = kinds.get(spec.kind), kinds.owner(spec.kind) or "?"
        stall_s = float(self.app.config.daemon.get("sink_timeout_s", 30.0))

        def report(message: str, tb: str) -> None:
            self.app.host.record_failure(owner, f"alert sink {spec.name}", message, tb)

        return Outbox(f"alerts-{spec.name}", lambda alert: kind.send(alert, spec.options), report=report,
                      size=1000, stall_s=stall_s,
                      describe=lambda a: f"alert {a.get('id')} ({a['event']}, {a.get('rule')})").start()

    def take_event(self, event) -> None:
        """Hand an alert change to every sink that wants it (never waits: each sink has its own queue)."""
        kind = event.type.removeprefix("alert.")
        if not event.type.startswith("alert.") or kind not in EVENTS:
            return
        data = dict(event.data or {})
        alert = {"id": data.pop("alert_id", None), "event": kind, "subject": event.subject, "time": event.time,
                 **data}
        with self._lock:
            targets = [(self._boxes[n], s) for n, s in self.specs.items() if n in self._boxes]
        for box, spec in targets:
            if spec.wants(alert):
                box.offer(alert)

    def list(self) -> list[dict]:
        with self._lock:
            return [{**s.to_dict(), "delivered": self._boxes[n].delivered, "dropped": self._boxes[n].dropped}
                    for n, s in self.specs.items() if n in self._boxes]

    def shutdown(self) -> None:
        with self._lock:
            boxes, self._boxes = list(self._boxes.values()), {}
        for box in boxes:
            box.close(1.0)
