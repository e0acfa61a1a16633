"""``store.duckdb``: the one read-write DuckDB connection, shared with plugins as a cursor per thread.

DuckDB allows one read-write process per file, so only the daemon opens it; everything else asks the daemon.
A cursor is a per-thread view of the same database. Always drain a result before the next ``execute`` on the
same cursor: an undrained result blocks it.

DuckDB checksums every block and checks the sum when it reads the block; it has no verification pragma. Opening
the file reads its headers and catalog (their damage stops the start); ``verify`` reads every other block.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from .health import Damaged, Health
from .threads import in_background

#: What DuckDB says when a block fails its checksum or its metadata cannot be read (lowercase).
DAMAGE_WORDS = ("corrupt database file", "no more data remaining in metadatareader", "failed to load metadata",
                "not a valid duckdb database")

#: WAL size that triggers DuckDB's automatic checkpoint (its default is 16 MB). The prediction log appends
#: ~15 MB/s of WAL at 30k predictions/s, and each checkpoint rewrites (and recompresses) the table's open row
#: group: at 16 MB the same rows were rewritten ~5 times (41 us of CPU per logged row, 21 us at 128 MB), and
#: at 128 MB a checkpoint still fell every few seconds of busy serving, each a burst of CPU on both cores that
#: showed in the serving tail (batched p99 ~7.0 ms against ~5.5 ms at 512 MB, bench-like runs). Bulk writes
#: (ingest, materialization) go to the data file directly and are not affected; a bigger WAL only means a
#: longer replay after a crash (1.5 s for 500 MB of logged rows here). The prediction log checkpoints when its
#: appends pause, so that cost mostly falls in quiet moments.
CHECKPOINT_THRESHOLD = "512MB"


class Store:
    def __init__(self, path: Path, health: Health | None = None):
        self.path = Path(path)
        self.health = health or Health()
        # Opened from a background thread: DuckDB starts its worker pool here, and the workers inherit that
        # priority (appliance.threads), so bulk query work yields to serving when the cores are all busy. The
        # thread that runs a query takes part in it at its own priority.
        try:
            self._con = in_background(lambda: duckdb.connect(str(self.path), config={
                "checkpoint_threshold": CHECKPOINT_THRESHOLD}), "duckdb")
        except duckdb.Error as exc:
            raise self.damage(exc) or exc from exc
        self._local = threading.local()
        self._verifying: duckdb.DuckDBPyConnection | None = None
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the store."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
            with self._lock:
                self._cursors.append(cur)
        return cur

    def release(self) -> None:
        """Close this thread's cursor, if it has one (the job runner calls it when a job's thread ends, so a
        long-running daemon does not keep a cursor for every job it ever ran)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            return
        self._local.cursor = None
        with self._lock:
            if cur in self._cursors:
                self._cursors.remove(cur)
        try:
            cur.close()
        except duckdb.Error:
            pass

    def damage(self, exc: BaseException) -> Damaged | None:
        """If ``exc``, met reading or writing this store, says its file is damaged: reported to health, and
        returned as the error to raise instead (a 503 that says so and how to restore a backup)."""
        if not isinstance(exc, duckdb.Error):
            return None
        text = str(exc)
        if not any(words in text.lower() for words in DAMAGE_WORDS):
            return None
        return self.health.damaged(self.path.name, text.splitlines()[0] if text else type(exc).__name__)

    def verify(self) -> str | None:
        """Read every block of every table (each column hashed, so each is read and its checksum checked):
        None when all are sound, else what was found (also reported to health). It costs a full read of the
        store (0.11 s for a 38 MB one here); the daemon runs it in the background after start, then daily."""
        cur = self._verifying = self.cursor()
        try:
            tables = cur.execute("select schema_name, table_name from duckdb_tables() "
                                 "where database_name = current_database() and not temporary").fetchall()
            for schema, table in tables:
                columns = cur.execute("select column_name from duckdb_columns() where database_name = "
                                      "current_database() and schema_name = ? and table_name = ?",
                                      [schema, table]).fetchall()
                reads = "".join(f", bit_xor(hash({_quote(c)}))" for (c,) in columns)
                try:
                    cur.execute(f"select count(*){reads} from {_quote(schema)}.{_quote(table)}").fetchall()
                except duckdb.Error as exc:
                    if found := self.damage(exc):
                        return f"table {schema}.{table}: {found.message}"
                    raise
        finally:
            self._verifying = None
            self.release()
        return None

    def stop_verifying(self) -> None:
        """End a ``verify`` in progress now (it raises ``duckdb.InterruptException`` in its thread)."""
        cur = self._verifying
        if cur is not None:
            cur.interrupt()

    def close(self) -> None:
        with self._lock:
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:
                    pass
            self._cursors.clear()
            self._con.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
