"""Test helper plugin: alert sink kinds (one that appends JSON lines to a file, one that hangs)."""

import json
import threading

from appliance import Option, Options, hookimpl

APPLIANCE_CONTRACT = "1.1"

_forever = threading.Event()


class JsonLines:
    name = "jsonl_fixture"
    description = "appends each alert to a file as one JSON line"
    options = Options(Option("path", str, required=True, doc="the file to append to"),
                      Option("indent", int, 0, "unused; shows an int option"))

    def send(self, alert, options):
        with open(options["path"], "a") as f:
            f.write(json.dumps(alert) + "\n")


class Hangs:
    name = "hang_fixture"
    description = "never returns"
    options = Options()

    def send(self, alert, options):
        _forever.wait()


@hookimpl
def register_alert_sinks(register):
    register(JsonLines())
    register(Hangs())
