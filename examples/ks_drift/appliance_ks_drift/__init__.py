"""appliance-ks-drift: a Kolmogorov-Smirnov drift monitor for ingested sources, and a JSON-lines alert sink.

Written against the public contract only: ``register_monitors`` (the kind's ``Options`` are checked by the
appliance, string and list options included) reading ``raw."<source>"`` from the store as docs/internals.md
describes it, and ``register_alert_sinks`` (each configured sink sends from a thread of its own).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

from appliance import Option, Options, hookimpl

APPLIANCE_CONTRACT = "1.1"

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
           "FLOAT", "DOUBLE", "REAL")


# ------------------------------------------------------------------------------------------- the test itself


def ks_statistic(a, b) -> float:
    """The largest distance between the two samples' empirical distribution functions."""
    import numpy as np

    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_p_value(d: float, n: int, m: int) -> float:
    """The asymptotic two-sided p-value (Kolmogorov's distribution, with Stephens' small-sample correction)."""
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 1e-3:
        return 1.0
    total = sum(2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return min(1.0, max(0.0, total))


# ------------------------------------------------------------------------------------------- the monitor


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run_ks(ctx):
    source, o = ctx.options["source"], ctx.options
    cur = ctx.app.store.cursor()
    table = f"raw.{_quoted(source)}"
    found = cur.execute("select column_name, data_type from information_schema.columns "
                        "where table_schema = 'raw' and table_name = ? order by ordinal_position", [source]).fetchall()
    if not found:
        ctx.no_data(f"source {source!r} has no rows yet")
        return
    types = dict(found)
    wanted = o["columns"] or [c for c, t in found if t in NUMERIC and not c.startswith("_")]
    for column in wanted:
        if column not in types or types[column] not in NUMERIC:
            raise ValueError(f"source {source!r} has no numeric column {column!r}")
    latest = cur.execute(f"select max(_batch_id) from {table}").fetchall()[0][0]
    samples = {}
    for column in wanted:
        col = _quoted(column)
        rows = cur.execute(f"select {col}, _batch_id = ? from {table} where {col} is not null",
                           [latest]).fetchall()
        samples[column] = ([v for v, new in rows if not new], [v for v, new in rows if new])
    ctx.details.update({"source": source, "latest_batch": latest,
                        "rows": {c: {"before": len(b), "latest": len(n)} for c, (b, n) in samples.items()}})
    enough = {c: s for c, s in samples.items() if min(len(s[0]), len(s[1])) >= o["min_rows"]}
    if not enough:
        ctx.no_data(f"fewer than {o['min_rows']} rows before or in batch {latest} of {source}")
        return
    for column, (before, newest) in enough.items():
        d = ks_statistic(before, newest)
        p = ks_p_value(d, len(before), len(newest))
        ctx.value("ks_statistic", d, source=source, column=column)
        ctx.value("ks_p_value", p, source=source, column=column)
        ctx.check("drift", p < o["p_value"],
                  f"{source}.{column}: batch {latest} against the {len(before)} rows before it: KS D = {d:.3f}, "
                  f"p = {p:.2g} ({'below' if p < o['p_value'] else 'above'} {o['p_value']:g})",
                  subject=f"source:{source}:{column}", value=p, threshold=o["p_value"])


class KsDrift:
    name = "ks_drift"
    description = "Kolmogorov-Smirnov test: the newest batch of a source against the batches before it"
    options = Options(
        Option("source", str, required=True, doc="the ingested source to watch"),
        Option("columns", list[str], [], "numeric columns to test (every numeric column when empty)"),
        Option("p_value", float, 0.01, "an alert fires below this p-value"),
        Option("min_rows", int, 50, "fewest rows on each side for a verdict"),
    )
    run = staticmethod(run_ks)


# ------------------------------------------------------------------------------------------- the alert sink


class JsonLines:
    """``kind = "jsonl"``: each alert change appended to ``path`` as one JSON line."""

    name = "jsonl"
    description = "append every alert change to a JSON-lines file"
    options = Options(Option("path", Path, required=True, doc="the file to append to (relative to the project)"))

    def __init__(self):
        self._lock = threading.Lock()

    def send(self, alert, options):
        path = Path(options["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(path, "a") as f:
            f.write(json.dumps(alert, default=str) + "\n")


@hookimpl
def register_monitors(register):
    register(KsDrift())


@hookimpl
def register_alert_sinks(register):
    register(JsonLines())
