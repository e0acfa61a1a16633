"""The ingest plugin's part of ``appliance.toml``: ``[ingest]`` and one ``[sources.NAME]`` table per source.

Everything is checked here, before any state changes, and every mistake names file, line and key::

    [ingest]
    data_dirs = ["data"]          # every path a source or a request names must resolve inside one of these
    poll_seconds = 2.0            # how often watched directories are looked at

    [sources.orders]
    kind = "csv"                  # csv, parquet, jsonl, json, or a kind a plugin registers
    glob = "data/orders/*.csv"    # or path = "data/orders.csv", or watch = "data/incoming" (+ pattern)
    unique = ["id"]               # a key no two accepted rows share
    mostly = 0.95                 # hold the batch for review when fewer rows than this pass
    label = "churned"             # compared with the history's label rate by the poisoning guard
    null_values = ["NA", ""]      # CSV: text that means a missing value (NULL), not a broken row (default [""])
    timestamp_format = "%Y-%m-%d %H:%M:%S"   # CSV: strptime formats for TIMESTAMP and DATE columns
    date_format = "%Y-%m-%d"      # (default: ISO 8601, as DuckDB reads it)
    delimiter = ","               # CSV dialect: delimiter, quote ('"'), escape ('"'), header (true),
    skip = 0                      # lines before the header, encoding ("utf-8", "utf-16" or "latin-1")

    [sources.orders.columns]
    id = "BIGINT"                                      # a type alone, or a table of rules:
    amount = { type = "DOUBLE", not_null = true, min = 0, max = 10000, max_null_fraction = 0.01 }
    country = { type = "VARCHAR", allowed = ["DE", "FR"] }
    email = { type = "VARCHAR", pattern = "^[^@]+@[^@]+$" }
    note = { type = "VARCHAR", nullable = false }     # nullable = false is not_null = true

    [sources.orders.guard]
    psi = 0.25                    # hold a batch when a column's PSI against the accepted history is above this
    label_rate_delta = 0.1        # ... or when the label rate moved more than this
    min_history_rows = 1000       # the guard starts once this many rows were accepted
    min_batch_rows = 100          # smaller batches are too noisy to judge
    exclude = ["signup_date"]     # columns the guard ignores (unique keys are always ignored)

A source without ``columns`` takes its schema from its first file; every later file must match it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import Options

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?(\[\])?$")
#: How a CSV file is read (the dialect is part of the contract): key -> what the value must be. The csv kind
#: declares these as its options (plugins/ingest/kinds.py); what a type cannot say is checked here.
CSV_OPTIONS = {"delimiter": "one character", "quote": "one character", "escape": "one character",
               "header": "true or false", "null_values": "a list of strings", "timestamp_format": "a strptime format",
               "date_format": "a strptime format", "skip": "a number of lines", "encoding": "utf-8, utf-16 or latin-1"}
ENCODINGS = ("utf-8", "utf-16", "latin-1")
SOURCE_KEYS = {"kind", "path", "glob", "watch", "pattern", "columns", "unique", "mostly", "label", "guard"}
#: Options a source kind that declares none (a contract 1.0 kind) is still given, as it was then.
LEGACY_KIND_KEYS = {"delimiter", "header"}
RULE_KEYS = {"type", "not_null", "nullable", "min", "max", "allowed", "pattern", "max_null_fraction"}
GUARD_KEYS = {"enabled", "psi", "label_rate_delta", "min_history_rows", "min_batch_rows", "exclude"}
INGEST_KEYS = {"data_dirs", "poll_seconds"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    min: Any = None
    max: Any = None
    allowed: tuple | None = None
    pattern: str | None = None
    max_null_fraction: float | None = None


@dataclass(frozen=True)
class Guard:
    enabled: bool = True
    psi: float = 0.25
    label_rate_delta: float = 0.1
    min_history_rows: int = 1000
    min_batch_rows: int = 100
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    path: Path | None = None
    glob: str | None = None
    watch: Path | None = None
    pattern: str = "*"
    columns: tuple[Column, ...] = ()
    unique: tuple[str, ...] = ()
    mostly: float | None = None
    label: str | None = None
    guard: Guard = field(default_factory=Guard)
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": str(self.path) if self.path else None,
                "glob": self.glob, "watch": str(self.watch) if self.watch else None, "pattern": self.pattern,
                "columns": [c.__dict__ for c in self.columns], "unique": list(self.unique),
                "mostly": self.mostly, "label": self.label, "guard": self.guard.__dict__}


@dataclass(frozen=True)
class Settings:
    project_dir: Path | None = None
    data_dirs: tuple[Path, ...] = ()
    poll_seconds: float = 2.0
    sources: dict[str, Source] = field(default_factory=dict)


def confine(settings: Settings, path: str | Path) -> Path:
    """``path`` (relative to the project) resolved with symlinks; outside every data directory is refused."""
    from appliance.errors import BadRequest

    if not settings.data_dirs:
        raise BadRequest("no data directories are declared; add [ingest] data_dirs to appliance.toml")
    if "\0" in str(path):  # no file has one in its name; the OS would refuse it deep inside a read
        raise BadRequest(f"{str(path)!r}: a path may not contain a NUL byte", title="Path refused")
    base = settings.project_dir or Path.cwd()
    resolved = (base / path).resolve()
    if not any(resolved == d or d in resolved.parents for d in settings.data_dirs):
        dirs = ", ".join(str(d) for d in settings.data_dirs)
        raise BadRequest(f"{path}: outside the data directories ({dirs}); ingest only reads files under them",
                         title="Path refused")
    return resolved


def parse(config, kinds) -> Settings:
    """Check ``[ingest]`` and ``[sources.*]`` of ``config``; ``kinds`` maps each registered source kind's name to
    the kind (whose ``options``, when it declares them, are the further keys a source of that kind takes)."""
    ing = config.section("ingest")
    if not isinstance(ing, dict):
        raise config.error("expected a table [ingest]", "ingest")
    _unknown(config, ing, INGEST_KEYS, "ingest")
    project = config.project_dir
    dirs = ing.get("data_dirs", ["data"] if project else [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) and d for d in dirs):
        raise config.error(f"expected a list of directory names, got {dirs!r}", "ingest", "data_dirs")
    data_dirs = []
    for d in dirs:
        resolved = ((project or Path.cwd()) / d).resolve()
        if project and resolved != project and project not in resolved.parents:
            raise config.error(f"{d!r} is outside the project directory {project}", "ingest", "data_dirs")
        data_dirs.append(resolved)
    poll = ing.get("poll_seconds", 2.0)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0.05 <= poll <= 3600:
        raise config.error(f"expected seconds between 0.05 and 3600, got {poll!r}", "ingest", "poll_seconds")
    settings = Settings(project_dir=project, data_dirs=tuple(data_dirs), poll_seconds=float(poll))
    tables = config.section("sources")
    if not isinstance(tables, dict):
        raise config.error("expected tables [sources.NAME]", "sources")
    for name, table in tables.items():
        settings.sources[name] = _source(config, settings, name, table, kinds)
    return settings


def _unknown(config, table: dict, known: set, *keys: str) -> None:
    for key in table:
        if key not in known:
            raise config.error(f"unknown key; known keys: {', '.join(sorted(known))}", *keys, key)


def _source(config, settings: Settings, name: str, t: Any, kinds) -> Source:
    where = ("sources", name)
    if not NAME_RE.match(name):
        raise config.error("a source name must be letters, digits and underscores, starting with a letter or "
                           "underscore (it names the tables raw.NAME and quarantine.NAME)", *where)
    if not isinstance(t, dict):
        raise config.error("expected a table", *where)
    kind = t.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        if "kind" not in t:
            raise config.error(f"needs kind = one of {', '.join(sorted(kinds))}", *where)
        raise config.error(f"expected one of {', '.join(sorted(kinds))}, got {kind!r}", *where, "kind")
    declared = getattr(kinds[kind], "options", None)
    if declared is not None:
        options = config.check_options(Options.of(declared), t, *where, also=tuple(SOURCE_KEYS))
    else:
        _unknown(config, t, SOURCE_KEYS | LEGACY_KIND_KEYS, *where)
        options = {k: t[k] for k in LEGACY_KIND_KEYS if k in t}
    places = [k for k in ("path", "glob", "watch") if k in t]
    if len(places) != 1:
        raise config.error("give exactly one of path, glob or watch", *where)
    for key in places + ["pattern", "label"] + (["delimiter"] if declared is None else []):
        if key in t and (not isinstance(t[key], str) or not t[key]):
            raise config.error(f"expected a non-empty string, got {t[key]!r}", *where, key)

    def inside(key: str) -> Path:
        try:
            return confine(settings, t[key].split("*", 1)[0] if key == "glob" else t[key])
        except Exception as exc:
            raise config.error(getattr(exc, "message", str(exc)), *where, key) from None

    path = inside("path") if "path" in t else None
    watch = inside("watch") if "watch" in t else None
    if "glob" in t:
        inside("glob")
        if ".." in Path(t["glob"]).parts:
            raise config.error("a glob may not contain '..'", *where, "glob")
    columns = _columns(config, t.get("columns", {}), where)
    names = {c.name for c in columns}
    unique = t.get("unique", [])
    if isinstance(unique, str):
        unique = [unique]
    if not isinstance(unique, list) or not all(isinstance(u, str) for u in unique):
        raise config.error(f"expected a column name or a list of them, got {unique!r}", *where, "unique")
    for key, wanted in [("unique", unique), ("label", [t["label"]] if "label" in t else [])]:
        missing = [u for u in wanted if columns and u not in names]
        if missing:
            raise config.error(f"no column {missing[0]!r} in [sources.{name}.columns]", *where, key)
    mostly = t.get("mostly")
    if mostly is not None and (isinstance(mostly, bool) or not isinstance(mostly, int | float)
                               or not 0 <= mostly <= 1):
        raise config.error(f"expected a fraction between 0 and 1, got {mostly!r}", *where, "mostly")
    if declared is None and "header" in t and not isinstance(t["header"], bool):
        raise config.error(f"expected true or false, got {t['header']!r}", *where, "header")
    if kind == "csv":
        options.update(_csv_options(config, t, where))
    return Source(name=name, kind=kind, path=path, glob=t.get("glob"), watch=watch,
                  pattern=t.get("pattern", "*"), columns=columns, unique=tuple(unique), mostly=mostly,
                  label=t.get("label"), guard=_guard(config, t.get("guard", {}), where), options=options)


def _csv_options(config, t: dict, where: tuple) -> dict:
    """The reading options given, each checked (DuckDB would take a wrong one as a different dialect)."""
    out = {}
    for key, want in CSV_OPTIONS.items():
        if key not in t:
            continue
        v = t[key]
        if want == "one character":
            ok = isinstance(v, str) and len(v) == 1 and v not in "\r\n"
        elif want == "true or false":
            ok = isinstance(v, bool)
        elif want == "a list of strings":
            ok = isinstance(v, list) and all(isinstance(x, str) and "\0" not in x for x in v)
        elif want == "a number of lines":
            ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1_000_000
        elif key == "encoding":
            ok = isinstance(v, str) and v.lower() in ENCODINGS
            v = v.lower() if ok else v
        else:
            ok = isinstance(v, str) and "%" in v and "\0" not in v
        if not ok:
            raise config.error(f"expected {want}, got {v!r}", *where, key)
        out[key] = v
    return out


def _columns(config, cols: Any, where: tuple) -> tuple[Column, ...]:
    if not isinstance(cols, dict):
        raise config.error("expected a table of column = type or column = { type = ..., rules }", *where,
                           "columns")
    out = []
    for col, spec in cols.items():
        key = (*where, "columns", col)
        if col.startswith("_") or not col.strip():
            raise config.error("column names starting with '_' are reserved (raw tables add _batch_id)", *key)
        spec = {"type": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict):
            raise config.error(f"expected a type or a table of rules, got {spec!r}", *key)
        _unknown(config, spec, RULE_KEYS, *key)
        typ = spec.get("type")
        if not isinstance(typ, str) or not TYPE_RE.match(typ):
            raise config.error(f"expected a DuckDB type such as BIGINT, DOUBLE, VARCHAR, TIMESTAMP, got {typ!r}",
                               *key, "type")
        allowed = spec.get("allowed")
        if allowed is not None and (not isinstance(allowed, list) or not allowed):
            raise config.error(f"expected a non-empty list of values, got {allowed!r}", *key, "allowed")
        pattern = spec.get("pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                raise config.error(f"not a regular expression: {exc}", *key, "pattern") from None
        for bound in ("min", "max"):
            v = spec.get(bound)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float | str)):
                raise config.error(f"expected a number (or a date/time string), got {v!r}", *key, bound)
        mnf = spec.get("max_null_fraction")
        if mnf is not None and (isinstance(mnf, bool) or not isinstance(mnf, int | float) or not 0 <= mnf <= 1):
            raise config.error(f"expected a fraction between 0 and 1, got {mnf!r}", *key, "max_null_fraction")
        for flag in ("not_null", "nullable"):
            if not isinstance(spec.get(flag, False), bool):
                raise config.error("expected true or false", *key, flag)
        not_null = spec.get("not_null", False) or not spec.get("nullable", True)
        if "not_null" in spec and "nullable" in spec and spec["not_null"] == spec["nullable"]:
            raise config.error("nullable and not_null say opposite things; give one of them", *key, "nullable")
        out.append(Column(name=col, type=typ.upper(), not_null=not_null, min=spec.get("min"),
                          max=spec.get("max"), allowed=tuple(allowed) if allowed else None, pattern=pattern,
                          max_null_fraction=mnf))
    return tuple(out)


def _guard(config, g: Any, where: tuple) -> Guard:
    key = (*where, "guard")
    if not isinstance(g, dict):
        raise config.error("expected a table", *key)
    _unknown(config, g, GUARD_KEYS, *key)
    checks = {"enabled": bool, "psi": (int, float), "label_rate_delta": (int, float),
              "min_history_rows": int, "min_batch_rows": int, "exclude": list}
    for k, want in checks.items():
        v = g.get(k)
        if v is not None and (not isinstance(v, want) or (isinstance(v, bool) and want is not bool)
                              or (not isinstance(v, bool | list) and v < 0)):
            raise config.error(f"expected a non-negative {k.replace('_', ' ')}, got {v!r}", *key, k)
    return Guard(**{k: (tuple(v) if k == "exclude" else v) for k, v in g.items()})
