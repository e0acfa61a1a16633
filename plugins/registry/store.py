"""The model registry: models, numbered versions, aliases, an append-only audit log and the promotion gate.

Offered to other plugins as the ``model_registry`` service: training registers versions through it, serving
resolves ``NAME@ALIAS`` through it and follows ``model.alias_moved`` events to hot-swap.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from typing import Any

from appliance import BadRequest, Conflict, Migrations, NotFound

migrations = Migrations("registry")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
RESERVED = "latest"
GATE_KEYS = {"metric", "aliases", "min_delta", "higher_is_better"}


@migrations()
def m001_registry(db) -> None:
    db.execute("""create table registry_models (
        name text primary key, description text not null default '', tags text not null default '{}',
        created real not null)""")
    db.execute("""create table registry_versions (
        name text not null references registry_models(name), version integer not null, run_id integer,
        onnx_sha256 text not null, signature text not null, metrics text not null, holdout_sha256 text,
        lineage text not null, description text not null default '', tags text not null default '{}',
        created real not null, primary key (name, version))""")
    db.execute("""create table registry_aliases (
        name text not null, alias text not null, version integer not null, updated real not null,
        primary key (name, alias), foreign key (name, version) references registry_versions(name, version))""")
    db.execute("""create table registry_audit (
        id integer primary key autoincrement, time real not null, name text not null, action text not null,
        alias text, from_version integer, to_version integer, reason text not null default '',
        actor text not null default '')""")
    # The audit log is evidence: the database itself refuses to rewrite it.
    for op in ("update", "delete"):
        db.execute(f"create trigger registry_audit_no_{op} before {op} on registry_audit "
                   "begin select raise(abort, 'the registry audit log is append-only'); end")


@contextlib.contextmanager
def transaction(db):
    """``begin immediate`` takes the write lock first, so read-check-write (the gate) is atomic."""
    db.execute("begin immediate")
    try:
        yield
    except BaseException:
        db.execute("rollback")
        raise
    db.execute("commit")


def check_gates(config) -> dict[str, dict]:
    """The ``[registry.models.NAME.gate]`` tables, checked; raises ``config.error`` naming file, line and key."""
    section = config.section("registry")
    for key in section:
        if key not in ("models", "max_upload_mb"):
            raise config.error("unknown key; [registry] holds max_upload_mb and models.NAME.gate tables",
                               "registry", key)
    gates = {}
    for name, table in section.get("models", {}).items():
        if not isinstance(table, dict) or set(table) - {"gate"} or not isinstance(table.get("gate"), dict):
            raise config.error("expected a [registry.models.NAME.gate] table", "registry", "models", name)
        gate = table["gate"]
        keys = ("registry", "models", name, "gate")
        unknown = set(gate) - GATE_KEYS
        if unknown:
            raise config.error(f"unknown key(s) {', '.join(sorted(unknown))}; known: "
                               f"{', '.join(sorted(GATE_KEYS))}", *keys)
        if not isinstance(gate.get("metric"), str):
            raise config.error("required: the holdout metric a new version must beat the holder on",
                               *keys, "metric")
        aliases = gate.get("aliases")
        if aliases is not None and not (isinstance(aliases, list) and all(isinstance(a, str) for a in aliases)):
            raise config.error("expected a list of alias names", *keys, "aliases")
        delta = gate.get("min_delta", 0.0)
        if isinstance(delta, bool) or not isinstance(delta, int | float) or delta < 0:
            raise config.error("expected a number >= 0", *keys, "min_delta")
        metric = gate["metric"]
        higher = gate.get("higher_is_better")
        if higher is None:
            higher = not any(w in metric for w in ("loss", "rmse", "mae", "error"))
        gates[name] = {"metric": metric, "aliases": aliases, "min_delta": float(delta),
                       "higher_is_better": bool(higher)}
    return gates


def check_upload_limit(config, default_mb: int) -> int:
    """``[registry] max_upload_mb``, in bytes: the largest model upload (file and sample together)."""
    value = config.section("registry").get("max_upload_mb", default_mb)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise config.error("expected a number of megabytes > 0", "registry", "max_upload_mb")
    return int(value * 2**20)


class ModelRegistry:
    """The ``model_registry`` service. Thread-safe: every write is one SQLite transaction."""

    name = "model_registry"

    def __init__(self):
        self.app: Any = None
        self.gates: dict[str, dict] = {}
        self.max_upload_bytes = 0
        self._lock = threading.Lock()

    @property
    def db(self):
        return self.app.catalog.db

    # ------------------------------------------------------------------------------------------- writing

    def register_version(self, name: str, *, run_id: int | None, onnx_sha256: str, signature: dict,
                         metrics: dict, holdout_sha256: str | None, lineage: dict, description: str = "",
                         tags: dict | None = None) -> dict:
        """Add the next version of ``name`` (created on first use); returns the version record."""
        if not NAME.match(name):
            raise BadRequest(f"model name {name!r}: use letters, digits, '_', '.', '-' (it becomes a directory name)")
        self.app.artifacts.verify(onnx_sha256)
        now = time.time()
        with self._lock, transaction(self.db):
            self.db.execute("insert or ignore into registry_models (name, created) values (?, ?)", [name, now])
            version = self.db.execute("select coalesce(max(version), 0) + 1 from registry_versions where name = ?",
                                      [name]).fetchone()[0]
            self.db.execute(
                "insert into registry_versions (name, version, run_id, onnx_sha256, signature, metrics, "
                "holdout_sha256, lineage, description, tags, created) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [name, version, run_id, onnx_sha256, json.dumps(signature), json.dumps(metrics), holdout_sha256,
                 json.dumps(lineage), description, json.dumps(tags or {}), now])
            self._audit(name, "register", None, None, version, f"run {run_id}" if run_id else "", "registry")
        self.app.events.emit("model.registered", subject=f"model:{name}", data={
            "name": name, "version": version, "run_id": run_id, "onnx_sha256": onnx_sha256, "metrics": metrics})
        return self.version(name, version)

    def set_alias(self, name: str, alias: str, version: int, *, reason: str = "", actor: str = "",
                  action: str = "promote", gate: bool = True, policy: dict | None = None) -> dict:
        """Point ``alias`` at ``version``, atomically; the promotion gate may refuse (409), and a refusal is
        written to the audit log with the figures it compared.

        ``policy`` is a training spec's own gate: ``{"metric", "higher_is_better", "source"}``, and optionally
        ``holder_version`` and ``holder_score``, the holder scored on the candidate's holdout by the run.
        ``gate=False`` skips every gate (``--force``; rollback)."""
        if alias == RESERVED:
            raise BadRequest(f"'{RESERVED}' is reserved: it always means the newest version")
        if not ALIAS.match(alias):
            raise BadRequest(f"alias {alias!r}: start with a letter; then letters, digits, '_', '.', '-'")
        version = int(version)
        refusal = None
        with self._lock, transaction(self.db):
            candidate = self.version(name, version)
            row = self.db.execute("select version from registry_aliases where name = ? and alias = ?",
                                  [name, alias]).fetchone()
            holder = row[0] if row else None
            if holder == version:
                return {"name": name, "alias": alias, "from_version": holder, "to_version": version,
                        "moved": False}
            if gate and holder is not None:
                held = self.version(name, holder)
                refusal = ((self._policy_refusal(alias, candidate, held, policy) if policy else None)
                           or self._check_gate(name, alias, candidate, held))
            if refusal:  # the refusal is evidence too: recorded, and the alias left where it was
                self._audit(name, "refused", alias, holder, version, refusal, actor)
            else:
                self.db.execute("insert into registry_aliases (name, alias, version, updated) values (?, ?, ?, ?) "
                                "on conflict (name, alias) do update set version = excluded.version, "
                                "updated = excluded.updated", [name, alias, version, time.time()])
                self._audit(name, action, alias, holder, version, reason, actor)
        if refusal:
            self.app.events.emit("model.promotion_refused", subject=f"model:{name}", data={
                "name": name, "alias": alias, "holder": holder, "candidate": version, "reason": refusal})
            raise Conflict(refusal, title="Promotion refused")
        moved = {"name": name, "alias": alias, "from_version": holder, "to_version": version, "reason": reason}
        self.app.events.emit("model.alias_moved", subject=f"model:{name}", data=moved)
        return {**moved, "moved": True}

    def rollback(self, name: str, alias: str, *, reason: str = "", actor: str = "") -> dict:
        """Move ``alias`` back to the version it held before its latest move (no gate: this is the way back)."""
        last = self.db.execute("select from_version from registry_audit where name = ? and alias = ? "
                               "order by id desc limit 1", [name, alias]).fetchone()
        if last is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        if last[0] is None:
            raise Conflict(f"alias {alias!r} of {name!r} held no version before its latest move; nothing to roll "
                           "back to")
        return self.set_alias(name, alias, last[0], reason=reason, actor=actor, action="rollback", gate=False)

    def describe(self, name: str, version: int | None, *, description: str | None, tags: dict | None,
                 untag: list[str] | None = None) -> None:
        """Set the description of a model, or of one version; merge ``tags`` into its tags, then drop the keys in
        ``untag``."""
        table, where, args = ("registry_models", "name = ?", [name]) if version is None else \
            ("registry_versions", "name = ? and version = ?", [name, int(version)])
        with self._lock, transaction(self.db):
            current = self.model(name) if version is None else self.version(name, int(version))
            if description is not None:
                self.db.execute(f"update {table} set description = ? where {where}", [description, *args])
            if tags or untag:
                merged = {k: v for k, v in {**current["tags"], **(tags or {})}.items() if k not in (untag or ())}
                self.db.execute(f"update {table} set tags = ? where {where}", [json.dumps(merged), *args])
        self.app.events.emit("model.described", subject=f"model:{name}", data={
            "name": name, "version": version, "tags": tags or {}, "untagged": untag or [],
            "description": description})

    def _policy_refusal(self, alias: str, candidate: dict, holder: dict, policy: dict) -> str | None:
        """A spec's gate: the candidate must beat the holder on the spec's metric, scored on the same rows
        when the run could score the holder on its holdout; else on each one's own."""
        metric = policy["metric"]
        new = candidate["metrics"].get(metric)
        if policy.get("holder_version") == holder["version"] and policy.get("holder_score") is not None:
            old, rows = policy["holder_score"], "both on the candidate's holdout"
        else:
            old = holder["metrics"].get(metric)
            rows = ("on the same holdout" if candidate["holdout_sha256"] == holder["holdout_sha256"]
                    else "each on its own holdout")
        if new is None or old is None:
            return (f"promotion gate ({policy['source']}): metric {metric!r} is missing from version "
                    f"{candidate['version'] if new is None else holder['version']}")
        gain = new - old if policy["higher_is_better"] else old - new
        if gain > 0:  # NaN never beats anything
            return None
        return (f"promotion gate ({policy['source']}): version {candidate['version']} has {metric} {new:.6g}, the "
                f"holder of {alias!r} (version {holder['version']}) has {old:.6g} ({rows}); a new version must "
                f"beat it (--force promotes anyway)")

    def _check_gate(self, name: str, alias: str, candidate: dict, holder: dict) -> str | None:
        """The refusal of the model's configured gate ([registry.models.NAME.gate]), or None."""
        gate = self.gates.get(name)
        if gate is None or (gate["aliases"] is not None and alias not in gate["aliases"]):
            return None
        metric = gate["metric"]
        if candidate["holdout_sha256"] != holder["holdout_sha256"]:
            return (f"promotion gate: version {candidate['version']} and the holder of {alias!r} (version "
                    f"{holder['version']}) were evaluated on different holdouts; the gate compares only on the same "
                    "rows")
        new, old = candidate["metrics"].get(metric), holder["metrics"].get(metric)
        if new is None or old is None:
            return (f"promotion gate: metric {metric!r} is missing from version "
                    f"{candidate['version'] if new is None else holder['version']}")
        gain = new - old if gate["higher_is_better"] else old - new
        if not gain > gate["min_delta"]:  # NaN never beats anything
            return (f"promotion gate: version {candidate['version']} has {metric} {new:.6g}, the holder of "
                    f"{alias!r} (version {holder['version']}) has {old:.6g}; a new version must beat it by "
                    f"more than {gate['min_delta']:g}")
        return None

    def _audit(self, name, action, alias, from_version, to_version, reason, actor) -> None:
        self.db.execute("insert into registry_audit (time, name, action, alias, from_version, to_version, reason, "
                        "actor) values (?, ?, ?, ?, ?, ?, ?, ?)",
                        [time.time(), name, action, alias, from_version, to_version, reason or "", actor or ""])

    # ------------------------------------------------------------------------------------------- reading

    def resolve(self, name: str, ref: str | int) -> dict:
        """``ref`` is a version number, ``latest`` or an alias; the ONNX path is verified against its hash."""
        version = self._version_number(name, ref)
        v = self.version(name, version)
        return {"name": name, "version": version, "onnx_sha256": v["onnx_sha256"],
                "onnx_path": str(self.app.artifacts.verify(v["onnx_sha256"])), "signature": v["signature"],
                "metrics": v["metrics"], "aliases": v["aliases"]}

    def _version_number(self, name: str, ref: str | int) -> int:
        ref = str(ref)
        if ref.isdigit():
            return int(ref)
        if ref == RESERVED:
            row = self.db.execute("select max(version) from registry_versions where name = ?", [name]).fetchone()
        else:
            row = self.db.execute("select version from registry_aliases where name = ? and alias = ?",
                                  [name, ref]).fetchone()
        if not row or row[0] is None:
            self.model(name)
            raise NotFound(f"model {name!r} has no alias {ref!r}")
        return row[0]

    def version(self, name: str, version: int) -> dict:
        rows = list(self.db.query("select * from registry_versions where name = ? and version = ?",
                                  [name, int(version)]))
        if not rows:
            self.model(name)
            raise NotFound(f"model {name!r} has no version {version}")
        out = dict(rows[0])
        for key in ("signature", "metrics", "lineage", "tags"):
            out[key] = json.loads(out[key])
        out["aliases"] = [r[0] for r in self.db.execute(
            "select alias from registry_aliases where name = ? and version = ? order by alias", [name, int(version)])]
        return out

    def model(self, name: str) -> dict:
        rows = list(self.db.query("select * from registry_models where name = ?", [name]))
        if not rows:
            raise NotFound(f"no model {name!r}")
        out = dict(rows[0])
        out["tags"] = json.loads(out["tags"])
        out["aliases"] = {r[0]: r[1] for r in self.db.execute(
            "select alias, version from registry_aliases where name = ? order by alias", [name])}
        latest = self.db.execute("select max(version) from registry_versions where name = ?", [name]).fetchone()[0]
        out["latest"] = latest
        return out

    def models(self) -> list[dict]:
        return [self.model(r["name"]) for r in self.db.query("select name from registry_models order by name")]

    def versions(self, name: str) -> list[dict]:
        self.model(name)
        return [self.version(name, r[0]) for r in self.db.execute(
            "select version from registry_versions where name = ? order by version", [name])]

    def gate(self, name: str, alias: str) -> dict | None:
        """The configured gate a move of ``alias`` of ``name`` must pass (``[registry.models.NAME.gate]``):
        ``{"metric", "min_delta", "higher_is_better"}``, or None when none applies (a spec's own gate then asks
        only that a new version beat the holder)."""
        gate = self.gates.get(name)
        if gate is None or (gate["aliases"] is not None and alias not in gate["aliases"]):
            return None
        return {k: gate[k] for k in ("metric", "min_delta", "higher_is_better")}

    def versions_of_run(self, run_id: int) -> list[tuple[str, int]]:
        """The registered versions a run trained, as (model, version)."""
        return [tuple(r) for r in self.db.execute(
            "select name, version from registry_versions where run_id = ? order by name, version", [int(run_id)])]

    def runs_in_lineage(self) -> set[int]:
        """Every run a registered version names: what retention must keep whole."""
        return {r[0] for r in self.db.execute("select distinct run_id from registry_versions where run_id is not null")}

    def audit(self, name: str, limit: int = 1000) -> list[dict]:
        return list(self.db.query("select * from registry_audit where name = ? order by id desc limit ?",
                                  [name, limit]))
