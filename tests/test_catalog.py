"""The catalog's migrations and the artifact store's promises."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from appliance.artifacts import ArtifactStore, CorruptArtifact
from appliance.catalog import Catalog, core
from appliance.errors import BadRequest, NotFound
from appliance.migrations import Migrations


def columns(db, table):
    return [c.name for c in db[table].columns]


def test_blank_catalog_migrates_to_exact_columns(tmp_path):
    cat = Catalog(tmp_path / "catalog.db")
    ran = cat.migrate(core)
    assert ran == {"core": ["m001_jobs", "m002_events"]}
    db = cat.db
    assert columns(db, "jobs") == ["id", "kind", "params", "state", "progress", "message", "result", "error",
                                   "attempt", "max_attempts", "backoff_s", "timeout_s", "gpu", "not_before",
                                   "created", "started", "finished", "daemon_pid", "origin"]
    assert columns(db, "events") == ["id", "time", "type", "subject", "data", "source"]
    assert columns(db, "job_logs") == ["job_id", "seq", "time", "line"]
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_migrations_apply_once_and_only_what_is_new(tmp_path):
    cat = Catalog(tmp_path / "catalog.db")
    old = Migrations("plugin_x")

    @old()
    def m001(db):
        db["things"].create({"id": int}, pk="id")

    assert cat.migrate(old) == {"plugin_x": ["m001"]}
    cat.db["things"].insert({"id": 1})

    newer = Migrations("plugin_x")
    newer.steps = list(old.steps)

    @newer()
    def m002(db):
        db["things"].add_column("name", str)

    assert cat.migrate(newer) == {"plugin_x": ["m002"]}
    assert cat.migrate(newer) == {"plugin_x": []}
    assert columns(cat.db, "things") == ["id", "name"]
    assert cat.db["things"].count == 1


def test_a_failing_migration_step_leaves_nothing_half_applied(tmp_path):
    cat = Catalog(tmp_path / "catalog.db")
    bad = Migrations("bad")

    @bad()
    def m001(db):
        db.execute("create table half (id integer)")
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError):
        cat.migrate(bad)
    assert "half" not in cat.db.table_names()
    assert bad.pending(cat.db) == ["m001"]


def test_catalog_connections_are_per_thread(tmp_path):
    import threading

    cat = Catalog(tmp_path / "catalog.db")
    cat.migrate(core)
    seen = []
    t = threading.Thread(target=lambda: seen.append(cat.db))
    t.start()
    t.join()
    assert seen[0] is not cat.db
    assert isinstance(cat.db.conn, sqlite3.Connection)


def test_artifacts_are_content_addressed_and_verified(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    digest = store.put_bytes(b"model weights")
    assert digest == hashlib.sha256(b"model weights").hexdigest()
    assert store.get_bytes(digest) == b"model weights"
    src = tmp_path / "file.bin"
    src.write_bytes(b"x" * 3_000_000)
    d2 = store.put_file(src)
    assert store.verify(d2).read_bytes() == src.read_bytes()
    assert not list(store.root.rglob(".tmp-*"))
    big = bytes(range(256)) * 20_000  # several of the writer's 1 MB chunks
    with store.create() as out:
        for i in range(0, len(big), 3000):  # small writes, as a Parquet writer makes them
            out.write(big[i:i + 3000])
        out.write(big)  # and one big one
        d3 = out.commit()
    assert d3 == hashlib.sha256(big + big).hexdigest() and store.verify(d3).read_bytes() == big + big
    with store.create() as out:
        out.write(big + big)
        assert out.commit() == d3  # the same bytes: kept once
    with pytest.raises(RuntimeError), store.create() as out:
        out.write(b"half a snapshot")
        raise RuntimeError("the build failed")
    with store.create() as out:
        out.write(b"never committed")
    assert not list(store.root.rglob(".tmp-*")) and len(list(store.root.rglob("*/*"))) == 3
    path = store.path_for(digest)
    path.write_bytes(b"tampered")
    with pytest.raises(CorruptArtifact):
        store.get_bytes(digest)
    with pytest.raises(CorruptArtifact) as err:
        store.verify(digest)
    # The remedy names the file to copy back: artifacts are named by hash, so any good backup has it.
    assert f"DIR/artifacts/{digest[:2]}/{digest}" in err.value.message and "backup verify" in err.value.message


def test_artifact_hashes_are_validated_so_no_path_escapes(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    for bad in ("../../etc/passwd", "abc", "A" * 64, ""):
        with pytest.raises(BadRequest):
            store.path_for(bad)
    with pytest.raises(NotFound):
        store.verify("0" * 64)
