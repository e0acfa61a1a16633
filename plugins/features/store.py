"""The feature store in the daemon: the project's views and versions, the two job kinds, and the services.

One ``FeatureStore`` per daemon process, created when the plugin module loads (services are registered before
the daemon exists) and bound to the ``app`` by ``configure``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from appliance import BadRequest, NotFound

from . import definitions, index, offline, pit, records, spine, stats
from .definitions import FeatureView
from .offline import Schema, SourceMissing, ViewError
from .online import OnlineStore

log = logging.getLogger("appliance.features")

TRAINING_SET_NAME = re.compile(r"^[A-Za-z0-9_.\-]*[A-Za-z_.\-][A-Za-z0-9_.\-]*$")


@dataclass
class Active:
    """A view as the project declares it now: its definition, version number and (once known) schema."""

    view: FeatureView
    version: int
    schema: Schema | None


class FeatureStore:
    def __init__(self) -> None:
        self.app: Any = None
        self.views: dict[str, Active] = {}
        self.online = OnlineStore()
        self.indexes: index.IndexFiles | None = None  # set by configure, with the home
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- project

    def configure(self, app, config) -> None:
        """Check every view against its source (where it exists yet), then record versions; all or nothing."""
        views = definitions.parse(config)
        con = app.store.cursor()
        schemas: dict[str, Schema | None] = {}
        for name, view in views.items():
            try:
                schemas[name] = offline.describe(con, view)
            except SourceMissing:
                schemas[name] = None  # ingest has not written it yet; checked again at materialization
            except ViewError as exc:
                raise config.error(exc.message, "feature_views", name, exc.key) from None
        db = app.catalog.db
        active = {}
        db.execute("begin immediate")  # every view's version is recorded, or none
        try:
            for name, view in views.items():
                schema = schemas[name]
                number = records.sync(db, name, view.digest(), view.definition(), view.description,
                                      schema.to_dict() if schema else None)
                pinned = records.version(db, name, number)["schema"]
                active[name] = Active(view, number, Schema(**pinned) if pinned else None)
        except BaseException:
            db.execute("rollback")
            raise
        db.execute("commit")
        self.app, self.views = app, active
        self.indexes = index.IndexFiles(app.home.root / "features" / "index")
        self.indexes.retain({name: act.version for name, act in active.items()})
        self.online.retain(set(active))

    def active(self, name: Any) -> Active:
        if not isinstance(name, str) or name not in self.views:
            known = ", ".join(sorted(self.views)) or "none declared in appliance.toml"
            raise NotFound(f"no feature view {name!r} (feature views: {known})", title="Unknown feature view")
        return self.views[name]

    def resolve(self, name: str, version: int | None) -> tuple[FeatureView, int, Schema]:
        """A view version that can be read: the project's current one, or an older one from the catalog."""
        if version is None or (name in self.views and self.views[name].version == version):
            act = self.active(name)
            if act.schema is None:
                raise BadRequest(f"feature view {name!r} has not been materialized yet; run "
                                 f"`appliance features materialize {name}`")
            return act.view, act.version, act.schema
        rec = records.version(self.app.catalog.db, name, version)
        if rec["schema"] is None:
            raise BadRequest(f"version {version} of feature view {name!r} was never materialized")
        return (FeatureView.from_definition(name, rec["definition"], rec["description"]), version,
                Schema(**rec["schema"]))

    def _lock(self, view: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(view, threading.Lock())

    # ------------------------------------------------------------------------------------------- materialize

    def materialize(self, job) -> dict[str, Any]:
        """The ``materialize`` job: new history into the offline table, statistics, then the online values."""
        name = job.params.get("view")
        full = bool(job.params.get("full", False))
        act = self.active(name)
        view, version = act.view, act.version
        app, con = self.app, self.app.store.cursor()
        with self._lock(name):
            schema = act.schema
            if schema is None:
                try:
                    schema = offline.describe(con, view)
                except SourceMissing as exc:
                    raise BadRequest(f"feature view {name!r}: its source {view.source!r} cannot be read: {exc}",
                                     title="Source not available") from None
                records.set_schema(app.catalog.db, name, version, schema.to_dict())
                act.schema = schema
            job.progress(0.05, f"materializing {name} v{version}")
            started = time.perf_counter()
            done = offline.materialize(con, view, version, schema, full=full, batches=self._batches_behind(view))
            job.progress(0.6, "computing statistics")
            table = offline.table_name(name, version)
            summary = stats.compute(con, table, schema)
            records.record_materialized(app.catalog.db, name, version, done["rows"], done["watermark"], summary,
                                        done["batches"])
            job.progress(0.7, "indexing for training sets")
            self._index(con, view, version, schema)
            job.progress(0.8, "refreshing online values")
            since = None if full or self.online.version(name) != version else done["watermark_before"]
            entities = self.refresh_online(con, act, since)
        result = {"view": name, "version": version, "rows_added": done["rows_added"], "rows": done["rows"],
                  "watermark": str(done["watermark"]) if done["watermark"] is not None else None,
                  "duplicates_dropped": done["duplicates_dropped"], "late_rows_skipped": done["late_rows_skipped"],
                  "online_entities": entities, "seconds": round(time.perf_counter() - started, 3)}
        if done["duplicates_dropped"]:
            result["duplicates_kept"] = offline.KEPT
            job.log(f"dropped {done['duplicates_dropped']} row(s) sharing (entity, event time) with another; "
                    f"{offline.KEPT}")
        if done["late_rows_skipped"]:
            job.log(f"skipped {done['late_rows_skipped']} late row(s) at or before the watermark "
                    f"{done['watermark_before']}; `appliance features materialize {name} --full` takes them")
        app.events.emit("features.materialized", subject=f"feature_view:{name}", data=result)
        return result

    def _batches_behind(self, view: FeatureView):
        """How to ask which ingest batches a view's source table holds (the ``ingest_batches`` service), or
        None for a Parquet source or without the ingest plugin."""
        service = self.app.registry("services").get("ingest_batches")
        if service is None or not view.source_is_table:
            return None
        return lambda con: service.behind(con, view.source)

    def _index(self, con, view: FeatureView, version: int, schema: Schema) -> index.SortedIndex | None:
        """The view version's sorted index, rebuilt if its table changed; None if times span too far for one
        (training sets then use the ASOF join). Callers hold the view's lock."""
        try:
            return index.current(con, self.indexes, view, version, schema)
        except index.Unindexable as exc:
            log.info("%s; training sets from it use an ASOF join", exc)
            self.indexes.drop(view.name, version)
            return None

    def refresh_online(self, con, act: Active, since: Any = None) -> int:
        view, schema = act.view, act.schema
        rows = offline.latest_rows(con, view, act.version, schema, since)
        return self.online.load(view.name, act.version, view.join_keys, schema.features, rows, view.ttl_s,
                                merge=since is not None)

    def load_online(self) -> None:
        """At start: the online values of every materialized view (they live only in memory)."""
        con = self.app.store.cursor()
        for name, act in list(self.views.items()):
            try:
                if act.schema is not None and offline.table_exists(con, name, act.version):
                    with self._lock(name):
                        self.refresh_online(con, act)
            except Exception as exc:
                if damage := self.app.store.damage(exc):  # lookups then say so, instead of "not materialized"
                    self.online.unavailable(name, damage)
                    log.error("online values of feature view %s not loaded: %s", name, damage.message)
                else:
                    log.exception("loading the online values of feature view %s failed", name)

    # ------------------------------------------------------------------------------------------- training sets

    def plan(self, params: dict) -> dict[str, Any]:
        """Check a training-set request; every problem is a BadRequest naming the view, feature or column."""
        name = params.get("name")
        if not isinstance(name, str) or not TRAINING_SET_NAME.match(name):
            raise BadRequest(f"a training set needs a name (letters, digits, _ . -, not only digits), got {name!r}")
        refs = params.get("features")
        if not isinstance(refs, list) or not refs:
            raise BadRequest("features must be a non-empty list of view:feature names", title="Unknown feature")
        wanted: dict[tuple[str, int | None], list[str]] = {}
        for ref in refs:
            view, version, feature = pit.parse_ref(ref)
            wanted.setdefault((view, version), []).append(feature)
        selections = []
        for (view_name, version), features in wanted.items():
            view, number, schema = self.resolve(view_name, version)
            chosen: list[str] = []
            for f in features:
                if f == "*":
                    chosen += [x for x in schema.features if x not in chosen]
                elif f not in schema.features:
                    raise BadRequest(f"feature view {view_name!r} (version {number}) has no feature {f!r} "
                                     f"(features: {', '.join(schema.features)})", title="Unknown feature")
                elif f not in chosen:
                    chosen.append(f)
            selections.append(pit.Selection(view, number, schema, chosen))
        event_time = params.get("event_time", "event_time")
        if not isinstance(event_time, str):
            raise BadRequest(f"event_time must be the spine's timestamp column name, got {event_time!r}")
        con = self.app.store.cursor()
        relation, label = spine.relation(con, params.get("spine"), params.get("spine_sql"), self._reach())
        spine_cols = pit.describe_spine(con, relation, event_time)
        pit.check_keys(spine_cols, selections)
        for sel in selections:
            if not offline.table_exists(con, sel.view.name, sel.version):
                raise BadRequest(f"feature view {sel.view.name!r} version {sel.version} has not been "
                                 f"materialized; run `appliance features materialize {sel.view.name}`")
        columns = pit.output_columns(spine_cols, selections)
        return {"name": name, "relation": relation, "spine": label, "event_time": event_time,
                "spine_columns": spine_cols, "selections": selections, "columns": columns}

    def _reach(self) -> spine.Reach:
        """Where a spine may read files: the home and the data directories (the ingest plugin's service)."""
        app = self.app
        data_dirs = app.registry("services").get("data_dirs")
        roots = (app.home.root.resolve(), *(data_dirs.paths() if data_dirs else ()))
        return spine.Reach(base=app.config.project_dir, roots=roots)

    def build_training_set(self, job) -> dict[str, Any]:
        """The ``build_training_set`` job: a Parquet snapshot in the artifact store, recorded with a manifest."""
        app = self.app
        existing = records.training_set_of_job(app.catalog.db, job.id)
        if existing is not None:  # a retry after the snapshot was recorded: the work is done
            return _summary(existing)
        plan = self.plan(job.params)
        started = time.perf_counter()
        con = app.store.cursor()
        job.progress(0.05, "reading indexes")
        indexes, batches = [], {}
        for sel in plan["selections"]:
            with self._lock(sel.view.name):  # the index and the batches behind it, from one materialization
                indexes.append(self._index(con, sel.view, sel.version, sel.schema))
                batches[sel.view.name] = records.version(app.catalog.db, sel.view.name, sel.version)["batches"]
        job.progress(0.2, "joining")
        scratch = app.home.root / "tmp" / f"training-set-job-{job.id}.parquet"
        scratch.parent.mkdir(exist_ok=True)
        # Written straight into the artifact store and hashed as it is written: no second pass over the file.
        with app.artifacts.create() as out:
            try:
                rows = pit.write_training_set(con, plan["relation"], plan["spine_columns"], plan["event_time"],
                                              plan["selections"], indexes, out, scratch)
            except Exception as exc:
                raise BadRequest(f"building training set {plan['name']!r} failed: {offline.first_line(exc)}") \
                    from None
            job.progress(0.9, "storing the snapshot")
            sha = out.commit()
        # "hash" is the snapshot's sha256, its artifact name: a model that records it names its exact data.
        manifest = {
            "name": plan["name"], "row_count": int(rows), "hash": sha, "format": "parquet",
            "spine": {"source": plan["spine"], "event_time": plan["event_time"],
                      "columns": plan["spine_columns"]},
            "views": {s.view.name: {"version": s.version, "digest": s.view.digest(), "ttl_s": s.view.ttl_s,
                                    "features": s.features, "table": offline.table_name(s.view.name, s.version),
                                    "source": s.view.source, "batches": batches[s.view.name]}
                      for s in plan["selections"]},
            "columns": plan["columns"], "build_seconds": round(time.perf_counter() - started, 3),
        }
        rec = records.add_training_set(app.catalog.db, plan["name"], sha, manifest, job.id)
        result = _summary(rec)
        app.events.emit("training_set.built", subject=f"training_set:{rec['id']}", data=result)
        return result


def _summary(rec: dict) -> dict[str, Any]:
    return {"id": rec["id"], "name": rec["name"], "sha256": rec["sha256"], "rows": rec["manifest"]["row_count"]}


class TrainingSets:
    """The ``training_sets`` service: what the training plugin reads snapshots through."""

    name = "training_sets"

    def __init__(self, store: FeatureStore):
        self._store = store

    def get(self, id_or_name: int | str) -> dict[str, Any]:
        """``{"id", "path", "manifest"}``: ``path`` is the snapshot's Parquet file, checked against its hash.

        The manifest holds ``name``, ``row_count``, ``hash`` (the file's sha256), ``spine`` (source, event time,
        columns), ``views`` (per view: version, digest, ttl_s, features, source, and ``batches``: the ingest batches
        behind it as ``[first, last]`` id ranges, None for a source not ingested) and ``columns`` (column ->
        feature).
        """
        app = self._store.app
        rec = records.training_set(app.catalog.db, id_or_name)
        return {"id": rec["id"], "path": str(app.artifacts.verify(rec["sha256"])), "manifest": rec["manifest"]}


class FeatureIndexes:
    """The ``feature_indexes`` service: what retention prunes of the feature store's sorted-index files."""

    name = "feature_indexes"

    def __init__(self, store: FeatureStore):
        self._store = store

    def prune(self, before: float) -> tuple[int, int]:
        """Delete index files written before ``before`` that no current view version reads; (files, bytes).

        No lock is needed: a save in progress writes new files, which are younger than any cut-off."""
        store = self._store
        if store.indexes is None:
            return 0, 0
        return store.indexes.prune({name: act.version for name, act in store.views.items()}, before)


class FeatureStatistics:
    """The ``feature_statistics`` service: a view version's statistics, the reference for monitoring."""

    name = "feature_statistics"

    def __init__(self, store: FeatureStore):
        self._store = store

    def get(self, view: str, version: int | None = None) -> dict[str, Any] | None:
        """Statistics of the view's current version (or ``version``); None before its first materialization."""
        if version is None:
            version = self._store.active(view).version
        return records.version(self._store.app.catalog.db, view, version)["stats"]
