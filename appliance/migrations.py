"""Named migration sets for ``catalog.db``.

Each set (the core's, and one per plugin that wants tables) is a list of named steps applied once, in order,
and recorded in ``_migrations`` so a restarted or upgraded daemon applies only what is new.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

Step = Callable[[sqlite_utils.Database], None]


class Migrations:
    """A named, ordered set of migration steps. Decorate each step with ``@migrations()``."""

    def __init__(self, name: str):
        self.name = name
        self.steps: list[tuple[str, Step]] = []

    def __call__(self, name: str | None = None) -> Callable[[Step], Step]:
        def decorator(fn: Step) -> Step:
            self.steps.append((name or fn.__name__, fn))
            return fn

        return decorator

    def pending(self, db: sqlite_utils.Database) -> list[str]:
        done = applied(db, self.name)
        return [n for n, _ in self.steps if n not in done]

    def apply(self, db: sqlite_utils.Database, *, atomic: bool = False) -> list[str]:
        """Apply the steps not yet recorded; each step and its record commit together, or, with ``atomic``, all
        of them in one transaction (a third-party plugin's set: if one step fails, none of them stays)."""
        _ensure_table(db)
        done = applied(db, self.name)
        pending = [(n, fn) for n, fn in self.steps if n not in done]
        batches = [pending] if atomic and pending else [[step] for step in pending]
        for batch in batches:
            # The catalog runs in autocommit mode, so the transaction is explicit: DDL included, a step that
            # fails leaves no trace and is tried again next start.
            db.execute("begin")
            try:
                for step_name, fn in batch:
                    fn(db)
                    db["_migrations"].insert({"migration_set": self.name, "name": step_name,
                                              "applied_at": time.time()})
            except BaseException:
                db.execute("rollback")
                raise
            db.execute("commit")
        return [n for n, _ in pending]


def _ensure_table(db: sqlite_utils.Database) -> None:
    if "_migrations" not in db.table_names():
        db["_migrations"].create(
            {"migration_set": str, "name": str, "applied_at": float}, pk=("migration_set", "name")
        )


def applied(db: sqlite_utils.Database, set_name: str) -> set[str]:
    _ensure_table(db)
    rows = db.execute("select name from _migrations where migration_set = ?", [set_name]).fetchall()
    return {r[0] for r in rows}
