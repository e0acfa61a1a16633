"""Control API routes: sources, their quarantine, ingest jobs, and the review of held batches."""

from __future__ import annotations

from appliance import BadRequest, Reply, Route

from . import engine, ledger
from .service import service
from .sql import ident

STATES = ("accepted", "held", "approved", "rejected")


def _schemas_with(cur, name: str) -> set[str]:
    return {r[0] for r in cur.execute("select table_schema from information_schema.tables where table_name = ? "
                                      "and table_schema in ('raw', 'quarantine')", [name]).fetchall()}


def _counts(cur, name: str) -> dict:
    tables = _schemas_with(cur, name)
    out = {"raw": 0, "quarantine": 0}
    if "raw" in tables:
        out["raw"] = cur.execute(f"select count(*) from raw.{ident(name)}").fetchall()[0][0]
    if "quarantine" in tables:  # a rejected batch's rows were never taken, so neither was its quarantine
        out["quarantine"] = cur.execute(
            f"select count(*) from quarantine.{ident(name)} where _batch_id not in (select id from ingest.batches "
            f"where source = ? and state = 'rejected')", [name]).fetchall()[0][0]
    states = dict(cur.execute("select state, count(*) from ingest.batches where source = ? group by state",
                              [name]).fetchall())
    return {"rows": out["raw"], "quarantined_rows": out["quarantine"], "batches": sum(states.values()),
            "held": states.get("held", 0)}


def list_sources(req) -> list:
    cur = req.app.store.cursor()
    return [{**src.to_dict(), **_counts(cur, name)} for name, src in sorted(service.settings.sources.items())]


def get_source(req) -> dict:
    src = service.source(req.path_params["name"])
    cur = req.app.store.cursor()
    return {**src.to_dict(), **_counts(cur, src.name),
            "table_columns": engine.table_columns(cur, "raw", src.name)}


def ingest(req) -> Reply:
    src = service.source(req.path_params["name"])
    body = req.json_object()
    unknown = set(body) - {"files"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; expected 'files'")
    files = body.get("files") or None
    service.files(src, files)  # refuse a bad path now, with a 400, rather than in a failed job
    job = req.app.jobs.submit("ingest", {"source": src.name, **({"files": files} if files else {})}, origin="api")
    return Reply(job, status=202)


def quarantine(req) -> list:
    src = service.source(req.path_params["name"])
    cur = req.app.store.cursor()
    limit = req.int_query("limit", 100, minimum=1, maximum=100_000)
    batch = req.int_query("batch")
    if "quarantine" not in _schemas_with(cur, src.name):
        return []
    where, params = ("where _batch_id = ?", [batch]) if batch is not None else ("", [])
    fields = ("batch_id", "file", "row", "column", "rule", "expected", "got", "record")
    rows = cur.execute(f"select _batch_id, _file, _row, _column, _rule, _expected, _got, _record from "
                       f"quarantine.{ident(src.name)} {where} order by _batch_id, _row limit {limit}",
                       params).fetchall()
    return [dict(zip(fields, r, strict=True)) for r in rows]


def rows(req) -> dict:
    """A page of the source's raw table, oldest batch first: what downstream readers see."""
    src = service.source(req.path_params["name"])
    cur = req.app.store.cursor()
    limit = req.int_query("limit", 100, minimum=1, maximum=10_000)
    offset = req.int_query("offset", 0)
    columns = [n for n, _ in engine.table_columns(cur, "raw", src.name)]
    if not columns:
        return {"columns": [], "rows": []}
    data = cur.execute(f"select * from raw.{ident(src.name)} order by _batch_id limit {limit} offset {offset}"
                       ).fetchall()
    return {"columns": [*columns, "_batch_id"], "rows": [list(r) for r in data]}


def list_batches(req) -> list:
    clauses, params = [], []
    if source := req.query.get("source"):
        clauses.append("source = ?")
        params.append(source)
    if state := req.query.get("state"):
        if state not in STATES:
            raise BadRequest(f"unknown batch state {state!r}; expected one of {', '.join(STATES)}")
        clauses.append("state = ?")
        params.append(state)
    where = ("where " + " and ".join(clauses)) if clauses else ""
    return ledger.batch_records(req.app.store.cursor(), where, params,
                                limit=req.int_query("limit", 100, minimum=1, maximum=100_000))


def get_batch(req) -> dict:
    return ledger.batch_record(req.app.store.cursor(), req.int_param("id"))


def approve(req) -> dict:
    return service.decide(req.app, req.int_param("id"), approve=True)


def reject(req) -> dict:
    return service.decide(req.app, req.int_param("id"), approve=False)


ROUTES = [
    Route("GET", "/sources", list_sources, "Sources declared in appliance.toml, with row and batch counts"),
    Route("GET", "/sources/{name}", get_source, "One source: its contract, table and counts"),
    Route("POST", "/sources/{name}/ingest", ingest, "Queue an ingest job (body: {files: [...]}, optional)"),
    Route("GET", "/sources/{name}/quarantine", quarantine, "Quarantined rows with the rule each failed"),
    Route("GET", "/sources/{name}/rows", rows, "A page of the source's raw table (query: limit, offset)"),
    Route("GET", "/batches", list_batches, "Batches, newest first (query: source, state, limit)"),
    Route("GET", "/batches/{id}", get_batch, "One batch: file, content hash, counts, reasons"),
    Route("POST", "/batches/{id}/approve", approve, "Merge a held batch into its raw table"),
    Route("POST", "/batches/{id}/reject", reject, "Drop a held batch"),
]
