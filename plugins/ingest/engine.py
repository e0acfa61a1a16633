"""One file of a source becomes one batch, in one DuckDB transaction: nothing bad gets in, nothing good is lost.

Read with explicit types, check every row against the source's contract, move failing rows to
``quarantine.NAME`` (file, row, column, rule, expected, got), judge the batch (tolerance, null fractions, the
poisoning guard), then commit the rows, the quarantine, the profile and the ledger entry together: a daemon
killed half-way leaves nothing of the file behind, and the same file again (same content hash) is a no-op.

Rows are numbered from 1 in the file, header excluded. For CSV the numbers of records the reader rejected come
from the line DuckDB reports, so in a file whose quoted values hold newlines they count lines, not records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from pathlib import Path

import blake3

from appliance.errors import ApplianceError

from . import guard
from .kinds import read_expression
from .sql import ident, literal

log = logging.getLogger("appliance.ingest")

DDL = [
    "create schema if not exists raw",
    "create schema if not exists quarantine",
    "create schema if not exists staging",
    "create schema if not exists ingest",
    "create sequence if not exists ingest.batch_ids",
    """create table if not exists ingest.batches (id BIGINT, source VARCHAR, file VARCHAR, content_hash VARCHAR,
        size BIGINT, mtime DOUBLE, time DOUBLE, state VARCHAR, rows_in BIGINT, accepted BIGINT,
        quarantined BIGINT, reasons VARCHAR, psi VARCHAR, label_rate DOUBLE, job_id BIGINT, decided DOUBLE)""",
    "create table if not exists ingest.profiles (batch_id BIGINT, column_name VARCHAR, bucket VARCHAR, n BIGINT)",
    "create table if not exists ingest.bins (source VARCHAR, column_name VARCHAR, kind VARCHAR, edges VARCHAR)",
]
QUARANTINE_COLUMNS = ("_batch_id BIGINT, _file VARCHAR, _row BIGINT, _column VARCHAR, _rule VARCHAR, "
                      "_expected VARCHAR, _got VARCHAR, _record VARCHAR")
#: Files at least this big are hashed while DuckDB reads them, instead of before.
HASH_ALONGSIDE_BYTES = 32 << 20
#: Free space a load leaves beside its estimate: the catalog's record of the batch, the WAL, DuckDB's metadata.
ROOM_BYTES = 8 << 20
VISIBLE = ("accepted", "approved")
INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
#: The widest key range counted with a bitmap: 2^27 bits, 16 MiB per DuckDB thread.
BITMAP_MAX = 1 << 27
#: Allowed-value lists up to this long are checked as equalities.
SHORT_LIST = 16
#: Up to this many row rules, each is looked for in a query of its own (see ``Batch._bad``).
SEPARATE_CHECKS = 64
#: Text that files commonly use for a missing value; a cast failing on one of these gets a hint.
MISSING_MARKERS = {"na", "n/a", "nan", "null", "none", "nil", "-", "?", ".", "#n/a", ""}


class IngestError(ApplianceError):
    default_title = "Ingest refused"


def setup(cur) -> None:
    for stmt in DDL:
        cur.execute(stmt).fetchall()
    legacy = cur.execute("select 1 from information_schema.columns where table_schema = 'ingest' and "
                         "table_name = 'batches' and column_name = 'sha256'").fetchall()
    if legacy:  # a ledger written before the hash was named with its algorithm: same rows, prefixed values
        cur.execute("begin").fetchall()
        try:
            cur.execute("alter table ingest.batches rename column sha256 to content_hash").fetchall()
            cur.execute("update ingest.batches set content_hash = 'sha256:' || content_hash "
                        "where content_hash not like '%:%'").fetchall()
        except BaseException:
            cur.execute("rollback").fetchall()
            raise
        cur.execute("commit").fetchall()


def content_hash(path: Path, algorithm: str = "blake3") -> str:
    """``ALGORITHM:HEX`` of the file's bytes. BLAKE3 by default: it runs at GB/s (SIMD) where sha256 manages
    ~200 MB/s on CPUs without SHA instructions, and ingest hashes every byte beside DuckDB's read of them."""
    if algorithm == "blake3":  # mapped, not read: no copy of every byte through Python (half the time)
        return f"blake3:{blake3.blake3().update_mmap(str(path)).hexdigest()}"
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


def staging_table(source: str, batch_id: int) -> str:
    return f"staging.{ident(f'{source}__batch_{batch_id}')}"


def table_columns(cur, schema: str, table: str) -> list[tuple[str, str]]:
    return [(n, t) for n, t in cur.execute(
        "select column_name, data_type from information_schema.columns where table_schema = ? and "
        "table_name = ? order by ordinal_position", [schema, table]).fetchall() if not n.startswith("_")]


def _checks(source, columns: list[tuple[str, str]], src: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    """(condition, column, rule, expected, got) for every row rule, in the order they are reported."""
    rules = {c.name: c for c in source.columns}
    out = []
    for name, typ in columns:
        col, got = ident(name), f"{ident(name)}::VARCHAR"
        if typ.upper() == "VARCHAR":  # a NUL byte is shown escaped wherever a bad value is reported
            got = f"replace({col}, chr(0), '\\0')"
        if name in src:
            out.append((f"{src[name]} IS NOT NULL AND {col} IS NULL", name, "type", typ, f"{src[name]}::VARCHAR"))
        rule = rules.get(name)
        listed = rule is not None and rule.allowed and not any("\0" in str(v) for v in rule.allowed)
        if typ.upper() == "VARCHAR" and not listed:  # an allowed list already refuses a value with a NUL in it
            # NUL bytes break most tools downstream; DuckDB would store them, so the contract refuses them.
            out.append((f"strpos({col}, chr(0)) > 0", name, "nul_byte", "text without NUL bytes", got))
        if rule is None:
            continue
        if rule.not_null:
            out.append((f"{col} IS NULL", name, "not_null", "a value", "'null'"))
        if rule.min is not None:
            out.append((f"{col} < {literal(rule.min)}", name, "min", f">= {rule.min}", got))
        if rule.max is not None:
            out.append((f"{col} > {literal(rule.max)}", name, "max", f"<= {rule.max}", got))
        if rule.allowed:
            # A short list as equalities: DuckDB runs NOT IN over strings through a hash set, twice as slow.
            cond = (f"NOT ({' OR '.join(f'{col} = {literal(v)}' for v in rule.allowed)})"
                    if len(rule.allowed) <= SHORT_LIST else f"{col} NOT IN ({', '.join(map(literal, rule.allowed))})")
            out.append((cond, name, "allowed",
                        "one of " + ", ".join(map(str, rule.allowed)), got))
        if rule.pattern:
            out.append((f"NOT regexp_full_match({col}::VARCHAR, {literal(rule.pattern)})", name, "pattern",
                        f"matching {rule.pattern}", got))
    return out


def _case(checks: list, i: int) -> str:
    if not checks:
        return "NULL::VARCHAR"  # typed, so the unique check can still add rows to a table made without checks
    whens = " ".join(f"WHEN _v = {n} THEN {c[i] if i == 4 else literal(c[i])}" for n, c in enumerate(checks))
    return f"CASE {whens} END"


class Batch:
    """One file of one source, ingested in one transaction on this thread's cursor."""

    def __init__(self, app, settings, source, kind, path: Path, job=None):
        self.app, self.settings, self.source, self.kind, self.path, self.job = app, settings, source, kind, path, job
        self.cur = app.store.cursor()
        base = settings.project_dir
        self.file = str(path.relative_to(base)) if base and base in path.parents else str(path)
        self.table = f"raw.{ident(source.name)}"
        self.quarantine = f"quarantine.{ident(source.name)}"
        self.reasons: list[str] = []

    def _read(self, path: str, columns: list[tuple[str, str]] | None) -> str:
        return read_expression(self.kind, path, self.source.options, columns, self.source.name)

    def say(self, fraction: float, message: str) -> None:
        if self.job is not None:
            self.job.progress(fraction, f"{self.file}: {message}")
            self.job.check_cancelled()

    def q(self, sql: str, params: list | None = None) -> list:
        return self.cur.execute(sql, params or []).fetchall()

    def run(self) -> dict:
        stat = self.path.stat()
        known = self.q("select id, state from ingest.batches where source = ? and file = ? and size = ?",
                       [self.source.name, self.file, stat.st_size])
        digest: dict[str, str] = {}
        hasher = threading.Thread(target=lambda: digest.setdefault("hash", content_hash(self.path)), daemon=True)
        hasher.start()
        if known or stat.st_size < HASH_ALONGSIDE_BYTES:
            hasher.join()
            if dup := self._ledger(digest["hash"], stat.st_size):
                return dup
        self._check_room(stat.st_size)
        self.batch_id = self.q("select nextval('ingest.batch_ids')")[0][0]
        self.q("begin")
        try:
            result = self._load(stat, hasher, digest)
        except BaseException as exc:
            self.q("rollback")
            self._drop_temps()
            self._give_space_back()
            if isinstance(exc, ApplianceError) or not _is_duckdb_error(exc):
                raise
            raise IngestError(f"{self.file}: {self._clean(str(exc))}") from None
        if result.get("duplicate_of"):
            self.q("rollback")
            self._drop_temps()
            self._give_space_back()
        else:
            self.q("commit")
            self._drop_temps()
        return result

    def _check_room(self, size: int) -> None:
        """Refuse, before writing a byte, a file the store's disk has no room for. DuckDB does not give back
        the blocks a rolled-back load wrote (it truncates its file only when a later checkpoint finds free
        blocks at the end), so a load that fills the disk would leave it full: the catalog could not even
        record the failure. The estimate is the file's size (Parquet stores about as compactly as DuckDB) or
        half of it (text), plus room for the catalog and the WAL."""
        need = int(size * (1.0 if getattr(self.kind, "exact_types", False) else 0.5)) + ROOM_BYTES
        free = shutil.disk_usage(self.app.home.root).free
        if free < need:
            raise IngestError(f"{self.file}: not enough space on the disk holding the store: about {need} bytes "
                              f"needed for {size} bytes of {self.source.kind}, {free} free at {self.app.home.root}; "
                              "nothing was written. Free some space and ingest it again",
                              title="Disk full", status=507)

    def _give_space_back(self) -> None:
        """After a rollback: a checkpoint returns the blocks the batch's rows took to the disk. Until then the
        store file keeps its size; on a full disk, the catalog could not even record that the ingest failed."""
        try:
            self.q("checkpoint")
        except Exception as exc:  # another transaction is busy: its commit or the next checkpoint reuses them
            log.info("checkpoint after a rolled-back batch of %s skipped: %s", self.file, exc)

    def _ledger(self, digest: str, size: int) -> dict | None:
        rows = self.q("select id, state, file from ingest.batches where source = ? and content_hash = ?",
                      [self.source.name, digest])
        if not rows and self.q("select 1 from ingest.batches where source = ? and size = ? and "
                               "content_hash like 'sha256:%' limit 1", [self.source.name, size]):
            # Batches ledgered before BLAKE3 carry a sha256: a file of the same size is checked against those too,
            # so an upgrade never ingests an old file a second time.
            rows = self.q("select id, state, file from ingest.batches where source = ? and content_hash = ?",
                          [self.source.name, content_hash(self.path, "sha256")])
        if not rows:
            return None
        bid, state, file = rows[0]
        return {"file": self.file, "status": "duplicate", "duplicate_of": bid, "state": state, "content_hash": digest,
                "message": f"already ingested as batch {bid} ({state}, from {file}); nothing to do"}

    def _clean(self, message: str) -> str:
        return message.replace(str(self.path), self.file).split("\n\nLINE 1:")[0].strip()

    def _drop_temps(self) -> None:
        b = self.batch_id
        for name in (f"_bad_{b}", f"_rejrows_{b}", f"_load_{b}", f"_rej_{b}", f"_rej_{b}_scan"):
            self.q(f"drop table if exists temp.{ident(name)}")

    def _temp(self, name: str) -> str:
        return f"temp.{ident(f'{name}_{self.batch_id}')}"

    # ----------------------------------------------------------------------------------------------- the steps

    def _load(self, stat, hasher, digest) -> dict:
        self.say(0.05, "reading the header")
        columns, file_columns = self._schema(stat)
        cols = ", ".join(ident(n) for n, _ in columns)
        self.q(f"create table if not exists {self.table} ({', '.join(f'{ident(n)} {t}' for n, t in columns)}, "
               f"_batch_id BIGINT)")
        self.q(f"create table if not exists {self.quarantine} ({QUARANTINE_COLUMNS})")
        had_rows = bool(self.source.unique and self.q(f"select 1 from {self.table} limit 1"))
        file_types = dict(file_columns)
        # Only a kind whose files carry exact types (Parquet) may skip the cast; a sniffed type is a guess.
        direct = getattr(self.kind, "exact_types", False) and all(
            file_types.get(n, "").upper() == t.upper() for n, t in columns)
        typed = hasattr(self.kind, "read_typed")
        src: dict[str, str] = {}
        self.say(0.1, "reading rows")
        rejected = 0
        path = str(self.path)
        if stat.st_size == 0:
            relation, n_read = None, 0  # an empty file is a batch of no rows; readers cannot sniff it
        elif typed or direct:
            reader = (self.kind.read_typed(path, self.source.options, columns, f"_rej_{self.batch_id}") if typed
                      else self._read(path, None))
            n_read = self.q(f"insert into {self.table} ({cols}, _batch_id) select {cols}, {self.batch_id} "
                            f"from {reader}")[0][0]
            first = self.q(f"select min(rowid) from {self.table} where _batch_id = {self.batch_id}")[0][0] or 0
            relation = (f"(select rowid - {first} as _pos, * exclude (_batch_id) from {self.table} "
                        f"where _batch_id = {self.batch_id})")
            if typed:
                rejected = self._rejects()
        else:
            load = self._temp("_load")
            reader = self._read(path, [(n, "VARCHAR") for n, _ in columns])
            self.q(f"create temp table {ident(f'_load_{self.batch_id}')} as select * from {reader}")
            n_read, first = self.q(f"select count(*), min(rowid) from {load}")[0]
            first = first or 0
            load_types = {r[0]: r[1] for r in self.q(f"describe select * from {load}")}
            exprs = []
            for i, (n, t) in enumerate(columns):
                if load_types.get(n, "").upper() == t.upper():
                    exprs.append(ident(n))
                else:
                    src[n] = ident(f"_src_{i}")
                    exprs += [f"TRY_CAST({ident(n)} AS {t}) AS {ident(n)}", f"{ident(n)} AS {src[n]}"]
            relation = f"(select rowid - {first} as _pos, {', '.join(exprs)} from {load})"
        self.say(0.7, "checking rows against the contract")
        bad = self._bad(relation, columns, src, had_rows) if relation else 0
        if relation and not (typed or direct):
            self.q(f"insert into {self.table} ({cols}, _batch_id) select {cols}, {self.batch_id} from {relation} "
                   f"where _pos not in (select _pos from {self._temp('_bad')})")
        elif bad:
            self.q(f"delete from {self.table} where _batch_id = {self.batch_id} and rowid - {first} in "
                   f"(select _pos from {self._temp('_bad')})")
        rows_in = n_read + rejected
        accepted = n_read - bad
        if bad or rejected:
            self._quarantine(columns, bad, rejected)
        self.say(0.85, "profiling")
        label_rate, psi = self._judge(columns, rows_in, accepted)
        # The hash is joined as late as possible, so it overlaps the checks and the profile; a duplicate found
        # only now rolls all of that back.
        hasher.join()
        if dup := self._ledger(digest["hash"], stat.st_size):
            return dup
        state = "held" if self.reasons else "accepted"
        if state == "held":
            self.q(f"create table {staging_table(self.source.name, self.batch_id)} as select * from {self.table} "
                   f"where _batch_id = {self.batch_id}")
            self.q(f"delete from {self.table} where _batch_id = {self.batch_id}")
        self.q("insert into ingest.batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
               [self.batch_id, self.source.name, self.file, digest["hash"], stat.st_size, stat.st_mtime, time.time(),
                state, rows_in, accepted, rows_in - accepted, json.dumps(self.reasons), json.dumps(psi), label_rate,
                self.job.id if self.job else None])
        return {"file": self.file, "status": state, "batch_id": self.batch_id, "content_hash": digest["hash"],
                "rows_in": rows_in, "accepted": accepted, "quarantined": rows_in - accepted,
                "quarantine_rules": self._quarantine_rules() if rows_in - accepted else [],
                "reasons": self.reasons, "psi": psi}

    def _schema(self, stat) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The batch's columns, in the file's order, with the types to read them as; and the file's own."""
        declared = [(c.name, c.type) for c in self.source.columns]
        existing = table_columns(self.cur, "raw", self.source.name)
        if stat.st_size == 0:
            target = declared or existing
            if not target:
                raise IngestError(f"{self.file}: the file is empty and the source declares no columns, so there "
                                  "is nothing to take its schema from")
            return target, []
        reader = self._read(str(self.path), None)
        file_columns = [(r[0], r[1]) for r in self.q(f"describe select * from {reader}")]
        target = declared or existing or file_columns
        reserved = [n for n, _ in file_columns if n.startswith("_")]
        if reserved and not declared:
            raise IngestError(f"{self.file}: column {reserved[0]!r}: names starting with '_' are reserved "
                              "(raw tables add _batch_id); rename the column in the file")
        want = {n for n, _ in target}
        have = [n for n, _ in file_columns]
        missing = [n for n, _ in target if n not in have]
        extra = [n for n in have if n not in want]
        if missing or extra:
            parts = ([f"missing column(s) {', '.join(map(repr, missing))}"] if missing else []) + \
                    ([f"unexpected column(s) {', '.join(map(repr, extra))}"] if extra else [])
            raise IngestError(f"{self.file}: the schema drifted from source {self.source.name!r}: "
                              f"{'; '.join(parts)} (expected {', '.join(n for n, _ in target)})",
                              title="Schema drift")
        types = dict(target)
        return [(n, types[n]) for n in have], file_columns

    def _rejects(self) -> int:
        """Records the CSV reader could not read: one row each (the first error), numbered by line."""
        options = self.source.options
        header = (1 if options.get("header", True) else 0) + options.get("skip", 0)
        rej = self._temp("_rej")
        # A cast's value is shown as it was in the file; DuckDB's message around it names the column again.
        got = ("CASE WHEN error_type = 'CAST' THEN coalesce(nullif(regexp_extract(error_message, "
               """'string "(.*)" to ''', 1), ''), error_message) ELSE error_message END""")
        self.q(f"create temp table {ident(f'_rejrows_{self.batch_id}')} as select line - {header} as _row, "
               f"first(column_name order by column_idx) as _column, first(error_type order by column_idx) as "
               f"_rule, first({got} order by column_idx) as _got, first(csv_line) as _record from {rej} "
               f"group by line")
        return self.q(f"select count(*) from {self._temp('_rejrows')}")[0][0]

    def _bad(self, relation: str, columns, src: dict, had_rows: bool) -> int:
        checks = _checks(self.source, columns, src)
        record = "json_object(" + ", ".join(f"{literal(n)}, {src.get(n, ident(n))}" for n, _ in columns) + ")"
        cond = " ".join(f"WHEN {c[0]} THEN {n}" for n, c in enumerate(checks))
        bad = self._temp("_bad")
        # Find the failing rows first, then describe only those. Each rule alone is a filter DuckDB pushes into
        # the scan, where zone maps skip the row groups that cannot fail (a range check on a clean column costs
        # nothing); one CASE over every row evaluated every rule on every row (0.5 s of a 10M-row batch).
        if not checks:
            failing = f"(select *, NULL::INT as _v from {relation} where false)"
        elif len(checks) <= SEPARATE_CHECKS:
            hits = " union all ".join(f"select _pos, {n} as _v from {relation} where {c[0]}"
                                      for n, c in enumerate(checks))
            failing = (f"(select r.*, f._v from {relation} r join (select _pos, min(_v) as _v from ({hits}) "
                       f"group by _pos) f using (_pos))")
        else:  # a query with thousands of parts plans slowly: one pass with the rules ORed
            failing = (f"(select *, CASE {cond} END as _v from {relation} where "
                       f"{' OR '.join(f'({c[0]})' for c in checks)})")
        self.q(f"create temp table {ident(f'_bad_{self.batch_id}')} as select _pos, {_case(checks, 1)} as _column, "
               f"{_case(checks, 2)} as _rule, {_case(checks, 3)} as _expected, {_case(checks, 4)} as _got, "
               f"{record}::VARCHAR as _record from {failing} where _v is not null")
        key = self.source.unique
        if key:
            k = ", ".join(ident(c) for c in key)
            tup = f"({k})" if len(key) == 1 else f"row({k})"
            notnull = " and ".join(f"{ident(c)} is not null" for c in key)
            label = ", ".join(key)
            common = (f"select _pos, {literal(label)}, 'unique', 'a key no other row has', "
                      f"concat_ws(', ', {', '.join(f'{ident(c)}::VARCHAR' for c in key)}), {record}::VARCHAR")
            same, distinct, within = self._distinct_keys(relation, key, dict(columns), notnull)
            if same != distinct:
                self.q(f"insert into {bad} {common} from (select *, row_number() over (partition by {k} order by "
                       f"_pos) as _n from {relation} where {notnull}) where _n > 1 and _pos not in "
                       f"(select _pos from {bad})")
            if had_rows:
                self.q(f"insert into {bad} {common} from {relation} where {notnull} and {tup} in (select {tup} "
                       f"from {self.table} where _batch_id <> {self.batch_id}{within}) and _pos not in "
                       f"(select _pos from {bad})")
        return self.q(f"select count(*) from {bad}")[0][0]

    def _distinct_keys(self, relation: str, key, types: dict, notnull: str) -> tuple[int, int, str]:
        """Non-null keys, distinct ones among them, and a filter narrowing older rows to the batch's key range.

        A single integer key over a modest range is counted with a bitmap (one bit per possible value: 0.2 s
        for 10M rows, where count(distinct) hashes every key in 3.5 s); other keys are counted by hashing."""
        k = ident(key[0])
        if len(key) > 1:
            tup = f"row({', '.join(ident(c) for c in key)})"
            return (*self.q(f"select count(*), count(distinct {tup}) from {relation} where {notnull}")[0], "")
        n, lo, hi = self.q(f"select count({k}), min({k}), max({k}) from {relation}")[0]
        if not n:
            return 0, 0, ""
        # Older rows outside [lo, hi] cannot clash; zone maps skip them unread. (Not floats: NaN sorts last.)
        within = f" and {k} between {literal(lo)} and {literal(hi)}" if isinstance(lo, int | str) else ""
        if guard._base(types[key[0]]) in INTEGER and hi - lo < BITMAP_MAX:
            distinct = self.q(f"select bit_count(bitstring_agg({k}, {lo}, {hi})) from {relation}")[0][0]
        else:
            distinct = self.q(f"select count(distinct {k}) from {relation}")[0][0]
        return n, distinct, within

    def _quarantine(self, columns, bad: int, rejected: int) -> None:
        """Write the failing rows, each numbered by its place in the file."""
        fields = f"{self.batch_id}, {literal(self.file)}"
        if rejected:
            rows = self._temp("_rejrows")
            types = "MAP {" + ", ".join(f"{literal(n)}: {literal(t)}" for n, t in columns) + "}"
            expected = (f"CASE _rule WHEN 'CAST' THEN {types}[_column] WHEN 'INVALID ENCODING' THEN 'UTF-8 text' "
                        f"WHEN 'MISSING COLUMNS' THEN '{len(columns)} columns' WHEN 'TOO MANY COLUMNS' THEN "
                        f"'{len(columns)} columns' ELSE 'a well-formed CSV record' END")
            self.q(f"insert into {self.quarantine} select {fields}, _row, _column, lower(_rule), {expected}, _got, "
                   f"_record from {rows}")
            # A row's number is its place among the rows read plus the rejected rows before it.
            shift = (f"(select count(*) from (select _row - row_number() over (order by _row) as g from {rows}) "
                     f"where g <= b._pos)")
        else:
            shift = "0"
        if bad:
            self.q(f"insert into {self.quarantine} select {fields}, b._pos + 1 + {shift}, _column, _rule, "
                   f"_expected, _got, _record from {self._temp('_bad')} b")

    def _quarantine_rules(self) -> list[dict]:
        """Which column and rule cost how many rows of this batch, with one value each, most rows first: what
        a person must see to tell a few bad rows from a column lost to a missing-value marker."""
        rows = self.q(f"select _column, _rule, any_value(_expected), count(*), min(_got) from {self.quarantine} "
                      f"where _batch_id = ? group by _column, _rule order by count(*) desc, _column, _rule",
                      [self.batch_id])
        out = []
        for column, rule, expected, n, example in rows:
            entry = {"column": column, "rule": rule, "expected": expected, "rows": n, "example": example}
            if rule in ("cast", "type") and isinstance(example, str) and example.strip().lower() in MISSING_MARKERS:
                entry["hint"] = (f"if {example!r} marks a missing value, add it to null_values in "
                                 f"[sources.{self.source.name}]")
            out.append(entry)
        return out

    def _judge(self, columns, rows_in: int, accepted: int) -> tuple[float | None, dict]:
        relation = f"(select * from {self.table} where _batch_id = {self.batch_id})"
        src = self.source
        if src.mostly is not None and rows_in and accepted / rows_in < src.mostly:
            self.reasons.append(f"{accepted} of {rows_in} rows passed the contract ({accepted / rows_in:.1%}), "
                                f"fewer than the tolerance mostly = {src.mostly}")
        limits = [c for c in src.columns if c.max_null_fraction is not None]
        if limits and accepted:
            fracs = self.q(f"select {', '.join(f'avg(({ident(c.name)} is null)::INT)' for c in limits)} "
                           f"from {relation}")[0]
            for c, f in zip(limits, fracs, strict=True):
                if f > c.max_null_fraction:
                    self.reasons.append(f"column {c.name!r}: {f:.1%} nulls exceeds max_null_fraction = "
                                        f"{c.max_null_fraction}")
        if not accepted:
            return None, {}
        batch = f"{self.table} where _batch_id = {self.batch_id}"
        plan = guard.plan(self.cur, src, columns, batch, accepted)
        prof = guard.profile(self.cur, plan, batch, accepted)
        label_rate = None
        if src.label:
            label_rate = self.q(f"select avg(try_cast({ident(src.label)} as DOUBLE)) from {relation}")[0][0]
        hist_rows, hist, hist_rate = guard.history(self.cur, src.name)
        reasons, psi = guard.judge(src, accepted, prof, label_rate, hist_rows, hist, hist_rate)
        self.reasons += reasons
        rows = [[self.batch_id, c, b, n] for c, counts in prof.items() for b, n in counts.items()]
        if rows:
            self.cur.executemany("insert into ingest.profiles values (?, ?, ?, ?)", rows)
        return label_rate, psi


def _is_duckdb_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("duckdb", "_duckdb"))
