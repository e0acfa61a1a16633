"""``Appliance``: the handle on the box that hooks, routes and jobs receive as ``app``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .artifacts import ArtifactStore
    from .catalog import Catalog
    from .config import Config
    from .events import EventBus
    from .health import Health
    from .home import Home
    from .host import PluginHost
    from .jobs import JobRunner
    from .store import Store


@dataclass
class Appliance:
    """Everything a plugin may use in the daemon; nothing here is private to the core."""

    home: Home
    config: Config
    host: PluginHost
    catalog: Catalog
    store: Store
    artifacts: ArtifactStore
    events: EventBus
    #: What is damaged or failing now, as ``/api/v1/health`` shows it: ``app.health.report(part, level, problem,
    #: remedy)`` records a problem a plugin found; ``app.store.damage(exc)`` turns a DuckDB error that means a
    #: damaged file into the 503 to raise instead (and reports it here).
    health: Health
    jobs: JobRunner = None  # type: ignore[assignment]
    version: str = __version__
    started: float = field(default_factory=time.time)
    ports: dict[str, int] = field(default_factory=dict)
    #: A ``threading.Event`` set when the daemon begins to stop; long-running plugin threads should watch it.
    stopping: Any = None
    #: Ask the daemon to stop gracefully (what SIGTERM and ``appliance down`` do).
    request_stop: Any = None

    def settings(self, plugin: str) -> dict[str, Any]:
        """The plugin's own table of ``appliance.toml`` (``[ingest]`` for the ``ingest`` plugin)."""
        return self.config.section(plugin)

    def registry(self, name: str):
        """A registry filled by a ``register_<name>`` hook, such as ``app.registry("job_kinds")``."""
        return self.host.registries[name]
