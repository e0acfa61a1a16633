"""A fake control API client with fixed data, for the dashboard's snapshot tests only.

Snapshots must not depend on a daemon's timing (ids, latencies, ages), so the app gets this object instead of
``ApiClient`` and a frozen clock; the Pilot tests in ``test_tui.py`` use the real daemon.
"""

from __future__ import annotations

from typing import Any

from tui.client import NotInstalled

NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


def ago(s: float) -> float:
    return NOW - s


JOBS = [{"id": 40 - i, "kind": kind, "state": st, "progress": prog, "message": msg, "attempt": 1,
         "created": ago(60 * (i + 1)), "origin": "api", "error": err, "params": {}}
        for i, (kind, st, prog, msg, err) in enumerate([
            ("train", "running", 0.62, "epoch 31/50", None),
            ("materialize", "running", 0.25, "customers", None),
            ("ingest", "queued", 0.0, "", None),
            ("ingest", "succeeded", 1.0, "3 batches", None),
            ("monitor", "failed", 0.4, "", "reference window is empty"),
            ("backup", "cancelled", 0.1, "", None)])]

RUNS = [{"id": 12 - i, "experiment": "churn", "spec_name": "churn_mlp", "state": st, "epoch": ep, "step": ep * 40,
         "created": ago(3600 * (i + 1))} for i, (st, ep) in enumerate([("running", 31), ("succeeded", 50),
                                                                     ("succeeded", 50), ("failed", 7)])]

ROUTES: dict[str, Any] = {
    "/health": {"status": "ok", "version": "0.1.0"},
    "/status": {"version": "0.1.0", "pid": 4242, "home": "/home/ml/.local/share/appliance",
                "project": "/home/ml/churn", "uptime_s": 93784.0, "stopping": False,
                "plugins": {"loaded": 11, "failed": 1, "failures": 1},
                "jobs": {"running": 2, "queued": 1, "succeeded": 812, "failed": 3}},
    "/jobs": JOBS,
    "/schedules": [{"name": "nightly", "type": "pipeline", "target": "nightly", "schedule": "cron 0 2 * * *",
                    "next_fire": NOW + 7200, "last_fire": ago(79200)},
                   {"name": "drift", "type": "job", "target": "monitor", "schedule": "every 15m",
                    "next_fire": NOW + 300, "last_fire": ago(600)}],
    "/deployments": {"port": 7871, "deployments": [
        {"name": "churn", "target": "churn@champion", "state": "ready", "version": 3, "provider": "CUDAExecutionProvider",
         "requests": 182_113, "failures": 2, "p50_ms": 0.81, "p99_ms": 3.2, "max_batch_size": 64,
         "max_queue_delay_us": 2000, "shadow": "churn-next", "error": None},
        {"name": "churn-next", "target": "churn:4", "state": "ready", "version": 4, "provider": "CPUExecutionProvider",
         "requests": 9_001, "failures": 0, "p50_ms": 1.4, "p99_ms": 5.9, "max_batch_size": 1,
         "max_queue_delay_us": 0, "shadow": None, "error": None}]},
    "/predictions": [{"ts": f"2025-12-31 23:59:5{9 - i}.125000", "deployment": "churn", "model": "churn",
                      "version": 3, "request_id": f"req-{100 - i}", "row_index": 0, "latency_us": 700 + 10 * i,
                      "shadow": False, "outputs": {"probability": [0.12 + i / 100]}} for i in range(5)],
    "/alerts": [{"id": 7, "rule": "churn_drift.dataset_drift", "subject": "deployment:churn", "severity": "warning",
                 "state": "open", "count": 3, "message": "4 of 12 features drifted (tenure, plan, calls, spend)",
                 "last_seen": ago(120)},
                {"id": 5, "rule": "box.disk", "subject": "box:disk", "severity": "error", "state": "acked",
                 "count": 1, "message": "8.2% of the home's volume is free", "last_seen": ago(5400)}],
    "/monitors": {"monitors": [
        {"name": "churn_drift", "kind": "drift", "every_s": 900, "last_run": {
            "status": "alert", "time": ago(120), "checks": [{"rule": "churn_drift.dataset_drift", "firing": True}]}},
        {"name": "box", "kind": "box", "every_s": 60, "last_run": {
            "status": "ok", "time": ago(30), "checks": [{"rule": "box.disk", "firing": False}]}}], "kinds": []},
    "/sources": [{"name": "customers", "kind": "parquet", "rows": 1_204_311, "quarantined_rows": 17, "batches": 41,
                  "held": 0},
                 {"name": "events", "kind": "csv", "rows": 88_120, "quarantined_rows": 3, "batches": 9, "held": 1}],
    "/batches": [{"id": 50 - i, "source": src, "state": st, "rows_in": n, "accepted": ok, "quarantined": n - ok,
                  "time": ago(900 * (i + 1)), "reasons": reasons}
                 for i, (src, st, n, ok, reasons) in enumerate([
                     ("events", "held", 1200, 1200, ["column 'score': PSI 0.91 > 0.25"]),
                     ("customers", "accepted", 30_000, 29_990, []),
                     ("events", "approved", 800, 797, [])])],
    "/sources/customers/quarantine": [{"batch_id": 49, "row": r, "column": c, "rule": rule, "expected": e, "got": g}
                                      for r, c, rule, e, g in [(17, "age", "max", "<= 120", "340"),
                                                               (88, "plan", "allowed", "basic|pro", "gold"),
                                                               (91, "email", "pattern", "[a-z]+@…", "n/a")]],
    "/features": [{"name": "customer_stats", "version": 4, "entities": ["customer_id"], "source": "customers",
                   "rows": 1_204_311, "materialized": ago(1800)},
                  {"name": "usage_7d", "version": 2, "entities": ["customer_id"], "source": "events",
                   "rows": 88_120, "materialized": ago(300)}],
    "/features/customer_stats": {"name": "customer_stats", "version": 4, "rows": 1_204_311, "watermark": "2025-12-31",
                                 "online_age_s": 1800.0,
                                 "stats": {"tenure": {"mean": 31.2, "std": 12.9, "nulls": 0.0},
                                           "spend": {"mean": 54.1, "std": 20.2, "nulls": 0.01}}},
    "/runs": RUNS,
    "/runs/12/metrics": [{"key": key, "step": s, "value": v} for s in range(30)
                         for key, v in (("loss", 1.0 / (1 + s / 5)), ("val_auc", 0.6 + s / 100))],
    "/models": [{"name": "churn", "aliases": {"champion": 3, "challenger": 4}}],
    "/models/churn": {"name": "churn", "versions": [
        {"name": "churn", "version": v, "aliases": a, "metrics": {"auc": auc}, "created": ago(86400 * (5 - v))}
        for v, a, auc in ((1, [], 0.81), (2, [], 0.84), (3, ["champion"], 0.87), (4, ["challenger"], 0.88))],
        "audit": [{"id": 9, "action": "alias", "alias": "champion", "from_version": 2, "to_version": 3,
                   "actor": "api", "reason": "beat v2 on holdout", "time": ago(86400)}]},
    "/plugins": {"plugins": [
        {"name": n, "source": src, "status": st, "version": "", "hooks": hooks, "error": err, "registrations": {}}
        for n, src, st, hooks, err in [
            ("ingest", "builtin", "loaded", ["register_routes", "register_job_kinds", "configure"], ""),
            ("registry", "builtin", "loaded", ["register_routes", "register_services"], ""),
            ("serving", "builtin", "loaded", ["register_routes", "startup", "shutdown"], ""),
            ("slack_sink", "dropin", "failed", [], "ModuleNotFoundError: No module named 'slack_sdk'")]],
        "failures": [{"plugin": "slack_sink", "hook": "import", "message": "No module named 'slack_sdk'",
                      "traceback": "Traceback ...", "time": NOW - 3600}]},
    "/tui/panels": [{"name": "queues", "title": "Queue depth", "route": "/fixture/queues", "kind": "table",
                     "columns": ["queue", "depth"], "rows_key": "queues", "refresh_s": 5, "plugin": "mailer"},
                    {"name": "license", "title": "License", "route": "/fixture/license", "kind": "keyvalue",
                     "columns": [], "rows_key": "", "refresh_s": 5, "plugin": "mailer"}],
    "/fixture/queues": {"queues": [{"queue": "emails", "depth": 7}, {"queue": "webhooks", "depth": 0}]},
    "/fixture/license": {"holder": "ACME", "seats": 5, "expires": "2030-01-01"},
}

METRICS = "\n".join(f'appliance_gpu_{k}{{gpu="0",name="NVIDIA H100 80GB HBM3"}} {v}' for k, v in (
    ("temperature_c", 64.0), ("utilization_pct", 87.0), ("memory_used_bytes", 51e9), ("memory_total_bytes", 85e9)))


class FakeApi:
    """Answers ``GET`` from ``ROUTES``; records ``POST``; paths it lacks are 'not installed' like a real daemon."""

    where = "/home/ml/.local/share/appliance"

    def __init__(self, routes: dict | None = None, replies: dict | None = None):
        self.routes = {**ROUTES, **(routes or {})}
        self.replies = replies or {}
        self.posted: list[tuple[str, Any]] = []

    async def get(self, path: str, **params: Any) -> Any:
        if path not in self.routes:
            raise NotInstalled(f"no route /api/v1{path}", title="Not installed", status=404)
        data = self.routes[path]
        if callable(data):
            return data(**params)
        if isinstance(data, list) and params.get("state") not in (None, "all", "active"):
            return [r for r in data if r.get("state") == params["state"]]
        return data

    async def get_text(self, path: str) -> str:
        return METRICS

    async def post(self, path: str, body: Any = None) -> Any:
        self.posted.append((path, body))
        return self.replies.get(path, {})

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return await (self.post(path, body) if method == "POST" else self.get(path))

    async def reconnect(self) -> None:
        pass
