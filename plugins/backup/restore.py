"""Restoring a backup into an empty home, in the user's shell: no daemon may run on a home being restored.

The backup is verified first, so a damaged one is refused before anything is written. The home must be empty
(or not exist yet): merging a backup into a live home would mix two histories, so that is refused outright.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from appliance import ApplianceError

from . import manifest


def restore(backup: Path, home_root: Path) -> dict:
    """Restore ``backup`` into the empty home directory ``home_root``; returns the verified manifest."""
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
    data = manifest.verify(backup)
    created = not home_root.exists()
    try:
        home_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(backup / "catalog.db", home_root / "catalog.db")
        _import_store(backup / "store", home_root / "store.duckdb", data["tables"].get("store", {}))
        if (backup / "artifacts").is_dir():
            shutil.copytree(backup / "artifacts", home_root / "artifacts")
        if (backup / "plugins").is_dir():
            shutil.copytree(backup / "plugins", home_root / "plugins")
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
    return data


def _import_store(exported: Path, target: Path, counts: dict[str, int]) -> None:
    import duckdb

    con = duckdb.connect(str(target))
    try:
        path = str(exported).replace("'", "''")
        con.execute(f"import database '{path}'").fetchall()
        for table, want in counts.items():
            schema, name = table.split(".", 1)
            got = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]
            if got != want:
                raise ApplianceError(f"table {table} has {got} rows after the import; the backup recorded {want}",
                                     title="Restore failed")
    except duckdb.Error as exc:
        raise ApplianceError(f"the store in {exported} could not be imported: {exc}",
                             title="Restore failed") from None
    finally:
        con.close()
