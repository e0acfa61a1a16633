"""Point-in-time correct training sets: one DuckDB ASOF join per feature view on a spine.

For each spine row and view, the ASOF join picks the view's row with the same entity keys and the newest event
time <= the spine's time, never a later one. The offline table holds one row per (keys, event time), so that
match is unique: the same inputs always give the same rows. The TTL is applied to the matched row afterwards,
in the projection: putting it in the ASOF ON clause turns the join into a nested loop. Spine rows without a
match (or with an expired one) keep NULLs. Rows come out in spine order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from appliance import BadRequest

from .definitions import FeatureView
from .offline import TEMPORAL, Schema, fetch, q, table_name

REF = re.compile(r"^(?P<view>[A-Za-z_][A-Za-z0-9_]*)(@(?P<version>\d+))?:(?P<feature>\*|[A-Za-z_][A-Za-z0-9_]*)$")
INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


@dataclass
class Selection:
    """The features wanted from one version of one view."""

    view: FeatureView
    version: int
    schema: Schema
    features: list[str]

    @property
    def label(self) -> str:
        return f"{self.view.name}@{self.version}"


def parse_ref(ref: object) -> tuple[str, int | None, str]:
    """``"view:feature"``, ``"view@2:feature"`` or ``"view:*"`` as (view, version or None, feature)."""
    m = REF.match(ref) if isinstance(ref, str) else None
    if not m:
        raise BadRequest(f"feature {ref!r} is not of the form view:feature (or view@VERSION:feature, view:*)",
                         title="Unknown feature")
    return m["view"], int(m["version"]) if m["version"] else None, m["feature"]


def spine_relation(spine: str | None, spine_sql: str | None, base: Path | None) -> tuple[str, str]:
    """The spine as SQL, and how the manifest names it: a table, a Parquet path or a query."""
    if bool(spine) == bool(spine_sql) or not isinstance(spine or spine_sql, str):
        raise BadRequest("give the spine as exactly one of spine (a table or Parquet path) or spine_sql (a query)",
                         title="Bad spine")
    if spine_sql:
        return f"({spine_sql})", spine_sql
    if re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", spine) and not spine.endswith(".parquet"):
        return ".".join(q(p) for p in spine.split(".")), spine
    if not spine.endswith(".parquet") or "'" in spine:
        raise BadRequest(f"spine {spine!r} is neither a table name nor a Parquet path ending in .parquet")
    path = Path(spine) if Path(spine).is_absolute() or base is None else base / spine
    return f"read_parquet('{path}')", str(path)


def describe_spine(con, relation: str, event_time: str) -> dict[str, str]:
    try:
        cols = dict(r[:2] for r in fetch(con, f"describe select * from {relation} _spine"))
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadRequest(f"the spine cannot be read: {msg}", title="Bad spine") from None
    if event_time not in cols:
        raise BadRequest(f"the spine has no timestamp column {event_time!r} (columns: {', '.join(cols)}); "
                         "name it with event_time", title="Bad spine")
    if not cols[event_time].startswith(TEMPORAL):
        raise BadRequest(f"spine column {event_time!r} must be a timestamp or date, got {cols[event_time]}",
                         title="Bad spine")
    return cols


def check_keys(spine_cols: dict[str, str], selections: list[Selection]) -> None:
    """Every view's join keys must be spine columns of a matching type."""
    for sel in selections:
        for key in sel.view.join_keys:
            entity = next(e for e, keys in sel.view.entities.items() if key in keys)
            if key not in spine_cols:
                raise BadRequest(f"the spine has no column {key!r}, the join key of entity {entity!r} that "
                                 f"feature view {sel.view.name!r} needs", title="Bad spine")
            want, got = sel.schema.columns[key], spine_cols[key]
            if _key_family(want) != _key_family(got):
                raise BadRequest(f"spine column {key!r} is {got}, but entity {entity!r} of feature view "
                                 f"{sel.view.name!r} has {key!r} as {want}", title="Key type mismatch")


def _key_family(duckdb_type: str) -> str:
    return "integer" if duckdb_type in INTEGER else duckdb_type


def output_columns(spine_cols: dict[str, str], selections: list[Selection]) -> dict[str, str]:
    """Output column name -> ``view:feature``; a name taken twice is refused."""
    out: dict[str, str] = {}
    for sel in selections:
        for f in sel.features:
            name = f"{sel.view.name}__{f}"
            if name in spine_cols or name in out:
                raise BadRequest(f"feature {sel.view.name}:{f} would be column {name!r}, which is taken "
                                 "(by the spine or another version of the view)")
            out[name] = f"{sel.label}:{f}"
    return out


def training_query(relation: str, spine_cols: dict[str, str], event_time: str,
                   selections: list[Selection]) -> str:
    """The SELECT for the training set: spine columns, then ``view__feature`` columns, in spine order."""
    ts = q(event_time)
    ctes = [f"_spine as (select row_number() over () as _spine_row, * from {relation} _s)"]
    joins, cols = [], [f"s.{q(c)}" for c in spine_cols]
    for i, sel in enumerate(selections):
        v = f"_v{i}"
        ev_type = sel.schema.columns[sel.view.event_time]
        ctes.append(f"{v} as (select {', '.join(q(k) for k in sel.view.join_keys)}, "
                    f"{q(sel.view.event_time)} as _ev, {', '.join(q(f) for f in sel.features)} "
                    f"from {table_name(sel.view.name, sel.version)})")
        on = [f"{_cast(f's.{q(k)}', spine_cols[k], sel.schema.columns[k])} = {v}.{q(k)}"
              for k in sel.view.join_keys]
        on.append(f"{_cast(f's.{ts}', spine_cols[event_time], ev_type)} >= {v}._ev")
        joins.append(f"asof left join {v} on {' and '.join(on)}")
        for f in sel.features:
            value = f"{v}.{q(f)}"
            if sel.view.ttl_s is not None:
                value = f"case when {v}._ev >= s.{ts} - to_seconds({sel.view.ttl_s}) then {value} end"
            cols.append(f"{value} as {q(f'{sel.view.name}__{f}')}")
    return (f"with {', '.join(ctes)} select {', '.join(cols)} from _spine s {' '.join(joins)} "
            f"order by s._spine_row")


def _cast(expr: str, have: str, want: str) -> str:
    return expr if have == want else f"cast({expr} as {want})"
