"""The poisoning guard: each batch's distributions against the accepted history.

A source's profile plan is fixed by its first batch (``ingest.bins``): numeric columns get ten bins at that
batch's deciles, categorical columns with few distinct values are counted by value, and everything else (unique
keys, excluded columns, timestamps, near-unique strings, columns past the first hundred) is not profiled,
because PSI on those flags every batch.
Each batch's bucket counts are kept (``ingest.profiles``), so the history is a sum, never a rescan. A batch whose
Population Stability Index on a column, or whose label rate, moves beyond the source's thresholds is held.

A batch of more than ``PROFILE_ROWS`` rows is counted from a sample of about that many rows, taken as whole
DuckDB vectors (2,048 rows) spread at random over the batch, and its counts are scaled to the batch's size: PSI
compares proportions, and a million rows pin every bucket's proportion to about +-0.001 (PSI noise under
0.001), while counting all of a 10M-row batch cost more than a second of the ingest. A column the file is sorted
by is sampled as ~490 blocks rather than a million free rows: its PSI noise is ~0.02, still far under the 0.25
that holds a batch (tests/test_ingest_guard.py). The label rate and the contract's checks see every row.
DuckDB's block choice is seeded but not repeatable across threads, so a re-profiled batch may differ slightly.
"""

from __future__ import annotations

import json
import math

from .sql import ident, literal

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL")
CATEGORICAL = ("VARCHAR", "BOOLEAN")
#: Categorical columns with more distinct values than this in the first batch are not profiled.
MAX_CATEGORIES = 200
#: Keeps PSI finite when a bucket is empty on one side.
EPSILON = 1e-4
#: Columns profiled per source, in file order: with more, PSI's false alarms outnumber the real ones, and
#: profiling a 2,000-column file would cost more than reading it.
MAX_PROFILED = 100
#: Aggregates per query: DuckDB plans a query's aggregates in quadratic time, so 2,000 in one take minutes.
CHUNK = 50
#: Bin edges (and which columns are categories) come from a sample about this big of the first batch: exact
#: deciles of 10M rows cost seconds, and edges only need to split the data roughly evenly; a batch up to this
#: size is taken whole.
SAMPLE_ROWS = 100_000
#: Batches up to this many rows are profiled whole; bigger ones from a sample of about this many (see above).
PROFILE_ROWS = 1_000_000


def sample(batch: str, rows: int, target: int) -> str:
    """``batch`` (``table where ...``) as a relation of about ``target`` of its ``rows`` rows: all of them when
    it has no more, else whole vectors chosen at random (system sampling skips the vectors it leaves out, where a
    reservoir or Bernoulli sample reads every row)."""
    if rows <= target:
        return f"(select * from {batch})"
    return f"(select * from {batch} using sample {100 * target / rows:.6f}% (system, 1))"


def _select(cur, exprs: list[str], relation: str) -> list:
    """One row of ``exprs`` over ``relation``, computed ``CHUNK`` aggregates at a time."""
    out: list = []
    for i in range(0, len(exprs), CHUNK):
        out += cur.execute(f"select {', '.join(exprs[i:i + CHUNK])} from {relation}").fetchone()
    return out


def _base(typ: str) -> str:
    return typ.split("(", 1)[0].strip().upper()


def plan(cur, source, columns: list[tuple[str, str]], batch: str, rows: int) -> dict[str, dict]:
    """The source's profile plan, made from a sample of ``batch`` (its first) if it has none yet."""
    kept = cur.execute("select column_name, kind, edges from ingest.bins where source = ?",
                       [source.name]).fetchall()
    if kept:
        return {c: {"kind": k, "edges": json.loads(e) if e else None} for c, k, e in kept}
    skip = set(source.unique) | set(source.guard.exclude)
    out: dict[str, dict] = {}
    aggs = []  # (name, kind, aggregate)
    for name, typ in columns:
        base = _base(typ)
        if name in skip or (base not in NUMERIC and base not in CATEGORICAL) or len(aggs) >= MAX_PROFILED:
            out[name] = {"kind": "skip", "edges": None}
        elif base in NUMERIC:
            aggs.append((name, "num", f"approx_quantile({ident(name)}::DOUBLE, "
                                      f"[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])"))
        else:
            aggs.append((name, "cat", f"approx_count_distinct({ident(name)})"))
    if aggs:
        values = _select(cur, [a for _, _, a in aggs], sample(batch, rows, SAMPLE_ROWS))
        for (name, kind, _), value in zip(aggs, values, strict=True):
            if kind == "num":
                edges = sorted({v for v in (value or []) if v is not None and math.isfinite(v)})
                out[name] = {"kind": "num", "edges": edges}
            else:
                out[name] = {"kind": "cat" if (value or 0) <= MAX_CATEGORIES else "skip", "edges": None}
    cur.executemany("insert into ingest.bins values (?, ?, ?, ?)",
                    [[source.name, c, p["kind"], json.dumps(p["edges"]) if p["edges"] is not None else None]
                     for c, p in out.items()])
    return out


def _aggs(name: str, p: dict) -> list[str]:
    """The aggregates counting ``name``'s buckets, with ``count(*)`` last (nulls are what it has beyond the rest).

    A numeric column gets one count of values below each edge (bucket counts are their differences) and its
    non-null count: a sum of comparisons per edge is plain vectorised arithmetic, 3x cheaper on 10M rows than
    a CASE per row feeding histogram()'s map. A category is counted by value with histogram()."""
    col = ident(name)
    if p["kind"] == "cat":
        return [f"histogram({col}::VARCHAR)", f"count({col})", "count(*)"]
    return [f"sum(({col} < {literal(e)})::BIGINT)" for e in p["edges"]] + [f"count({col})", "count(*)"]


def _counts(p: dict, values: list, scale: float) -> dict[str, int]:
    *below, nonnull, total = [int(v or 0) if not isinstance(v, dict) else v for v in values]
    if p["kind"] == "cat":
        counts = {str(k): int(v) for k, v in (below[0] or {}).items()}
    else:
        cuts = [0, *below, nonnull]
        counts = {str(i): cuts[i + 1] - cuts[i] for i in range(len(cuts) - 1) if cuts[i + 1] > cuts[i]}
    if total > nonnull:
        counts["(null)"] = total - nonnull
    return {k: max(1, round(n * scale)) for k, n in counts.items()} if scale != 1 else counts


def profile(cur, plan_: dict[str, dict], batch: str, rows: int) -> dict[str, dict[str, int]]:
    """Bucket counts of ``batch``'s ``rows`` rows for every profiled column, nulls as bucket ``(null)``, empty
    ones left out; counted from a sample scaled to ``rows`` when the batch is big (see the module's notes)."""
    cols = [c for c, p in plan_.items() if p["kind"] != "skip"]
    if not cols:
        return {}
    aggs = [_aggs(c, plan_[c]) for c in cols]
    flat = [a for group in aggs for a in group]
    row = _select(cur, flat, sample(batch, rows, PROFILE_ROWS))
    sampled = int(row[len(aggs[0]) - 1] or 0)  # every group ends with count(*)
    if not sampled and rows:  # too few vectors for the sample to catch one: count them all
        row, sampled = _select(cur, flat, f"(select * from {batch})"), rows
    scale = rows / sampled if sampled else 1.0
    out, i = {}, 0
    for c, group in zip(cols, aggs, strict=True):
        out[c] = _counts(plan_[c], row[i:i + len(group)], scale)
        i += len(group)
    return out


def history(cur, source_name: str) -> tuple[int, dict[str, dict[str, int]], float | None]:
    """Rows accepted so far, their summed bucket counts, and their label rate."""
    n, rate = cur.execute(
        "select coalesce(sum(accepted), 0), sum(label_rate * accepted) / nullif(sum(accepted) filter "
        "(where label_rate is not null), 0) from ingest.batches where source = ? and state in "
        "('accepted', 'approved')", [source_name]).fetchone()
    hist: dict[str, dict[str, int]] = {}
    for col, bucket, count in cur.execute(
            "select p.column_name, p.bucket, sum(p.n) from ingest.profiles p join ingest.batches b "
            "on p.batch_id = b.id where b.source = ? and b.state in ('accepted', 'approved') group by all",
            [source_name]).fetchall():
        hist.setdefault(col, {})[bucket] = int(count)
    return int(n), hist, rate


def psi(expected: dict[str, int], actual: dict[str, int]) -> float:
    """Population Stability Index of ``actual`` against ``expected`` (bucket -> count)."""
    e_total, a_total = sum(expected.values()), sum(actual.values())
    if not e_total or not a_total:
        return 0.0
    value = 0.0
    for key in set(expected) | set(actual):
        e = max(expected.get(key, 0) / e_total, EPSILON)
        a = max(actual.get(key, 0) / a_total, EPSILON)
        value += (a - e) * math.log(a / e)
    return value


def judge(source, accepted: int, prof: dict, label_rate: float | None, hist_rows: int, hist: dict,
          hist_rate: float | None) -> tuple[list[str], dict[str, float]]:
    """Reasons to hold the batch (empty: accept it) and each profiled column's PSI."""
    g = source.guard
    if not g.enabled or hist_rows < g.min_history_rows or accepted < max(1, g.min_batch_rows):
        return [], {}
    scores = {c: round(psi(hist.get(c, {}), counts), 4) for c, counts in prof.items()}
    reasons = [f"column {c!r}: PSI {s:.3f} against the accepted history exceeds {g.psi}"
               for c, s in sorted(scores.items()) if s > g.psi]
    if label_rate is not None and hist_rate is not None and abs(label_rate - hist_rate) > g.label_rate_delta:
        reasons.append(f"label {source.label!r}: rate {label_rate:.3f} against {hist_rate:.3f} in the accepted "
                       f"history moved more than {g.label_rate_delta}")
    return reasons, scores
