"""The built-in source kinds: how a file of each kind becomes a DuckDB table expression.

A source kind (registered through the ``register_sources`` hook) is any object with a ``name`` and a
``read(path, options, columns)`` method returning a DuckDB table expression (``read_csv('...', ...)``): with
``columns`` (a list of ``(name, type)``), it reads exactly those columns with those types if it can; without, it
reads the file's own columns. The engine checks and casts what comes back, so a kind that cannot apply types
may ignore ``columns``. CSV also has ``read_typed``: its reader applies the types itself and writes the records
it cannot read to a rejects table, which is the fast path the benchmark measures.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sql import literal, struct_type

#: JSON records (and so single lines) up to this size are read; DuckDB's default is 16 MiB.
MAX_JSON_OBJECT_BYTES = 1 << 30
QUOTE = '"'


def _csv_options(options: dict) -> str:
    # The dialect is part of the contract: guessing the delimiter from a file full of bad rows guesses wrong.
    out = (f"header={literal(options.get('header', True))}, delim={literal(options.get('delimiter', ','))}, "
           f"quote={literal(options.get('quote', QUOTE))}, escape={literal(options.get('escape', QUOTE))}")
    if "null_values" in options:  # DuckDB's own default is the empty string alone
        out += f", nullstr=[{', '.join(literal(v) for v in options['null_values']) or literal('')}]"
    for key, arg in (("timestamp_format", "timestampformat"), ("date_format", "dateformat"), ("skip", "skip"),
                     ("encoding", "encoding")):
        if key in options:
            out += f", {arg}={literal(options[key])}"
    return out


@dataclass(frozen=True)
class CsvKind:
    name: str = "csv"

    def read(self, path: str, options: dict, columns: list[tuple[str, str]] | None) -> str:
        # Reading the header and sniffing types must survive the bad rows that read_typed will reject.
        typed = f", columns={struct_type(columns)}" if columns else ""
        return f"read_csv({literal(path)}, {_csv_options(options)}, ignore_errors=true{typed})"

    def read_typed(self, path: str, options: dict, columns: list[tuple[str, str]], rejects: str) -> str:
        # null_padding off: a short record is a rejected record, not a row padded with NULLs.
        return (f"read_csv({literal(path)}, {_csv_options(options)}, columns={struct_type(columns)}, "
                f"null_padding=false, store_rejects=true, rejects_table={literal(rejects)}, "
                f"rejects_scan={literal(rejects + '_scan')})")


@dataclass(frozen=True)
class ParquetKind:
    name: str = "parquet"
    #: Parquet files carry their column types, so a file whose types match the source needs no cast.
    exact_types: bool = True

    def read(self, path: str, options: dict, columns: list[tuple[str, str]] | None) -> str:
        return f"read_parquet({literal(path)})"


@dataclass(frozen=True)
class JsonKind:
    """``jsonl``: one object per line; ``json``: an array of objects or objects one after another."""

    name: str
    format: str

    def read(self, path: str, options: dict, columns: list[tuple[str, str]] | None) -> str:
        typed = f", columns={struct_type(columns)}" if columns else ""
        return (f"read_json({literal(path)}, format={literal(self.format)}, "
                f"maximum_object_size={MAX_JSON_OBJECT_BYTES}{typed})")


BUILTIN_KINDS = (CsvKind(), ParquetKind(), JsonKind("jsonl", "newline_delimited"), JsonKind("json", "auto"))
