"""appliance-sqlite: a source kind that ingests one table of a SQLite database file.

Written against the public contract only: ``register_sources`` with the kind's own ``Options`` (so
``table = ...`` in ``[sources.NAME]`` is checked by the appliance, with file, line and key on a mistake), and
``read(path, options, columns, source)`` told the source's name, which keys the converted file it keeps.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
from pathlib import Path

from appliance import ApplianceError, Option, Options, hookimpl

APPLIANCE_CONTRACT = "1.1"

#: A table or column name we are willing to put in a query (SQLite's own names are not ours to read).
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Where converted tables go: under the home once the daemon has started us, else the temporary directory.
CACHE = {"dir": Path(tempfile.gettempdir()) / "appliance-sqlite"}
_lock = threading.Lock()


class SqliteTable:
    """``kind = "sqlite"``: one table of a SQLite database file, read as it is at ingest time."""

    name = "sqlite"
    options = Options(
        Option("table", str, required=True, doc="the table to read"),
        Option("order_by", str, "", "a column to take the rows in order of (the table's order when empty)"),
    )

    def read(self, path, options, columns, source):
        table, order_by = options["table"], options["order_by"]
        for what, name in (("table", table), ("order_by", order_by)):
            if name and (not _NAME.match(name) or name.lower().startswith("sqlite_")):
                raise ApplianceError(f"source {source}: {what} {name!r} is not a table or column name this kind "
                                     "reads (letters, digits and _, not starting with sqlite_)", title="Bad option")
        converted = _convert(Path(path), table, order_by, source)
        reader = f"read_json({_sql(str(converted))}, format='newline_delimited'"
        if columns:  # the engine asks for the source's columns as text, to check and cast them itself
            reader += ", columns={" + ", ".join(f"{_sql(n)}: {_sql(t)}" for n, t in columns) + "}"
        return reader + ")"


def _convert(database: Path, table: str, order_by: str, source: str) -> Path:
    """The table as JSON lines, made once per source and state of the database file."""
    stat = database.stat()
    key = hashlib.sha256(f"{database}|{stat.st_size}|{stat.st_mtime_ns}|{table}|{order_by}".encode()).hexdigest()
    target = CACHE["dir"] / f"{source}-{key[:16]}.jsonl"
    with _lock:
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            # Read-only, through a URI: a missing file is an error rather than a new empty database.
            con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise ApplianceError(f"source {source}: cannot open {database} as SQLite: {exc}",
                                 title="Bad source file") from None
        try:
            order = f' order by "{order_by}"' if order_by else ""
            cur = con.execute(f'select * from "{table}"{order}')
            names = [d[0] for d in cur.description]
            tmp = target.with_suffix(".tmp")
            with open(tmp, "w") as out:
                for row in cur:
                    out.write(json.dumps(dict(zip(names, row, strict=True)), default=_blob) + "\n")
            os.replace(tmp, target)
        except sqlite3.Error as exc:
            raise ApplianceError(f"source {source}: cannot read table {table!r} of {database}: {exc}",
                                 title="Bad source file") from None
        finally:
            con.close()
        for old in target.parent.glob(f"{source}-*.jsonl"):  # earlier states of this source's database
            if old != target:
                old.unlink(missing_ok=True)
    return target


def _blob(value):
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__}")


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@hookimpl
def register_sources(register):
    register(SqliteTable())


@hookimpl
def startup(app):
    CACHE["dir"] = Path(app.home.root) / "appliance_sqlite"
