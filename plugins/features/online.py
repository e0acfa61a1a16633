"""The online store: each view's newest values per entity, in memory, for the serving path.

Registered as the ``online_features`` service. The lookup path is plain dict work: a feature list is compiled
once into a plan (which view, which positions), and each view's values live in an immutable snapshot that a
refresh replaces with one assignment, so readers on any thread never lock and never see half a refresh.
A value older than the view's TTL reads as None, as it would in a training set built now.
"""

from __future__ import annotations

import numbers
import threading
import time
from typing import Any

from appliance import ApplianceError, BadRequest

from .pit import parse_ref


class ViewValues:
    """One view version's newest values: ``rows[key] = (feature values..., event epoch)``. Never mutated."""

    __slots__ = ("view", "version", "keys", "single", "positions", "rows", "ttl_s", "newest", "key_types")

    def __init__(self, view: str, version: int, keys: list[str], features: list[str], rows: dict,
                 ttl_s: int | None, key_types: dict[str, str]):
        self.view, self.version, self.ttl_s = view, version, ttl_s
        self.keys = tuple(keys)
        self.single = len(keys) == 1
        self.positions = {f: i for i, f in enumerate(features)}
        self.rows = rows
        self.newest = max((r[-1] for r in rows.values()), default=None)
        self.key_types = key_types


class OnlineStore:
    name = "online_features"

    def __init__(self) -> None:
        self._views: dict[str, ViewValues] = {}
        #: Views whose values could not be loaded, and the error a lookup of them gets (a damaged store: 503).
        self._unavailable: dict[str, ApplianceError] = {}
        self._plans: dict[tuple[str, ...], list[tuple[str, int, list[tuple[str, int]]]]] = {}
        self._write = threading.Lock()

    # ------------------------------------------------------------------------------------------- lookups

    def get(self, entity_keys: dict[str, Any], features: list[str]) -> dict[str, Any]:
        """Values of ``features`` (``"view:feature"``) for one entity; None where there is no fresh value."""
        return self._lookup(entity_keys, self._plan(features), time.time())

    def get_many(self, entities: list[dict[str, Any]], features: list[str]) -> list[dict[str, Any]]:
        """``get`` for many entities at once, sharing the plan and the clock."""
        plan, now = self._plan(features), time.time()
        return [self._lookup(keys, plan, now) for keys in entities]

    def explain(self, entity_keys: dict[str, Any], features: list[str]) -> dict[str, dict]:
        """For each feature: its value, the event time it is from, and whether it is ``fresh``, ``expired`` (older
        than the view's TTL: it reads as None) or ``missing`` (no value for this entity): what a person asks when a
        lookup comes back empty."""
        out, now = {}, time.time()
        for name, _, items in self._plan(features):
            values = self._views[name]
            key = entity_keys.get(values.keys[0]) if values.single else tuple(entity_keys.get(k) for k in values.keys)
            row = values.rows.get(key)
            for ref, pos in items:
                if row is None:
                    out[ref] = {"value": None, "state": "missing", "event_time": None}
                else:
                    expired = values.ttl_s is not None and now - row[-1] > values.ttl_s
                    out[ref] = {"value": None if expired else row[pos], "state": "expired" if expired else "fresh",
                                "event_time": row[-1], "ttl_s": values.ttl_s}
        return out

    def freshness(self) -> dict[str, float | None]:
        """Age in seconds of each view's newest value (None for a view with no values yet)."""
        now = time.time()
        return {name: None if v.newest is None else now - v.newest for name, v in self._views.items()}

    def _lookup(self, entity_keys: dict[str, Any], plan, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        views = self._views
        for name, version, items in plan:
            values = views[name]
            if values.version != version:  # a new version replaced the one this plan was compiled for
                self._plans.clear()
                return self._lookup(entity_keys, self._plan([ref for _, _, its in plan for ref, _ in its]), now)
            try:
                key = (entity_keys[values.keys[0]] if values.single
                       else tuple(entity_keys[k] for k in values.keys))
                row = values.rows.get(key)
            except KeyError:
                missing = [k for k in values.keys if k not in entity_keys]
                raise BadRequest(f"feature view {name!r} needs entity key(s) {', '.join(map(repr, missing))}",
                                 title="Missing entity key") from None
            except TypeError:
                raise BadRequest(f"entity keys must be an object of key: value (numbers or text), got "
                                 f"{entity_keys!r}") from None
            if row is None:
                self._check_key(values, entity_keys)
            elif values.ttl_s is not None and now - row[-1] > values.ttl_s:
                row = None
            for ref, pos in items:
                out[ref] = None if row is None else row[pos]
        return out

    def _check_key(self, values: ViewValues, entity_keys: dict[str, Any]) -> None:
        """A miss is either an unknown entity (None values) or a key of the wrong type (an error)."""
        for k in values.keys:
            want, got = values.key_types.get(k), entity_keys[k]
            fits = isinstance(got, numbers.Integral) if want == "int" else type(got).__name__ == want
            if want is not None and not fits:
                raise BadRequest(f"entity key {k!r} of feature view {values.view!r} is {want}, got "
                                 f"{type(got).__name__} {got!r}", title="Key type mismatch")

    def _plan(self, features: list[str]):
        ident = tuple(features)
        plan = self._plans.get(ident)
        if plan is None:
            if len(self._plans) > 1024:  # callers passing ever-new feature lists must not grow this forever
                self._plans.clear()
            plan = self._plans[ident] = self._compile(ident)
        return plan

    def _compile(self, features: tuple[str, ...]):
        groups: dict[str, list[tuple[str, int]]] = {}
        for ref in features:
            view, version, feature = parse_ref(ref)
            values = self._views.get(view)
            if values is None and (why := self._unavailable.get(view)):
                raise ApplianceError(why.message, title=why.title, status=why.status)
            if values is None:
                raise BadRequest(f"feature view {view!r} has no online values (unknown, or not materialized yet)",
                                 title="Unknown feature")
            if version is not None and version != values.version:
                raise BadRequest(f"feature view {view!r} serves version {values.version} online, not {version}",
                                 title="Unknown feature")
            if feature not in values.positions:
                raise BadRequest(f"feature view {view!r} has no feature {feature!r} (features: "
                                 f"{', '.join(values.positions)})", title="Unknown feature")
            groups.setdefault(view, []).append((ref, values.positions[feature]))
        return [(view, self._views[view].version, items) for view, items in groups.items()]

    # ------------------------------------------------------------------------------------------- refresh

    def features(self) -> dict[str, list[str]]:
        return {name: list(v.positions) for name, v in self._views.items()}

    def load(self, view: str, version: int, keys: list[str], features: list[str], table, ttl_s: int | None,
             *, merge: bool) -> int:
        """Take the newest rows per entity from an Arrow table (keys, features, ``_epoch``); returns entities."""
        columns = {name: table.column(name).to_pylist() for name in [*keys, *features, "_epoch"]}
        key_list = columns[keys[0]] if len(keys) == 1 else list(zip(*(columns[k] for k in keys), strict=True))
        new_rows = dict(zip(key_list, zip(*(columns[f] for f in [*features, "_epoch"]), strict=True), strict=True))
        key_types = {k: type(next((x for x in columns[k] if x is not None), None)).__name__ for k in keys}
        with self._write:
            old = self._views.get(view)
            if merge and old is not None and old.version == version:
                rows = dict(old.rows)
                rows.update(new_rows)
                key_types = {**old.key_types, **{k: t for k, t in key_types.items() if t != "NoneType"}}
            else:
                rows = new_rows
            self._views[view] = ViewValues(view, version, keys, features, rows, ttl_s,
                                           {k: t for k, t in key_types.items() if t != "NoneType"})
            self._unavailable.pop(view, None)
            if old is not None and old.version != version:
                self._plans.clear()
        return len(rows)

    def unavailable(self, view: str, error: ApplianceError) -> None:
        """The view's values could not be loaded: its lookups raise ``error`` until a load succeeds."""
        self._unavailable[view] = error

    def retain(self, views: set[str]) -> None:
        """Drop the values of views the project no longer declares."""
        with self._write:
            for name in set(self._views) - views:
                del self._views[name]
            self._plans.clear()

    def key_types(self, view: str) -> dict[str, str]:
        """The Python type name of each entity key of the view's online values."""
        values = self._views.get(view)
        return {} if values is None else dict(values.key_types)

    def version(self, view: str) -> int | None:
        values = self._views.get(view)
        return None if values is None else values.version
