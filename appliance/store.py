"""``store.duckdb``: the one read-write DuckDB connection, shared with plugins as a cursor per thread.

DuckDB allows one read-write process per file, so only the daemon opens it; everything else asks the daemon.
A cursor is a per-thread view of the same database. Always drain a result before the next ``execute`` on the
same cursor: an undrained result blocks it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from .threads import in_background

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
    def __init__(self, path: Path):
        self.path = Path(path)
        # Opened from a background thread: DuckDB starts its worker pool here, and the workers inherit that
        # priority (appliance.threads), so bulk query work yields to serving when the cores are all busy. The
        # thread that runs a query takes part in it at its own priority.
        self._con = in_background(lambda: duckdb.connect(str(self.path), config={
            "checkpoint_threshold": CHECKPOINT_THRESHOLD}), "duckdb")
        self._local = threading.local()
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

    def close(self) -> None:
        with self._lock:
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:
                    pass
            self._cursors.clear()
            self._con.close()
