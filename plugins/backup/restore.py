"""Restoring a backup into an empty home, in the user's shell: no daemon may run on a home being restored.

Every file is re-hashed against the manifest first. What verifies is restored; what does not is left out and
listed (its path, the hash the manifest recorded, why), so one bad block costs one file, not the backup. A
table whose Parquet file fails is created empty; an artifact or a drop-in plugin file that fails is missing
from the new home. Three files hold the rest together, and without them nothing is restored: the catalog
(models, runs, jobs, which artifact is which) and the store's ``schema.sql`` and ``load.sql`` (which tables
exist and which file fills each). The home must be empty (or not exist yet): merging a backup into a live home
would mix two histories. Everything restored is a copy, never a link into the backup, 0600 in a 0700 home.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path, PurePosixPath

from appliance import ApplianceError

from . import manifest
from .copying import copy_file, seal

#: Without these a home cannot be put together from the rest.
ESSENTIAL = ("catalog.db", "store/schema.sql", "store/load.sql")
#: One line of DuckDB's ``load.sql``: ``COPY <table> FROM '<file>' (<options>);``.
_COPY = re.compile(r"^COPY (?P<table>.+) FROM '(?P<path>(?:[^']|'')*)' (?P<options>\(.*\));$")


def restore(backup: Path, home_root: Path) -> dict:
    """Restore what verifies of ``backup`` into the empty home ``home_root``. Returns the manifest's ``tables``,
    the number of ``files`` restored, the ``problems`` (files left out, as ``manifest.check`` lists them) and
    the ``empty_tables`` created without their rows; the restore was whole when ``problems`` is empty."""
    backup, home_root = Path(backup).resolve(), Path(home_root).expanduser().resolve()
    try:
        busy = home_root.exists() and (not home_root.is_dir() or any(home_root.iterdir()))
    except OSError as exc:
        raise ApplianceError(f"cannot look into home {home_root}: {exc.strerror or exc}",
                             title="Restore failed") from None
    if busy:
        raise ApplianceError(
            f"home {home_root} is not empty; restore only into an empty or new home (pass --home NEW_DIR), "
            "then point the daemon at it", title="Home not empty")
    data, problems = manifest.check(backup)
    bad = {p["path"] for p in problems}
    if missing := [rel for rel in ESSENTIAL if rel in bad or rel not in data["files"]]:
        listed = "; ".join(manifest.describe(p) for p in problems) or "not in the manifest"
        raise manifest.BadBackup(
            f"{backup}: nothing was restored, because {', '.join(missing)} failed verification ({listed}). "
            f"Restore an older backup; the store's tables are still Parquet files under {backup / 'store'}.")
    created = not home_root.exists()
    try:
        home_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        copy_file(backup / "catalog.db", home_root / "catalog.db")
        empty = _import_store(backup / "store", home_root / "store.duckdb", data["tables"].get("store", {}), bad)
        files = 1 + sum(rel.startswith("store/") and rel not in bad for rel in data["files"])
        for rel in sorted(data["files"]):
            if rel.split("/", 1)[0] in ("artifacts", "plugins") and rel not in bad:
                (home_root / rel).parent.mkdir(parents=True, exist_ok=True)
                copy_file(backup / rel, home_root / rel)
                files += 1
        seal(home_root)
    except BaseException as exc:
        # The home was empty: leave it empty again (as far as we can), so the restore can simply be run again.
        with contextlib.suppress(OSError):
            for child in list(home_root.iterdir()) if home_root.exists() else []:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            if created and home_root.exists():
                home_root.rmdir()
        if isinstance(exc, OSError):
            raise ApplianceError(f"could not restore into {home_root}: {exc.strerror or exc}",
                                 title="Restore failed") from None
        raise
    return {"tables": data["tables"], "files": files, "problems": problems, "empty_tables": empty}


def _import_store(exported: Path, target: Path, counts: dict[str, int], bad: set[str]) -> list[str]:
    """Build the store from the export's ``schema.sql``, then fill each table from its Parquet file as its
    ``load.sql`` line says, unless that file failed verification (the table stays empty). Returns the tables
    left empty that way; a table that was filled must hold the rows the backup counted."""
    import duckdb

    con = duckdb.connect(str(target))
    empty = []
    try:
        con.execute((exported / "schema.sql").read_text()).fetchall()
        for line in filter(None, map(str.strip, (exported / "load.sql").read_text().splitlines())):
            load = _COPY.match(line)
            if load is None:
                raise ApplianceError(f"{exported / 'load.sql'} has a line this appliance does not understand: "
                                     f"{line[:200]!r}", title="Restore failed")
            # The path is where the export was first written (a hidden directory since renamed); the file's
            # name is what stays.
            name = PurePosixPath(load["path"].replace("''", "'")).name
            table = _table_key(load["table"])
            if f"store/{name}" in bad:
                empty.append(table)
                continue
            path = str(exported / name).replace("'", "''")
            con.execute(f"COPY {load['table']} FROM '{path}' {load['options']}").fetchall()
            got = con.execute(f"select count(*) from {load['table']}").fetchone()[0]
            if table in counts and got != counts[table]:
                raise ApplianceError(f"table {table} has {got} rows after the import; the backup recorded "
                                     f"{counts[table]}", title="Restore failed")
    except duckdb.Error as exc:
        raise ApplianceError(f"the store in {exported} could not be imported: {exc}",
                             title="Restore failed") from None
    finally:
        con.close()
    return empty


def _table_key(sql_name: str) -> str:
    """``schema.table`` as the manifest counts it, from the (possibly quoted) name in ``load.sql``."""
    parts = [m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2)
             for m in re.finditer(r'"((?:[^"]|"")*)"|([^."]+)', sql_name)]
    return ".".join(parts if len(parts) > 1 else ["main", *parts])
