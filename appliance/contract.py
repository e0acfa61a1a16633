"""The objects the plugin contract hands around: what plugins register and what hooks receive.

Hook *signatures* live in ``hookspecs.py``; the values those hooks pass and register live here, so a plugin
imports both from ``appliance`` and nothing private.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .options import Options

#: The contract this appliance provides. A plugin declares ``APPLIANCE_CONTRACT = "MAJOR.MINOR"``: it loads when
#: the major matches and its minor is not newer than ours. A minor bump only adds (hooks, optional arguments
#: and attributes a plugin may use or ignore), so a plugin written for 1.0 loads unchanged under 1.1; a major
#: bump removes or changes something, and plugins written for the old major are refused with a message.
CONTRACT_VERSION = "1.1"

#: What each contract version added or changed, newest first (rendered into docs/plugins.md).
CHANGELOG: dict[str, list[str]] = {
    "1.1": [
        "`appliance.Option` and `appliance.Options`: source kinds, monitor kinds, trainers, job kinds and alert "
        "sinks declare their options; the host checks the project's tables (and job params) against them.",
        "Source kinds may take a `source` argument in `read(path, options, columns, source)`: the source's name.",
        "`JobKind(options=...)`: a job's params are checked against them when it is submitted.",
        "The `register_alert_sinks` hook and `[alert_sinks.NAME]` tables.",
        "`appliance.Outbox`: deliveries in a thread of their own, reported when one hangs.",
    ],
    "1.0": ["The first contract: registration, lifecycle, event, training, data and monitoring hooks."],
}

#: The contract version each hook arrived in, for hooks newer than 1.0.
HOOKS_ADDED_IN: dict[str, str] = {"register_alert_sinks": "1.1"}


def contract_compatible(wanted: str) -> bool:
    try:
        w_major, w_minor = (int(p) for p in str(wanted).split(".", 1))
    except ValueError:
        return False
    major, minor = (int(p) for p in CONTRACT_VERSION.split("."))
    return w_major == major and w_minor <= minor


@dataclass(frozen=True)
class JobKind:
    """A kind of long work the job runner can run.

    ``run`` receives a job handle (``job.params``, ``job.progress(fraction, message)``, ``job.log(line)``,
    ``job.cancelled``) and returns a JSON-able result. With ``process=True`` it must be a module-level function:
    it runs in a spawned child process that cannot open the stores, so a crash there fails the job, not the daemon;
    the child's handle also has ``job.send(type, data)``, delivered to ``on_message(job, type, data)`` in the daemon.
    Every kind must be idempotent: a retried job runs again from the start with the same params. ``options``
    declares the params it takes: a job submitted with an unknown or mistyped one is refused with a 400 naming
    it, and a pipeline step's ``params`` are checked the same way with file, line and key.
    """

    name: str
    run: Callable[..., Any]
    description: str = ""
    gpu: bool = False
    process: bool = False
    retries: int = 0
    backoff_s: float = 1.0
    timeout_s: float | None = None
    on_message: Callable[..., None] | None = None
    #: The params a job of this kind takes (``appliance.Options``); empty takes any params, unchecked.
    options: Options = field(default_factory=Options, hash=False, compare=False)

    def checked_params(self, params: dict) -> dict:
        """``params`` checked against ``options`` and completed with their defaults (a ``BadRequest`` naming
        the param that is wrong); unchanged when the kind declares no options."""
        if not self.options:
            return params
        return self.options.check(params, f"job kind {self.name!r}", what="param")


@dataclass(frozen=True)
class Route:
    """A control API route, mounted under ``/api/v1``.

    ``handler(request)`` gets an ``ApiRequest`` and returns JSON-able data or a ``Reply``; it raises
    ``ApplianceError`` for a 4xx. Plain functions run in a worker thread (they may use the stores); coroutine
    functions run on the event loop and must not block. Every route is behind the token and Host checks.

    ``max_body`` is the largest request body the route takes, in bytes, or a function giving it (asked on each
    request, so a setting can change it); by default the control API's 16 MB. A larger body is refused with a
    413 before it is read. Routes that take files (a model, an artifact) raise it.
    """

    method: str
    path: str
    handler: Callable[..., Any]
    summary: str = ""
    max_body: int | Callable[[], int] | None = None

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"


@dataclass(frozen=True)
class TuiPanel:
    """A dashboard panel declared as data (see the ``register_tui_panels`` hook); the dashboard renders it.

    ``route`` is the ``GET`` path under ``/api/v1`` it reads; ``kind`` is ``"table"`` (``columns`` in order,
    rows from the answer or from its ``rows_key``) or ``"keyvalue"``.
    """

    name: str
    title: str
    route: str
    kind: str = "table"
    columns: tuple[str, ...] = ()
    rows_key: str = ""
    refresh_s: float = 5.0
    description: str = ""

    def __post_init__(self):
        if self.kind not in ("table", "keyvalue"):
            raise ValueError(f"panel {self.name!r}: kind must be 'table' or 'keyvalue', got {self.kind!r}")
        if not self.route.startswith("/"):
            raise ValueError(f"panel {self.name!r}: route must be a path under /api/v1, got {self.route!r}")

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "route": self.route, "kind": self.kind,
                "columns": list(self.columns), "rows_key": self.rows_key, "refresh_s": self.refresh_s,
                "description": self.description}


@dataclass
class Reply:
    """A handler's answer with a status other than 200, or headers."""

    data: Any = None
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """A state change: persisted in the catalog, handed to ``on_event`` sinks and streamed to clients."""

    id: int
    time: float
    type: str
    subject: str
    data: dict
    source: str = "appliance"

    def to_dict(self) -> dict:
        return {"id": self.id, "time": self.time, "type": self.type, "subject": self.subject,
                "data": self.data, "source": self.source}


@dataclass
class Stream:
    """A streamed answer (server-sent events) from a coroutine handler: an async iterator of text chunks."""

    chunks: Any
    media_type: str = "text/event-stream"
