"""The control API as the demo daemon answered it, recorded, for the dashboard's snapshot and fault tests.

Snapshots must not depend on a daemon's timing (ids, latencies, ages), so those tests get ``FakeApi``, which
answers from ``tui_recorded.json`` with the clock frozen at the moment of recording. The recording is never
written by hand: ``TUI_RECORD=1 pytest tests/test_tui_screens.py -k recorded`` takes it from the shortened demo
(``tui_demo.py``), and the same test, run without the variable, compares its shapes with what the live daemon
answers now, so a daemon whose answers change breaks that test instead of a user's screen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tui.client import NotInstalled

RECORDING = Path(__file__).with_name("tui_recorded.json")

#: What the dashboard reads, with the filters it uses (``?state=`` is part of a route's name here; ``limit`` is
#: applied by the fake to the longest answer recorded).
RECORDED = ["/health", "/status", "/jobs", "/jobs?state=running", "/schedules", "/pipelines", "/job-kinds",
            "/deployments", "/predictions?deployment=fraud", "/alerts", "/alerts?state=open", "/alerts?state=all",
            "/monitors", "/monitors/fraud_drift", "/monitors/box", "/sources", "/batches",
            "/sources/transactions/quarantine", "/features", "/features/card_velocity", "/features/merchant_risk",
            "/runs", "/runs/1", "/runs/1/metrics", "/models", "/models/fraud", "/models/fraud/versions/1",
            "/models/fraud/versions/1/lineage",
            "/plugins", "/tui/panels", "/events", "/jobs/{train}", "/jobs/{train}/logs"]
#: Subtrees whose keys depend on the job kind, the event type or the run, not on the daemon's version.
FREE_FORM = {"params", "result", "data", "details", "environment", "options", "alerts", "labels", "definition",
             "schema", "signature", "lineage", "spec", "registrations", "tags", "manifest", "psi", "metrics",
             "jobs", "aliases", "batches"}


def record(d, root: Path) -> dict:
    """Every route in ``RECORDED`` as the daemon ``d`` answers it now, its temporary paths made readable."""
    routes: dict[str, Any] = {}
    train = d.get("/jobs", params={"kind": "train", "limit": 1}).json()[0]["id"]
    for name in RECORDED:
        path, _, query = name.format(train=train).partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if p)
        limit = {"/events": 200, "/predictions": 30}.get(path, 1000)
        r = d.get(path, params={**params, "limit": limit})
        assert r.status_code == 200, (name, r.text)
        routes[name.format(train=train)] = r.json()
    text = json.dumps({"now": _now(routes), "train_job": train, "routes": routes,
                       "metrics": d.get("/metrics").text})
    return json.loads(text.replace(str(root), "/home/ml/fraud"))


def _now(routes: dict) -> float:
    """The moment of recording: just after the newest time the daemon reported."""
    newest = max(e["time"] for e in routes["/events"])
    return float(int(newest) + 1)


def load() -> dict:
    return json.loads(RECORDING.read_text())


REC = load() if RECORDING.exists() else {"now": 0.0, "routes": {}, "metrics": ""}
NOW: float = REC["now"]
ROUTES: dict[str, Any] = REC["routes"]
METRICS: str = REC["metrics"]


def more_gpus(text: str, n: int) -> str:
    """The recorded GPU lines repeated for ``n`` GPUs (the fake provider reports one; a box may have eight)."""
    lines = [line for line in text.splitlines() if 'gpu="0"' in line]
    extra = [line.replace('gpu="0"', f'gpu="{i}"') for i in range(1, n) for line in lines]
    return "\n".join([text, *extra])


class FakeApi:
    """Answers ``GET`` from the recording; records ``POST``; paths it lacks are 'not installed' like a daemon."""

    where = "/home/ml/.local/share/appliance"

    def __init__(self, routes: dict | None = None, replies: dict | None = None, metrics: str | None = None):
        self.routes = {**ROUTES, **(routes or {})}
        self.replies = replies or {}
        self.metrics = METRICS if metrics is None else metrics
        self.posted: list[tuple[str, Any]] = []

    async def get(self, path: str, **params: Any) -> Any:
        query = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k in ("state", "deployment") and v)
        name = f"{path}?{query}" if query and f"{path}?{query}" in self.routes else path
        if name not in self.routes:
            raise NotInstalled(f"no route /api/v1{path}", title="Not installed", status=404)
        data = self.routes[name]
        if callable(data):
            return data(**params)
        if isinstance(data, list) and params.get("kind"):
            data = [r for r in data if r.get("kind") == params["kind"]]
        if isinstance(data, list) and params.get("limit"):
            return data[: int(params["limit"])]
        return data

    async def get_text(self, path: str) -> str:
        return self.metrics

    async def post(self, path: str, body: Any = None) -> Any:
        self.posted.append((path, body))
        return self.replies.get(path, {})

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return await (self.post(path, body) if method == "POST" else self.get(path))

    async def reconnect(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------ shapes


def shape(value: Any) -> Any:
    """The type structure of a JSON value: dicts by key, lists by the union of their items, numbers as one."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        merged: Any = None
        for item in value:
            merged = _union(merged, shape(item))
        return [merged]
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


def _union(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _union(a.get(k), b.get(k)) for k in {**a, **b}}
    if isinstance(a, list) and isinstance(b, list):
        return [_union(a[0], b[0])]
    return a if a == b else "mixed"


def _is_map(d: dict) -> bool:
    """All values of one shape: a mapping keyed by data (counts by state, stats by feature), not a record."""
    values = [json.dumps(v, sort_keys=True) for v in d.values()]
    return bool(values) and len(set(values)) == 1


def differences(fake: Any, live: Any, where: str = "") -> list[str]:
    """Where the recorded shape and the live one disagree; nulls and empty lists match anything."""
    if fake is None or live is None or fake == "mixed" or live == "mixed":
        return []
    if isinstance(fake, dict) and isinstance(live, dict):
        if where.rsplit(".", 1)[-1] in FREE_FORM:
            return []
        if set(fake) != set(live) and _is_map(fake) and _is_map(live):
            return differences(next(iter(fake.values())), next(iter(live.values())), f"{where}.*")
        out = [f"{where}.{k}: recorded, but the daemon no longer sends it" for k in set(fake) - set(live)]
        out += [f"{where}.{k}: the daemon sends it, the recording lacks it" for k in set(live) - set(fake)]
        for k in set(fake) & set(live):
            out += differences(fake[k], live[k], f"{where}.{k}")
        return out
    if isinstance(fake, list) and isinstance(live, list):
        return differences(fake[0], live[0], f"{where}[]")
    return [] if fake == live else [f"{where}: recorded {fake}, the daemon sends {live}"]
