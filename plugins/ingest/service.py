"""The ingest plugin's state in the daemon: the applied settings, a lock per source, and the watcher."""

from __future__ import annotations

import fnmatch
import logging
import threading
from pathlib import Path

from appliance.errors import ApplianceError, BadRequest, NotFound

from . import engine, ledger
from .report import quarantine_lines
from .settings import Settings, confine, parse

log = logging.getLogger("appliance.ingest")


class IngestService:
    def __init__(self):
        self.settings = Settings()
        self.app = None
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        #: (source, path) -> (size, mtime_ns) seen at the last poll; a file is taken once it stops changing.
        self._seen: dict[tuple[str, Path], tuple[int, int]] = {}
        self._submitted: set[tuple[str, Path, int, int]] = set()

    # ----------------------------------------------------------------------------------------------- settings

    def configure(self, app, config) -> None:
        self.settings = parse(config, dict(app.registry("sources").items()))

    def source(self, name: str):
        src = self.settings.sources.get(name)
        if src is None:
            known = ", ".join(sorted(self.settings.sources)) or "none are declared"
            raise NotFound(f"no source {name!r}; sources: {known}")
        return src

    def kind(self, app, src):
        kind = app.registry("sources").get(src.kind)
        if kind is None:
            raise ApplianceError(f"source {src.name!r} is of kind {src.kind!r}, which no loaded plugin provides")
        return kind

    def lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def files(self, src, requested: list | None) -> list[Path]:
        """The files to ingest: those requested (each confined to the data dirs) or the source's own."""
        if requested:
            if not isinstance(requested, list) or not all(isinstance(f, str) and f for f in requested):
                raise BadRequest(f"files must be a list of paths, got {requested!r}")
            paths = [confine(self.settings, f) for f in requested]
            for f, p in zip(requested, paths, strict=True):
                if not p.is_file():
                    raise BadRequest(f"{f}: no such file")
            return paths
        base = self.settings.project_dir or Path.cwd()
        if src.path:
            found = [src.path]
        elif src.glob:
            found = sorted(base.glob(src.glob))
        else:
            found = self.watched(src)
        # A glob can reach through a symlink; every file is confined again after resolving it.
        return [confine(self.settings, p) for p in found if p.is_file()]

    def watched(self, src) -> list[Path]:
        if not src.watch or not src.watch.is_dir():
            return []
        return sorted(p for p in src.watch.iterdir()
                      if p.is_file() and not p.name.startswith(".") and fnmatch.fnmatch(p.name, src.pattern))

    # ----------------------------------------------------------------------------------------------- the job

    def run_job(self, job) -> dict:
        app = job.app
        name = job.params.get("source")
        if not isinstance(name, str):
            raise BadRequest("param 'source' is required: the name of a source in appliance.toml")
        src = self.source(name)
        kind = self.kind(app, src)
        paths = self.files(src, job.params.get("files"))
        results, errors = [], []
        for i, path in enumerate(paths):
            job.progress(i / max(1, len(paths)), f"file {i + 1} of {len(paths)}")
            with self.lock(name):
                try:
                    result = engine.Batch(app, self.settings, src, kind, path, job).run()
                except ApplianceError as exc:
                    job.log(exc.message)
                    errors.append(exc.message)
                    continue
            results.append(result)
            job.log(f"{result['file']}: {result['status']} " + (
                result.get("message") or f"{result['accepted']} accepted, {result['quarantined']} quarantined"))
            for line in quarantine_lines(result):
                job.log(f"  {line}")
            if result["status"] != "duplicate":
                self.announce(app, src.name, result)
        if errors:
            raise engine.IngestError("; ".join(errors) + (f" ({len(results)} other file(s) done)" if results else ""))
        return {"source": name, "batches": results}

    def announce(self, app, source: str, r: dict) -> None:
        held = r["status"] == "held"
        app.events.emit("ingest.batch", subject=f"source:{source}", data={
            "source": source, "batch_id": r["batch_id"], "file": r["file"], "state": r["status"],
            "rows_in": r["rows_in"], "accepted": 0 if held else r["accepted"], "quarantined": r["quarantined"],
            "quarantine_rules": r.get("quarantine_rules", []), "held": r["accepted"] if held else 0})
        if held:
            app.events.emit("ingest.held", subject=f"batch:{r['batch_id']}", data={
                "source": source, "batch_id": r["batch_id"], "file": r["file"], "reasons": r["reasons"]})

    def decide(self, app, batch_id: int, approve: bool) -> dict:
        source = ledger.batch_record(app.store.cursor(), batch_id)["source"]
        with self.lock(source):
            record = ledger.decide(app, batch_id, approve)
        app.events.emit("ingest.approved" if approve else "ingest.rejected", subject=f"batch:{batch_id}",
                        data={"source": source, "batch_id": batch_id, "rows": record["accepted"]})
        return record

    # ----------------------------------------------------------------------------------------------- watching

    def start(self, app) -> None:
        self.app = app
        engine.setup(app.store.cursor())
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, args=(app,), name="ingest-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher:
            self._watcher.join(5)

    def _watch(self, app) -> None:
        while not (self._stop.wait(self.settings.poll_seconds) or app.stopping.is_set()):
            try:
                self.poll(app)
            except Exception:
                log.exception("watching for new files failed")

    def poll(self, app) -> None:
        """Submit an ingest job for each watched file that stopped changing since the last poll."""
        cur = app.store.cursor()
        for src in list(self.settings.sources.values()):
            for path in self.watched(src):
                st = path.stat()
                sig = (st.st_size, st.st_mtime_ns)
                key = (src.name, path)
                stable, self._seen[key] = self._seen.get(key) == sig, sig
                if not stable or (src.name, path, *sig) in self._submitted:
                    continue
                self._submitted.add((src.name, path, *sig))
                rel = str(path.relative_to(self.settings.project_dir)) if self.settings.project_dir else str(path)
                known = cur.execute("select 1 from ingest.batches where source = ? and file = ? and size = ? and "
                                    "mtime = ?", [src.name, rel, st.st_size, st.st_mtime]).fetchall()
                if not known:
                    app.jobs.submit("ingest", {"source": src.name, "files": [rel]}, origin="watch")


class DataDirs:
    """The ``data_dirs`` service: the directories the project lets the box read files from (``[ingest]
    data_dirs``), resolved. Other plugins confine the paths a request names to these (and the home)."""

    name = "data_dirs"

    def __init__(self, ingest: IngestService):
        self._ingest = ingest

    def paths(self) -> tuple[Path, ...]:
        return self._ingest.settings.data_dirs


class IngestBatches:
    """The ``ingest_batches`` service: which batches' rows a raw table holds, and their ledger records (file,
    content hash, rows). The feature store records them at materialization, so a model's lineage reaches the
    files behind it."""

    name = "ingest_batches"

    def __init__(self, ingest: IngestService):
        self._ingest = ingest

    def behind(self, cur, table: str) -> list[list[int]] | None:
        """``[first, last]`` id ranges of the batches in ``table`` (``raw.SOURCE``) now, read on ``cur``, inside
        the caller's transaction; None for a table that is not a source's."""
        return ledger.behind(cur, table)

    def records(self, ranges: list[list[int]]) -> list[dict]:
        """The ledger records of the batches in ``ranges``, oldest first."""
        return ledger.batches_in(self._ingest.app.store.cursor(), ranges)


service = IngestService()
