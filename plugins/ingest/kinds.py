"""The built-in source kinds: how a file of each kind becomes a DuckDB table expression.

A source kind (registered through the ``register_sources`` hook) is any object with a ``name``, the ``options``
a source of its kind takes, and a ``read(path, options, columns, source)`` method returning a DuckDB table
expression (``read_csv('...', ...)``): with ``columns`` (a list of ``(name, type)``), it reads exactly those
columns with those types if it can; without, it reads the file's own columns. The engine checks and casts what
comes back, so a kind that cannot apply types may ignore ``columns``. CSV also has ``read_typed``: its reader
applies the types itself and writes the records it cannot read to a rejects table, which is the fast path the
benchmark measures.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from appliance import Option, Options

from .sql import literal, struct_type

#: JSON records (and so single lines) up to this size are read; DuckDB's default is 16 MiB.
MAX_JSON_OBJECT_BYTES = 1 << 30
QUOTE = '"'


def _csv_options(options: dict) -> str:
    # The dialect is part of the contract: guessing the delimiter from a file full of bad rows guesses wrong.
    out = (f"header={literal(options.get('header', True))}, delim={literal(options.get('delimiter') or ',')}, "
           f"quote={literal(options.get('quote') or QUOTE)}, escape={literal(options.get('escape') or QUOTE)}")
    if options.get("null_values") is not None:  # DuckDB's own default is the empty string alone
        out += f", nullstr=[{', '.join(literal(v) for v in options['null_values']) or literal('')}]"
    for key, arg in (("timestamp_format", "timestampformat"), ("date_format", "dateformat"), ("skip", "skip"),
                     ("encoding", "encoding")):
        if options.get(key) not in (None, 0, "utf-8"):  # unset, or DuckDB's own default
            out += f", {arg}={literal(options[key])}"
    return out


def read_expression(kind, path: str, options: dict, columns: list[tuple[str, str]] | None, source: str) -> str:
    """``kind.read(...)``; a kind whose ``read`` takes a ``source`` argument (contract 1.1) is told the source's
    name, so one that converts files can keep what it made apart per source."""
    try:
        takes_source = "source" in inspect.signature(kind.read).parameters
    except (TypeError, ValueError):
        takes_source = False
    if takes_source:
        return kind.read(path, options, columns, source=source)
    return kind.read(path, options, columns)


@dataclass(frozen=True)
class CsvKind:
    name: str = "csv"
    options: Options = field(default_factory=lambda: Options(
        Option("delimiter", str, ",", "the character between fields"),
        Option("header", bool, True, "whether the first line names the columns"),
        Option("quote", str, QUOTE, "the character around a field that holds the delimiter"),
        Option("escape", str, QUOTE, "the character before a quote inside a quoted field"),
        Option("null_values", list[str], None, 'what stands for a missing value, e.g. ["NA", ""] (default "")'),
        Option("timestamp_format", str, None, "strptime format of timestamps, e.g. %d/%m/%Y %H:%M"),
        Option("date_format", str, None, "strptime format of dates, e.g. %d/%m/%Y"),
        Option("skip", int, 0, "lines to skip before the header"),
        Option("encoding", str, "utf-8", "the file's encoding: utf-8, utf-16 or latin-1")),
        compare=False, hash=False)

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
    options: Options = field(default_factory=Options, compare=False, hash=False)

    def read(self, path: str, options: dict, columns: list[tuple[str, str]] | None) -> str:
        return f"read_parquet({literal(path)})"


@dataclass(frozen=True)
class JsonKind:
    """``jsonl``: one object per line; ``json``: an array of objects or objects one after another."""

    name: str
    format: str
    options: Options = field(default_factory=Options, compare=False, hash=False)

    def read(self, path: str, options: dict, columns: list[tuple[str, str]] | None) -> str:
        typed = f", columns={struct_type(columns)}" if columns else ""
        return (f"read_json({literal(path)}, format={literal(self.format)}, "
                f"maximum_object_size={MAX_JSON_OBJECT_BYTES}{typed})")


BUILTIN_KINDS = (CsvKind(), ParquetKind(), JsonKind("jsonl", "newline_delimited"), JsonKind("json", "auto"))
