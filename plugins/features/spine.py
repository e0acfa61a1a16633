"""A training set's spine: a table of the store, a Parquet file, or one SELECT, which reads files only from under
the home and the project's data directories.

A query is parsed by DuckDB itself (``json_serialize_sql``), checked node by node, and run as DuckDB prints the
checked tree back (``json_deserialize_sql``), so what runs is exactly what was checked: one SELECT (a second
statement, or anything but a SELECT, is refused before it could run); tables it names must exist in the store
(a name that is no table would be read as a file, or as a Python object of the daemon); table functions are the
file readers, whose paths must be literal and inside the allowed directories (relative ones are the project's,
as a Parquet ``spine`` is), and ``range``, ``generate_series`` and ``unnest``; DESCRIBE and SUMMARIZE are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import BadRequest

from .offline import fetch, q

READERS = frozenset({"read_parquet", "parquet_scan", "read_csv", "read_csv_auto", "read_json", "read_json_auto",
                     "read_ndjson", "read_ndjson_auto"})
PURE = frozenset({"range", "generate_series", "unnest"})
#: Table references that name what they read in a form no check here can follow (DESCRIBE x, SUMMARIZE 'file').
REFUSED_REFS = frozenset({"SHOW_REF", "COLUMN_DATA", "DELIM_GET"})
TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
GLOB = re.compile(r"[*?\[{]")


def _bad(message: str) -> BadRequest:
    return BadRequest(message, title="Bad spine")


@dataclass(frozen=True)
class Reach:
    """Where a spine may read files: under ``roots`` (the home and the data directories); a relative path is
    taken from ``base`` (the project directory)."""

    base: Path | None
    roots: tuple[Path, ...]

    def confine(self, text: str) -> str:
        """``text`` as the absolute path DuckDB should open; outside every root is refused, naming the path."""
        if "\0" in text or "://" in text:
            raise _bad(f"{text!r}: a spine reads local files only, by a plain path")
        path = Path(text) if Path(text).is_absolute() or self.base is None else self.base / text
        if GLOB.search(text) and ".." in path.parts:
            raise _bad(f"{text!r}: a path with a pattern may not contain '..'")
        resolved = path.resolve()
        if not any(resolved == r or r in resolved.parents for r in self.roots):
            where = ", ".join(str(r) for r in self.roots)
            raise _bad(f"{text!r} ({resolved}) is outside the home and the data directories ({where}); a spine "
                       "reads files only under them")
        return str(resolved)


def relation(con, spine: Any, spine_sql: Any, reach: Reach) -> tuple[str, str]:
    """The spine as SQL, and how the manifest names it: a table, a Parquet path or a query."""
    if bool(spine) == bool(spine_sql) or not isinstance(spine or spine_sql, str):
        raise _bad("give the spine as exactly one of spine (a table or Parquet path) or spine_sql (a query)")
    if spine_sql:
        return f"({checked_query(con, spine_sql, reach)})", spine_sql
    if TABLE.match(spine) and not spine.endswith(".parquet"):
        schema, _, name = spine.rpartition(".")
        _check_table(con, {"schema_name": schema, "table_name": name}, set())
        return ".".join(q(p) for p in spine.split(".")), spine
    if not spine.endswith(".parquet"):
        raise _bad(f"spine {spine!r} is neither a table name nor a Parquet path ending in .parquet")
    path = reach.confine(spine)
    return f"read_parquet({_literal(path)})", path


def checked_query(con, sql: str, reach: Reach) -> str:
    """``sql`` as DuckDB prints it back once every part of it was checked (see the module's notes)."""
    tree = json.loads(fetch(con, "select json_serialize_sql(?)", [sql])[0][0])
    if tree.get("error"):
        raise _bad(f"spine_sql must be one SELECT statement: {tree.get('error_message')}")
    if len(tree["statements"]) != 1:
        raise _bad(f"spine_sql must be one SELECT statement, not {len(tree['statements'])}")
    ctes = {e["key"].lower() for n in _nodes(tree) for e in (n.get("cte_map") or {}).get("map", [])}
    tables = []
    for node in _nodes(tree):
        kind = node.get("type")
        if "class" in node:  # an expression: its subqueries are walked as nodes of their own
            continue
        if kind in REFUSED_REFS:
            raise _bad("spine_sql may not DESCRIBE, SUMMARIZE or SHOW; select from tables and files instead")
        if kind == "TABLE_FUNCTION":
            _check_function(node["function"], reach)
        elif kind == "BASE_TABLE":
            tables.append(node)
    for t in tables:
        _check_table(con, t, ctes)
    return fetch(con, "select json_deserialize_sql(?)", [json.dumps(tree)])[0][0]


def _nodes(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _check_function(fn: dict, reach: Reach) -> None:
    name = fn.get("function_name", "")
    if fn.get("schema") or fn.get("catalog") or name.lower() not in READERS | PURE:
        raise _bad(f"spine_sql may not call table function {name!r}; it may read files with "
                   f"{', '.join(sorted(READERS))}")
    if name.lower() in PURE:
        return
    args = fn.get("arguments") or []
    first = args[0]["expression"] if args and not args[0].get("name") else {}
    literals = first.get("arguments", []) if first.get("function_name") == "list_value" else [{"expression": first}]
    for arg in literals:
        value = arg["expression"]
        literal = value.get("literal") or {}
        if value.get("class") != "CONSTANT" or literal.get("kind") != "STRING":
            raise _bad(f"{name}: give the file as a literal path (or a list of them), so it can be checked")
        literal["text"] = reach.confine(literal["text"])


def _check_table(con, ref: dict, ctes: set[str]) -> None:
    schema, name, catalog = ref.get("schema_name") or "", ref.get("table_name") or "", ref.get("catalog_name")
    if not schema and not catalog and name.lower() in ctes:
        return
    shown = f"{schema}.{name}" if schema else name
    found = not catalog and fetch(con, "select 1 from information_schema.tables where table_catalog = "
                                       "current_database() and lower(table_schema) = lower(?) and lower(table_name) "
                                       "= lower(?)", [schema or "main", name])
    if not found:
        raise _bad(f"the spine reads {shown!r}, which is no table of the store; read a file with read_parquet "
                   "or read_csv")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
