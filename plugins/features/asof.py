"""A feature's value for one entity as of a past time, read from the offline table: what ``features get --at``
shows, with the same TTL rule a training set built at that time applies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from appliance import BadRequest

from .offline import fetch, q, table_name
from .pit import parse_ref


def parse_time(text: Any) -> dt.datetime:
    """An ISO 8601 time (``2013-01-01T10:00``, ``2013-01-01 10:00:00``); a zone, if given, is taken to UTC."""
    if not isinstance(text, str):
        raise BadRequest(f"'at' must be an ISO 8601 time such as 2013-01-01T10:00:00, got {text!r}")
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"'at' must be an ISO 8601 time such as 2013-01-01T10:00:00, got {text!r}") from None
    return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when


def explain_at(store, con, entity: dict[str, Any], features: list[str], at: dt.datetime) -> dict[str, dict]:
    """Like ``OnlineStore.explain``, as of ``at``: the newest row at or before it, expired past the view's TTL."""
    by_view: dict[str, list[tuple[str, str]]] = {}
    for ref in features:
        view, _, feature = parse_ref(ref)
        by_view.setdefault(view, []).append((ref, feature))
    out = {}
    for name, refs in by_view.items():
        view, version, schema = store.resolve(name, None)
        missing = [k for k in view.join_keys if k not in entity]
        if missing:
            raise BadRequest(f"feature view {name!r} needs entity key(s) {', '.join(map(repr, missing))}",
                             title="Missing entity key")
        where = " and ".join(f"{q(k)} = cast(? as {schema.columns[k]})" for k in view.join_keys)
        cols = ", ".join(q(f) for _, f in refs)
        rows = fetch(con, f"select {q(view.event_time)}, {cols} from {table_name(name, version)} where {where} "
                          f"and {q(view.event_time)} <= ? order by {q(view.event_time)} desc limit 1",
                     [*(str(entity[k]) for k in view.join_keys), at])
        for i, (ref, _) in enumerate(refs):
            if not rows:
                out[ref] = {"value": None, "state": "missing", "event_time": None}
                continue
            ev = rows[0][0]
            ev_dt = ev if isinstance(ev, dt.datetime) else dt.datetime.combine(ev, dt.time())
            expired = view.ttl_s is not None and (at - ev_dt).total_seconds() > view.ttl_s
            out[ref] = {"value": None if expired else rows[0][1 + i], "state": "expired" if expired else "fresh",
                        "event_time": str(ev), "ttl_s": view.ttl_s}
    return out
