"""Alerts: one open alert per rule and subject, raised and resolved by monitor checks (or by other plugins'
``alert.raised`` events), acknowledged by people, and announced as events for ``on_event`` sinks.

An alert is *active* while open or acknowledged; a firing check on an active alert only counts and refreshes
it (no new event), a clear check resolves it. A unique index keeps the one-active-alert rule in the catalog
itself, so two threads cannot both raise it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from typing import Any

from appliance import BadRequest, Conflict, Migrations, NotFound

log = logging.getLogger("appliance.monitoring.alerts")

SOURCE = "monitoring"  # the events this plugin emits; its own alert.raised events are not taken in again
STATES = ("open", "acked", "resolved")

#: Alerts other plugins raise by event, and the event that says the condition has cleared.
CLEARED_BY: dict[str, tuple[str, dict]] = {
    "deployment_load_failed": ("deployment.loaded", {}),
    "pipeline_failed": ("pipeline.run_finished", {"status": "succeeded"}),
}

migrations = Migrations("monitoring")


@migrations()
def m001_monitoring(db) -> None:
    db.execute("""create table monitoring_alerts (
        id integer primary key, rule text not null, subject text not null, severity text not null,
        state text not null, message text not null, monitor text, origin text not null,
        value real, threshold real, count integer not null default 1,
        first_seen real not null, last_seen real not null, acked_at real, acked_by text, ack_note text,
        resolved_at real, event_id integer, action text)""")
    db.execute("create unique index monitoring_alerts_active on monitoring_alerts (rule, subject) "
               "where state != 'resolved'")
    db.execute("create index monitoring_alerts_state on monitoring_alerts (state, id)")
    db.execute("""create table monitor_runs (
        id integer primary key, monitor text not null, kind text not null, job_id integer, time real not null,
        duration_s real, status text not null, error text, "values" text not null, checks text not null,
        details text not null)""")
    db.execute("create index monitor_runs_monitor on monitor_runs (monitor, id)")


def alert_row(row: dict) -> dict:
    out = dict(row)
    out["action"] = json.loads(row["action"]) if row.get("action") else None
    return out


class Alerts:
    def __init__(self) -> None:
        self.app: Any = None
        self._lock = threading.Lock()

    @property
    def db(self):
        return self.app.catalog.db

    # ------------------------------------------------------------------------------------------- reading

    def get(self, alert_id: int) -> dict:
        rows = list(self.db.query("select * from monitoring_alerts where id = ?", [int(alert_id)]))
        if not rows:
            raise NotFound(f"no alert {alert_id}")
        return alert_row(rows[0])

    def list(self, state: str = "active", limit: int = 100, rule: str | None = None) -> list[dict]:
        if state not in (*STATES, "active", "all"):
            raise BadRequest(f"unknown alert state {state!r}; expected one of active, all, {', '.join(STATES)}")
        sql, args = "select * from monitoring_alerts where 1=1", []
        if state == "active":
            sql += " and state != 'resolved'"
        elif state != "all":
            sql += " and state = ?"
            args.append(state)
        if rule:
            sql += " and rule = ?"
            args.append(rule)
        sql += " order by id desc limit ?"
        args.append(int(limit))
        return [alert_row(r) for r in self.db.query(sql, args)]

    def active(self, rule: str, subject: str) -> dict | None:
        rows = list(self.db.query("select * from monitoring_alerts where rule = ? and subject = ? "
                                  "and state != 'resolved'", [rule, subject]))
        return alert_row(rows[0]) if rows else None

    def counts(self) -> dict[tuple[str, str], int]:
        return {(r["state"], r["severity"]): r["n"] for r in self.db.query(
            "select state, severity, count(*) n from monitoring_alerts where state != 'resolved' "
            "group by state, severity")}

    # ------------------------------------------------------------------------------------------- changing

    def apply(self, check, monitor: str, pipeline: str | None = None) -> str:
        """Take one check's verdict: ``raised``, ``refreshed``, ``resolved`` or ``clear``."""
        with self._lock:
            current = self.active(check.rule, check.subject)
            now = time.time()
            if check.firing and current:
                self.db.execute("update monitoring_alerts set last_seen = ?, count = count + 1, message = ?, "
                                "value = ?, severity = ? where id = ?",
                                [now, check.message, check.value, check.severity, current["id"]])
                changed = current["message"] != check.message or current["severity"] != check.severity
                if not changed:
                    return "refreshed"
                alert, event = self.get(current["id"]), "alert.updated"
            elif check.firing:
                alert, event = self._insert(check.rule, check.subject, check.severity, check.message, monitor,
                                            "monitor", check.value, check.threshold, None), "alert.raised"
            elif current:
                self._resolve(current, f"condition cleared: {check.message}")
                return "resolved"
            else:
                return "clear"
        # An open alert reads as its latest run says ("6 of 7 columns", not the first run's count), and whoever
        # shows it (the dashboard lives on events) hears that it changed.
        self._emit(event, alert)
        if event == "alert.updated":
            return "refreshed"
        if pipeline:
            self._run_pipeline(alert, pipeline)
        return "raised"

    def _insert(self, rule, subject, severity, message, monitor, origin, value, threshold, event_id) -> dict:
        now = time.time()
        cur = self.db.execute(
            "insert into monitoring_alerts (rule, subject, severity, state, message, monitor, origin, value, "
            "threshold, first_seen, last_seen, event_id) values (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?)",
            [rule, subject, severity, message, monitor, origin, value, threshold, now, now, event_id])
        return self.get(cur.lastrowid)

    def _resolve(self, alert: dict, why: str) -> None:
        self.db.execute("update monitoring_alerts set state = 'resolved', resolved_at = ? where id = ?",
                        [time.time(), alert["id"]])
        self._emit("alert.resolved", {**self.get(alert["id"]), "reason": why})

    def ack(self, alert_id: int, by: str = "", note: str = "") -> dict:
        with self._lock:
            alert = self.get(alert_id)
            if alert["state"] == "resolved":
                raise Conflict(f"alert {alert_id} is already resolved; there is nothing to acknowledge")
            if alert["state"] == "acked":
                return alert
            self.db.execute("update monitoring_alerts set state = 'acked', acked_at = ?, acked_by = ?, ack_note = ? "
                            "where id = ?", [time.time(), by, note, alert["id"]])
            alert = self.get(alert_id)
        self._emit("alert.acked", alert)
        return alert

    def _emit(self, type: str, alert: dict) -> None:
        data = {k: alert.get(k) for k in ("rule", "severity", "message", "monitor", "value", "threshold", "count",
                                          "acked_by", "ack_note", "reason", "origin")}
        self.app.events.emit(type, subject=alert["subject"], data={"alert_id": alert["id"], **data}, source=SOURCE)

    # ------------------------------------------------------------------------------------------- actions

    def _run_pipeline(self, alert: dict, pipeline: str) -> None:
        """Start the rule's pipeline through the pipelines plugin's own control API route, if it is loaded:
        no import ties the two plugins together."""
        from appliance import ApiRequest

        route = self.app.registry("routes").get("POST /pipelines/{name}/run")
        try:
            if route is None:
                raise NotFound("the pipelines plugin is not loaded")
            reply = route.handler(ApiRequest(self.app, "POST", {"name": pipeline}, {}, {}, b""))
            run = getattr(reply, "data", reply)
            action = {"pipeline": pipeline, "run_id": (run or {}).get("id") if isinstance(run, dict) else None}
        except Exception as exc:  # the alert stands even when its action cannot run; the record says why
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            log.warning("alert %s: starting pipeline %s failed: %s\n%s", alert["id"], pipeline, message,
                        traceback.format_exc())
            action = {"pipeline": pipeline, "error": message}
        self.db.execute("update monitoring_alerts set action = ? where id = ?", [json.dumps(action), alert["id"]])

    # ------------------------------------------------------------------------------------------- other plugins

    def take_event(self, event) -> None:
        """Adopt another plugin's ``alert.raised`` as a managed alert, and resolve such alerts when their
        clearing event arrives. The raising event has gone out already, so only later changes are announced."""
        if event.source == SOURCE:
            return
        if event.type == "alert.raised":
            d = event.data or {}
            rule = str(d.get("rule") or "external")
            with self._lock:
                current = self.active(rule, event.subject)
                if current:
                    self.db.execute("update monitoring_alerts set last_seen = ?, count = count + 1, message = ? "
                                    "where id = ?", [time.time(), str(d.get("message", "")), current["id"]])
                else:
                    self._insert(rule, event.subject, str(d.get("severity") or "warning"), str(d.get("message", "")),
                                 None, "event", None, None, event.id)
            return
        for rule, (clearing, fields) in CLEARED_BY.items():
            if event.type == clearing and all((event.data or {}).get(k) == v for k, v in fields.items()):
                with self._lock:
                    current = self.active(rule, event.subject)
                    if current:
                        self._resolve(current, f"{event.type} (event {event.id})")
