"""The project's ``appliance.toml``: read, checked, and every error located by file, line and key.

The core owns ``[daemon]`` and ``[plugins]``; every other top-level table belongs to the plugin of that name,
which reads it with ``app.settings(name)`` and reports its own mistakes with ``Config.error(...)``.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .options import Options

FILENAME = "appliance.toml"

DAEMON_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "port": int,
    "allowed_hosts": list,
    "workers": int,
    "gpu_slots": int,
    "drain_seconds": (int, float),
    "log_level": str,
    "sink_timeout_s": (int, float),
}
PLUGIN_KEYS: dict[str, type | tuple[type, ...]] = {"allow": list, "deny": list}

DEFAULT_PORT = 7870


@dataclass
class Config:
    """A parsed, checked project configuration."""

    path: Path | None = None
    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    @property
    def project_dir(self) -> Path | None:
        return self.path.parent if self.path else None

    @property
    def daemon(self) -> dict[str, Any]:
        return self.data.get("daemon", {})

    @property
    def plugins(self) -> dict[str, Any]:
        return self.data.get("plugins", {})

    def section(self, name: str) -> dict[str, Any]:
        return self.data.get(name, {})

    def line_of(self, *keys: str) -> int | None:
        return locate(self.text, keys)

    def error(self, message: str, *keys: str) -> ConfigError:
        """A ConfigError naming this file, the line of ``keys`` (a dotted path) and the key."""
        where = str(self.path or FILENAME)
        line = self.line_of(*keys) if keys else None
        if line:
            where += f":{line}"
        key = ".".join(keys)
        return ConfigError(f"{where}: {key + ': ' if key else ''}{message}")

    def check_options(self, options: Options, table: Any, *keys: str, also: tuple[str, ...] = ()) -> dict:
        """The table at ``keys`` checked against ``options`` and merged over their defaults; the first mistake
        is a ``ConfigError`` naming file, line and key. ``also`` names keys the caller checks itself."""
        if not isinstance(table, dict):
            raise self.error(f"expected a table, got {type(table).__name__} {table!r}", *keys)
        for key, message in options.problems(table, also=also):
            raise self.error(message, *keys, key) if key in table else self.error(f"{key} {message}", *keys)
        merged = options.merged({k: v for k, v in table.items() if k not in also})
        base = self.project_dir or Path.cwd()
        for name, spec in options.specs.items():
            if spec.type is Path and isinstance(merged.get(name), str):
                merged[name] = str((base / merged[name]).resolve())  # relative to the project, not the daemon
        return merged


def load(path: Path | str | None) -> Config:
    """Read and check a project file; ``None`` gives the defaults (a daemon without a project)."""
    if path is None:
        return Config()
    if "\0" in str(path):
        raise ConfigError(f"{str(path)!r}: a path may not contain a NUL byte")
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; create one with `appliance init`") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        where = f"{path}:{m.group(1)}" if m else str(path)
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        if m:
            bad = text.splitlines()[int(m.group(1)) - 1] if int(m.group(1)) <= len(text.splitlines()) else ""
            key = bad.split("=", 1)[0].strip() if "=" in bad else bad.strip()
            raise ConfigError(f"{where}: {detail} (column {m.group(2)}, near {key!r})") from None
        raise ConfigError(f"{where}: {detail}") from None
    config = Config(path=path.resolve(), data=data, text=text)
    _check_table(config, "daemon", DAEMON_KEYS)
    _check_table(config, "plugins", PLUGIN_KEYS)
    for key in ("allow", "deny"):
        for item in config.plugins.get(key, []):
            if not isinstance(item, str):
                raise config.error(f"expected plugin names (strings), got {item!r}", "plugins", key)
    sink_timeout = config.daemon.get("sink_timeout_s")
    if sink_timeout is not None and not sink_timeout > 0:
        raise config.error(f"expected seconds > 0, got {sink_timeout}", "daemon", "sink_timeout_s")
    port = config.daemon.get("port")
    if port is not None and not 0 <= port <= 65535:
        raise config.error(f"expected a port between 0 and 65535, got {port}", "daemon", "port")
    return config


def _check_table(config: Config, table: str, schema: dict[str, Any]) -> None:
    section = config.data.get(table)
    if section is None:
        return
    if not isinstance(section, dict):
        raise config.error(f"expected a table [{table}], got {type(section).__name__}", table)
    for key, value in section.items():
        if key not in schema:
            close = difflib.get_close_matches(key, schema, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(schema))}"
            raise config.error(f"unknown key{hint}", table, key)
        expected = schema[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            want = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise config.error(f"expected {want}, got {type(value).__name__} {value!r}", table, key)


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def locate(text: str, keys: tuple[str, ...] | list[str]) -> int | None:
    """The 1-based line where the dotted key path is defined (a table header or a key), best effort."""
    keys = [k for k in keys if k]
    if not keys:
        return None
    table: list[str] = []
    best = None
    for no, line in enumerate(text.splitlines(), 1):
        if m := _HEADER.match(line):
            table = [p.strip().strip("\"'") for p in m.group(1).split(".")]
            if table == keys:
                return no
            continue
        if m := _KEY.match(line):
            path = table + [p.strip().strip("\"'") for p in m.group(1).split(".")]
            if path == keys:
                return no
            if best is None and path == keys[: len(path)]:
                best = no
    if best is None:
        for no, line in enumerate(text.splitlines(), 1):
            if m := _HEADER.match(line):
                if [p.strip() for p in m.group(1).split(".")] == keys[:1]:
                    return no
    return best
