"""The built-in event sink: every event as one JSON line in the home's ``logs/events.jsonl`` (rotated).

It is the simplest ``on_event`` sink, and the one to copy for Slack, email or a webhook.
"""

from __future__ import annotations

import json
import threading

from appliance import hookimpl

APPLIANCE_CONTRACT = "1.0"

MAX_BYTES = 50_000_000
_state = threading.local()


@hookimpl
def on_event(event, app):
    path = app.home.logs_dir / "events.jsonl"
    f = getattr(_state, "file", None)
    if f is None or f.closed:
        f = _state.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open by this sink's thread
    f.write(json.dumps(event.to_dict(), default=str) + "\n")
    f.flush()
    if f.tell() > MAX_BYTES:
        f.close()
        path.replace(path.with_suffix(".jsonl.1"))


@hookimpl
def shutdown(app):
    f = getattr(_state, "file", None)
    if f is not None:
        f.close()
