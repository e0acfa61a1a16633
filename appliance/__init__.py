"""appliance: an ML platform in one box.

The public plugin contract is what this module exports: ``hookimpl``, the hook specs in ``appliance.hookspecs``,
and the objects in ``appliance.contract``. Importing ``appliance`` stays cheap: nothing heavy loads here.
"""

from __future__ import annotations

__version__ = "0.1.0"

import pluggy

from .contract import CONTRACT_VERSION, Event, JobKind, Reply, Route, Stream, TuiPanel
from .errors import ApplianceError, BadRequest, ConfigError, Conflict, NotFound
from .migrations import Migrations
from .options import Option, Options
from .outbox import Outbox
from .threads import become_background, name_thread

hookimpl = pluggy.HookimplMarker("appliance")

__all__ = [
    "CONTRACT_VERSION",
    "ApplianceError",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "Event",
    "JobKind",
    "Migrations",
    "NotFound",
    "Option",
    "Options",
    "Outbox",
    "Reply",
    "Route",
    "Stream",
    "TuiPanel",
    "become_background",
    "name_thread",
    "hookimpl",
]


def __getattr__(name: str):
    # ApiRequest pulls in the HTTP stack; only route handlers need it, so load it on first use.
    if name == "ApiRequest":
        from .api.request import ApiRequest

        return ApiRequest
    raise AttributeError(name)
