"""What a monitor kind's ``run`` receives, and what it hands back: values for metrics, checks for alerts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "error", "critical")


@dataclass
class Check:
    """One alert rule's verdict in one run: ``firing`` raises (or keeps) the alert, otherwise it resolves."""

    rule: str
    subject: str
    firing: bool
    severity: str
    message: str
    value: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict:
        return {"rule": self.rule, "subject": self.subject, "firing": self.firing, "severity": self.severity,
                "message": self.message, "value": _num(self.value), "threshold": _num(self.threshold)}


@dataclass
class MonitorContext:
    """Handed to a monitor kind's ``run(ctx)``.

    ``app`` is the daemon's handle, ``monitor`` the monitor's name, ``options`` its table from
    ``appliance.toml`` merged over the kind's defaults, ``job`` the job handle (progress, logs, cancel).
    A kind reports numbers with ``value(metric, number, **labels)`` (they become Prometheus gauges named
    ``appliance_monitor_<metric>``), alert conditions with ``check(...)``, and anything else with ``detail``.
    """

    app: Any
    monitor: str
    kind: str
    options: dict
    job: Any = None
    severity: str = "warning"
    values: list[tuple[str, dict, float]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    status: str = "ok"

    def value(self, metric: str, number: float | None, **labels: Any) -> None:
        if number is not None and not (isinstance(number, float) and math.isnan(number)):
            self.values.append((metric, {k: str(v) for k, v in labels.items()}, float(number)))

    def check(self, name: str, firing: bool, message: str, *, subject: str | None = None,
              severity: str | None = None, value: float | None = None, threshold: float | None = None) -> None:
        """An alert condition: rule ``<monitor>.<name>`` on ``subject`` (default ``monitor:<monitor>``)."""
        self.checks.append(Check(f"{self.monitor}.{name}", subject or f"monitor:{self.monitor}", bool(firing),
                                 severity or self.severity, message, value, threshold))

    def no_data(self, why: str) -> None:
        """Too little to judge: no check runs, so open alerts stay as they are."""
        self.status = "no data"
        self.details["no_data"] = why

    def progress(self, fraction: float, message: str = "") -> None:
        if self.job is not None:
            self.job.progress(fraction, message)


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x
