"""The demo: card-fraud detection on a fresh home, end to end, with traffic, in about a minute.

It only talks to the daemon through the control API and the serving port, as any user's script would.
"""

from __future__ import annotations

from appliance import hookimpl

from .command import demo

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def register_commands(register):
    register(demo)
