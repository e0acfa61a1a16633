"""What the plugin host keeps: a record per plugin, the failures it saw, and the registries plugins fill."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import PluginError


@dataclass
class PluginRecord:
    name: str
    source: str  # builtin | entrypoint | dropin | object
    status: str = "loaded"  # loaded | failed | refused | denied
    module: str = ""
    version: str = ""
    contract: str = ""
    error: str = ""
    hooks: list[str] = field(default_factory=list)
    registrations: dict[str, list[str]] = field(default_factory=dict)
    #: The traceback of the failure that made the plugin ``failed`` (empty otherwise).
    traceback: str = ""
    #: Where a drop-in was loaded from (``appliance plugin reload`` reads it again from there).
    path: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name, "source": self.source, "status": self.status, "module": self.module,
            "version": self.version, "contract": self.contract, "error": self.error, "hooks": self.hooks,
            "registrations": self.registrations, "traceback": self.traceback, "path": self.path,
        }


@dataclass
class Failure:
    plugin: str
    hook: str
    message: str
    traceback: str
    time: float

    def to_dict(self) -> dict:
        return {"plugin": self.plugin, "hook": self.hook, "message": self.message,
                "traceback": self.traceback, "time": self.time}


class Registry:
    """Named objects registered by plugins; a second object with a taken name is refused."""

    def __init__(self, name: str):
        self.name = name
        self._items: dict[str, Any] = {}
        self._owners: dict[str, str] = {}

    def add(self, obj: Any, plugin: str) -> None:
        key = getattr(obj, "name", None)
        if not isinstance(key, str) or not key:
            raise PluginError(f"plugin {plugin!r} registered a {self.name} entry without a name: {obj!r}")
        if key in self._items:
            raise PluginError(
                f"{self.name} {key!r} is already registered by plugin {self._owners[key]!r}; "
                f"plugin {plugin!r} cannot register it again",
                title="Duplicate registration",
            )
        self._items[key] = obj
        self._owners[key] = plugin

    def get(self, key: str) -> Any:
        return self._items.get(key)

    def owner(self, key: str) -> str | None:
        return self._owners.get(key)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._items.items())

    def remove_owner(self, plugin: str) -> list[str]:
        """Withdraw everything ``plugin`` registered (it was disabled or is reloading); returns the names."""
        gone = [k for k, owner in self._owners.items() if owner == plugin]
        for key in gone:
            self._items.pop(key, None)
            self._owners.pop(key, None)
        return gone

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
