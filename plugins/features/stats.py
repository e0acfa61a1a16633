"""Feature statistics per view version, kept in the catalog as the reference monitoring compares against.

Numbers get count, nulls, min, max, mean, standard deviation and quantiles; everything else gets count, nulls,
distinct values and the top categories. Quantiles are approximate (t-digest) so large tables stay cheap.
"""

from __future__ import annotations

from typing import Any

from .offline import NUMERIC, Schema, fetch, q

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP = 10


def compute(con, table: str, schema: Schema) -> dict[str, Any]:
    """``{"rows": n, "features": {name: {...}}}`` for every feature of the version's offline table."""
    numeric = [f for f in schema.features if NUMERIC.match(schema.columns[f])]
    other = [f for f in schema.features if f not in numeric]
    parts = ["count(*)"]
    for f in numeric:
        c = q(f)
        parts += [f"count({c})", f"min({c})::double", f"max({c})::double", f"avg({c})::double",
                  f"stddev_samp({c})::double", f"approx_quantile({c}::double, {list(QUANTILES)})"]
    for f in other:
        parts += [f"count({q(f)})", f"approx_count_distinct({q(f)})"]
    row = fetch(con, f"select {', '.join(parts)} from {table}")[0]
    rows, i, out = row[0], 1, {}
    for f in numeric:
        count, lo, hi, mean, std, qs = row[i:i + 6]
        i += 6
        out[f] = {"type": schema.columns[f], "count": count, "nulls": rows - count, "min": lo, "max": hi,
                  "mean": mean, "std": std,
                  "quantiles": dict(zip((str(p) for p in QUANTILES), qs or [None] * len(QUANTILES), strict=True))}
    for f in other:
        count, distinct = row[i:i + 2]
        i += 2
        top = fetch(con, f"select cast({q(f)} as varchar), count(*) from {table} where {q(f)} is not null "
                         f"group by 1 order by 2 desc, 1 limit {TOP}")
        out[f] = {"type": schema.columns[f], "count": count, "nulls": rows - count, "distinct": distinct,
                  "top": [{"value": v, "count": n} for v, n in top]}
    return {"rows": rows, "features": out}
