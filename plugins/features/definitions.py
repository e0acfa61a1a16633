"""Entities and feature views as declared in ``appliance.toml``, checked without touching any store.

    [entities.customer]
    join_keys = ["customer_id"]

    [feature_views.customer_spend]
    source = "raw.transactions"        # a DuckDB table, or a Parquet path/glob under the project dir
    entities = ["customer"]
    event_time = "ts"
    ttl = "7d"                         # values older than this (at the spine's time, or now online) are NULL
    sql = "select customer_id, ts, amount, amount > 100 as large from source"   # a per-row transformation
    features = ["amount", "large"]     # optional: which columns of the sql are features (default: all others)
    description = "what customers spend"

    [[feature_views.customer_spend.windows]]   # rolling windows per entity, evaluated at each event
    column = "amount"
    function = "sum"                   # count | sum | mean | min | max
    over = ["1h", "1d", "7d"]          # gives amount_sum_1h, amount_sum_1d, amount_sum_7d

A view's *definition* (everything but its description) is hashed: a changed definition is a new version.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.config import Config

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
WINDOW_FUNCTIONS = {"count": "count", "sum": "sum", "mean": "avg", "min": "min", "max": "max"}
ENTITY_KEYS = {"join_keys", "description"}
VIEW_KEYS = {"source", "entities", "event_time", "ttl", "sql", "features", "windows", "description"}
WINDOW_KEYS = {"column", "function", "over"}


@dataclass(frozen=True)
class Window:
    """One rolling aggregate: ``function(column)`` over the ``seconds`` before each event, per entity."""

    feature: str
    function: str
    column: str | None
    seconds: int


@dataclass
class FeatureView:
    name: str
    source: str  # a table name, or an absolute Parquet path/glob
    source_is_table: bool
    entities: dict[str, list[str]]  # entity -> join keys, in declaration order
    event_time: str
    ttl_s: int | None
    sql: str | None
    features: list[str] | None  # the sql columns chosen as features; None: all of them
    windows: list[Window] = field(default_factory=list)
    description: str = ""

    @property
    def join_keys(self) -> list[str]:
        return [k for keys in self.entities.values() for k in keys]

    def definition(self) -> dict[str, Any]:
        """What makes a version: every field that changes the values the view produces."""
        return {
            "source": self.source, "entities": self.entities, "event_time": self.event_time,
            "ttl_s": self.ttl_s, "sql": self.sql, "features": self.features,
            "windows": [w.__dict__ for w in self.windows],
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.definition(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_definition(cls, name: str, d: dict, description: str = "") -> FeatureView:
        return cls(name=name, source=d["source"], source_is_table=not d["source"].endswith(".parquet"),
                   entities=d["entities"], event_time=d["event_time"], ttl_s=d["ttl_s"], sql=d["sql"],
                   features=d["features"], windows=[Window(**w) for w in d["windows"]], description=description)


def parse_duration(value: Any) -> int | None:
    """Seconds from ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"`` or an integer; None if it is neither."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and (m := DURATION.match(value)) and int(m.group(1)) > 0:
        return int(m.group(1)) * UNIT_S[m.group(2)]
    return None


def duration_label(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        if seconds % UNIT_S[unit] == 0:
            return f"{seconds // UNIT_S[unit]}{unit}"
    return f"{seconds}s"


def parse(config: Config) -> dict[str, FeatureView]:
    """Every feature view of the project, checked; raises ``config.error`` naming the first bad key."""
    entities = _entities(config)
    views_cfg = config.section("feature_views")
    if not isinstance(views_cfg, dict):
        raise config.error("expected tables [feature_views.NAME]", "feature_views")
    return {name: _view(config, name, spec, entities) for name, spec in views_cfg.items()}


def _entities(config: Config) -> dict[str, list[str]]:
    section = config.section("entities")
    if not isinstance(section, dict):
        raise config.error("expected tables [entities.NAME]", "entities")
    out = {}
    for name, spec in section.items():
        if not NAME.match(name):
            raise config.error("an entity name is letters, digits and _", "entities", name)
        if not isinstance(spec, dict):
            raise config.error("expected a table with join_keys", "entities", name)
        _unknown(config, spec, ENTITY_KEYS, "entities", name)
        keys = spec.get("join_keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and NAME.match(k) for k in keys):
            raise config.error(f"entity {name!r} needs join_keys, a list of column names", "entities", name,
                               "join_keys")
        out[name] = list(keys)
    return out


def _view(config: Config, name: str, spec: Any, entities: dict[str, list[str]]) -> FeatureView:
    where = ("feature_views", name)
    if not NAME.match(name):
        raise config.error("a feature view name is letters, digits and _", *where)
    if not isinstance(spec, dict):
        raise config.error(f"feature view {name!r}: expected a table", *where)
    _unknown(config, spec, VIEW_KEYS, *where)

    source = spec.get("source")
    if not isinstance(source, str) or not source.strip():
        raise config.error(f"feature view {name!r} needs a source: a DuckDB table or a Parquet path", *where,
                           "source")
    is_table = bool(TABLE.match(source)) and not source.endswith(".parquet")
    if not is_table:
        if not source.endswith(".parquet") or "'" in source:
            raise config.error(f"feature view {name!r}: source {source!r} is neither a table name "
                               "(schema.table) nor a Parquet path ending in .parquet", *where, "source")
        base = config.project_dir or Path.cwd()
        source = str((base / source).resolve()) if not Path(source).is_absolute() else source

    names = spec.get("entities")
    if not isinstance(names, list) or not names or not all(isinstance(e, str) for e in names):
        raise config.error(f"feature view {name!r} needs entities, a list of entity names", *where, "entities")
    for e in names:
        if e not in entities:
            known = ", ".join(sorted(entities)) or "none declared"
            raise config.error(f"feature view {name!r}: unknown entity {e!r} (entities: {known})", *where,
                               "entities")

    event_time = spec.get("event_time")
    if not isinstance(event_time, str) or not NAME.match(event_time):
        raise config.error(f"feature view {name!r} needs event_time, the name of its timestamp column", *where,
                           "event_time")

    ttl_s = None
    if "ttl" in spec:
        ttl_s = parse_duration(spec["ttl"])
        if ttl_s is None:
            raise config.error(f"feature view {name!r}: ttl must be a duration such as \"7d\", \"12h\", \"30m\" "
                               f"or seconds, got {spec['ttl']!r}", *where, "ttl")

    sql = spec.get("sql")
    if sql is not None and (not isinstance(sql, str) or not sql.strip()):
        raise config.error(f"feature view {name!r}: sql must be a SELECT over `source`", *where, "sql")

    features = spec.get("features")
    if features is not None and (not isinstance(features, list)
                                 or not all(isinstance(f, str) and NAME.match(f) for f in features)):
        raise config.error(f"feature view {name!r}: features must be a list of column names", *where, "features")

    windows = _windows(config, name, spec.get("windows", []))
    view = FeatureView(name=name, source=source, source_is_table=is_table,
                       entities={e: entities[e] for e in names}, event_time=event_time, ttl_s=ttl_s,
                       sql=sql.strip() if sql else None, features=features, windows=windows,
                       description=str(spec.get("description", "")))
    reserved = set(view.join_keys) | {event_time}
    clash = [f for f in (features or []) + [w.feature for w in windows] if f in reserved]
    if clash:
        raise config.error(f"feature view {name!r}: feature {clash[0]!r} is also a join key or the event time",
                           *where, "features")
    return view


def _windows(config: Config, view: str, items: Any) -> list[Window]:
    where = ("feature_views", view, "windows")
    if not isinstance(items, list):
        raise config.error(f"feature view {view!r}: windows must be [[feature_views.{view}.windows]] tables",
                           *where)
    out: list[Window] = []
    for item in items:
        if not isinstance(item, dict):
            raise config.error(f"feature view {view!r}: each window is a table", *where)
        _unknown(config, item, WINDOW_KEYS, *where)
        function = item.get("function")
        if function not in WINDOW_FUNCTIONS:
            raise config.error(f"feature view {view!r}: window function must be one of "
                               f"{', '.join(WINDOW_FUNCTIONS)}, got {function!r}", *where, "function")
        column = item.get("column")
        if column is None and function != "count":
            raise config.error(f"feature view {view!r}: a {function} window needs a column", *where, "column")
        if column is not None and (not isinstance(column, str) or not NAME.match(column)):
            raise config.error(f"feature view {view!r}: window column must be a column name", *where, "column")
        over = item.get("over")
        if not isinstance(over, list) or not over:
            raise config.error(f"feature view {view!r}: window needs over, a list of durations like \"1h\"",
                               *where, "over")
        for o in over:
            seconds = parse_duration(o)
            if seconds is None:
                raise config.error(f"feature view {view!r}: window duration {o!r} is not like \"1h\", \"7d\"",
                                   *where, "over")
            label = duration_label(seconds)
            feature = f"{column}_{function}_{label}" if column else f"{function}_{label}"
            if any(w.feature == feature for w in out):
                raise config.error(f"feature view {view!r}: window feature {feature!r} is declared twice",
                                   *where)
            out.append(Window(feature, function, column, seconds))
    return out


def _unknown(config: Config, spec: dict, allowed: set[str], *where: str) -> None:
    for key in spec:
        if key not in allowed:
            raise config.error(f"unknown key {key!r}; expected one of {', '.join(sorted(allowed))}", *where, key)
