"""Safe SQL text: every identifier and literal that reaches DuckDB from a file or a config goes through here."""

from __future__ import annotations

from typing import Any


def ident(name: str) -> str:
    """A quoted identifier: any name (quotes, semicolons, spaces) stays one identifier."""
    if "\x00" in name:
        raise ValueError("an identifier cannot contain a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A SQL literal for a string, number, boolean or None."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if "\x00" in text:
        raise ValueError("a SQL string cannot contain a NUL byte")
    return "'" + text.replace("'", "''") + "'"


def struct_type(columns: list[tuple[str, str]]) -> str:
    """``{'a': 'BIGINT', ...}``: the ``columns=`` argument of DuckDB's readers."""
    return "{" + ", ".join(f"{literal(n)}: {literal(t)}" for n, t in columns) + "}"
