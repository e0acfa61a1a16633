"""Options that plugins declare for what they register, checked by the host before the plugin sees them.

A source kind, monitor kind, trainer, job kind or alert sink lists its options as ``appliance.Options`` of
``appliance.Option(name, type, default, doc)``; the host checks the user's table (or a job's params) against
them and hands the plugin the values merged over the defaults. ``Options`` is a dict of each option's default,
so code that reads a plain dict of defaults keeps working with it.

    options = Options(
        Option("table", str, required=True, doc="the SQLite table to read"),
        Option("batch_rows", int, 10_000, "rows read at a time"),
        Option("columns", list[str], [], "columns to compare (all when empty)"),
    )
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadRequest

_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
          dict: "a table", Path: "a path", typing.Any: "any value"}


@dataclass(frozen=True)
class Option:
    """One option: its ``name``, ``type`` (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``,
    ``list[str]`` and the like, ``pathlib.Path`` or ``typing.Any``), ``default``, ``doc`` (one line for people),
    whether it is ``required`` and, optionally, the ``choices`` it must be one of. ``float`` takes integers too.
    A ``Path`` option is written as a string; read from ``appliance.toml``, a relative one is resolved against
    the project's directory, and the plugin gets an absolute path (as a string)."""

    name: str
    type: Any = typing.Any
    default: Any = None
    doc: str = ""
    required: bool = False
    choices: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"an Option needs a name, got {self.name!r}")
        if describe(self.type) is None:
            raise ValueError(f"option {self.name!r}: type must be str, int, float, bool, list, dict, list[T] or "
                             f"typing.Any, got {self.type!r}")

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this option, in words, or ``None``."""
        if not _fits(self.type, value):
            return f"expected {describe(self.type)}, got {type(value).__name__} {value!r}"
        if self.choices and value not in self.choices:
            return f"expected one of {', '.join(map(repr, self.choices))}, got {value!r}"
        return None

    def to_dict(self) -> dict:
        return {"name": self.name, "type": describe(self.type), "default": self.default, "doc": self.doc,
                "required": self.required, "choices": list(self.choices)}


class Options(dict):
    """The options something takes, by name; as a dict, each name maps to its default."""

    def __init__(self, *options: Option):
        self.specs: dict[str, Option] = {}
        for option in options:
            if not isinstance(option, Option):
                raise TypeError(f"Options takes appliance.Option objects, got {option!r}")
            if option.name in self.specs:
                raise ValueError(f"option {option.name!r} is declared twice")
            self.specs[option.name] = option
        super().__init__((o.name, o.default) for o in options)

    @classmethod
    def of(cls, declared: Mapping[str, Any] | None) -> Options:
        """``declared`` itself when it is ``Options``; for a plain dict of defaults (how contract 1.0 declared
        options), ``Options`` whose each option takes its default's type (any value when that is ``None``)."""
        return from_defaults(declared or {})

    def problems(self, given: Mapping[str, Any], *, also: Iterable[str] = ()) -> Iterable[tuple[str, str]]:
        """``(key, message)`` for each mistake in ``given`` (unknown keys and wrong types, in the order given),
        then each required option missing; ``also`` names keys the caller checks itself (a source's ``kind``)."""
        also = set(also)
        for key, value in given.items():
            if key in also:
                continue
            spec = self.specs.get(key)
            if spec is None:
                yield key, unknown_key(key, [*self.specs, *also])
            elif (msg := spec.problem(value)) is not None:
                yield key, msg
        for name, spec in self.specs.items():
            if spec.required and given.get(name) is None:
                yield name, f"is required ({spec.doc or describe(spec.type)})"

    def merged(self, given: Mapping[str, Any]) -> dict:
        """The defaults (copied, so a plugin may change them) with ``given`` on top."""
        return {**copy.deepcopy(dict(self)), **given}

    def check(self, given: Mapping[str, Any], owner: str, *, what: str = "option") -> dict:
        """``given`` checked and merged over the defaults; the first mistake is a ``BadRequest`` naming it."""
        if not isinstance(given, Mapping):
            raise BadRequest(f"{owner}: expected an object of {what}s, got {type(given).__name__}")
        for key, message in self.problems(given):
            raise BadRequest(f"{owner}: {what} {key!r}{': ' if key in given else ' '}{message}")
        return self.merged(given)

    def to_list(self) -> list[dict]:
        return [o.to_dict() for o in self.specs.values()]


def unknown_key(key: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; known keys: {', '.join(known) or 'none'}"


def describe(kind: Any) -> str | None:
    """A type in words (``"a list of strings"``), or ``None`` for one options cannot have."""
    if kind in _NAMES:
        return _NAMES[kind]
    if typing.get_origin(kind) is list and len(typing.get_args(kind)) == 1:
        inner = describe(typing.get_args(kind)[0])
        if inner is None or kind is list:
            return None
        return "a list of " + {"a string": "strings", "an integer": "integers", "a number": "numbers",
                               "true or false": "booleans", "a table": "tables", "a list": "lists",
                               "any value": "values"}.get(inner, inner)
    if isinstance(kind, types.UnionType | typing._UnionGenericAlias):  # type: ignore[attr-defined]
        parts = [describe(a) for a in typing.get_args(kind)]
        return None if None in parts else " or ".join(parts)  # type: ignore[arg-type]
    return None


def _fits(kind: Any, value: Any) -> bool:
    if kind is typing.Any:
        return True
    if typing.get_origin(kind) is list:
        return isinstance(value, list) and all(_fits(typing.get_args(kind)[0], v) for v in value)
    if isinstance(kind, types.UnionType | typing._UnionGenericAlias):  # type: ignore[attr-defined]
        return any(_fits(a, value) for a in typing.get_args(kind))
    if kind is Path:
        return isinstance(value, str) and bool(value) and "\0" not in value
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def from_defaults(defaults: Mapping[str, Any], infer: Callable[[str, Any], Any] | None = None) -> Options:
    """``Options`` for a plain dict of defaults (the 1.0 way to declare options): each option takes the type
    of its default, and one whose default is ``None`` takes any value unless ``infer`` names a type for it."""
    if isinstance(defaults, Options):
        return defaults
    out = []
    for name, default in defaults.items():
        kind = infer(name, default) if infer else None
        if kind is None:
            kind = typing.Any if default is None else (float if isinstance(default, int | float)
                                                        and not isinstance(default, bool) else type(default))
            if describe(kind) is None:
                kind = typing.Any
        out.append(Option(name, kind, default))
    return Options(*out)
