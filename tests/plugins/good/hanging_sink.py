"""An event sink that hangs forever: the daemon and the other sinks must not notice."""

import threading

from appliance import hookimpl

APPLIANCE_CONTRACT = "1.0"

_forever = threading.Event()


@hookimpl
def on_event(event, app):
    _forever.wait()
