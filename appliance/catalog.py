"""``catalog.db``: the daemon's SQLite catalog (jobs, events, and every plugin's own tables).

One connection per thread (SQLite connections must not be shared across threads), WAL so readers never wait
for the writer, a busy timeout so writers queue instead of failing, and named migration sets.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import sqlite_utils

from .migrations import Migrations

core = Migrations("core")


@core()
def m001_jobs(db: sqlite_utils.Database) -> None:
    db.execute("""
        create table jobs (
            id integer primary key autoincrement,
            kind text not null,
            params text not null default '{}',
            state text not null,
            progress real not null default 0,
            message text not null default '',
            result text,
            error text,
            attempt integer not null default 0,
            max_attempts integer not null default 1,
            backoff_s real not null default 1,
            timeout_s real,
            gpu integer not null default 0,
            not_before real not null default 0,
            created real not null,
            started real,
            finished real,
            daemon_pid integer,
            origin text not null default ''
        )""")
    db.execute("create index jobs_state on jobs(state, id)")
    db.execute("""
        create table job_logs (
            job_id integer not null,
            seq integer not null,
            time real not null,
            line text not null,
            primary key (job_id, seq)
        )""")


@core()
def m002_events(db: sqlite_utils.Database) -> None:
    db.execute("""
        create table events (
            id integer primary key autoincrement,
            time real not null,
            type text not null,
            subject text not null default '',
            data text not null default '{}',
            source text not null default 'appliance'
        )""")
    db.execute("create index events_type on events(type, id)")


class Catalog:
    """Per-thread ``sqlite_utils.Database`` handles on one ``catalog.db``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's database handle."""
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("pragma journal_mode=wal")
            conn.execute("pragma synchronous=normal")
            conn.execute("pragma foreign_keys=on")
            db = sqlite_utils.Database(conn)
            self._local.db = db
            with self._lock:
                self._all.append(conn)
        return db

    def migrate(self, *sets: Migrations) -> dict[str, list[str]]:
        return {m.name: m.apply(self.db) for m in sets}

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
