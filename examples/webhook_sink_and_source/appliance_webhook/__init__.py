"""appliance-webhook: alerts posted to a webhook, and a source kind for semicolon CSV with decimal commas.

Written against the public contract only, as any third-party plugin is: ``on_event`` for the sink (it runs in
its own thread, so a slow endpoint never delays the daemon), ``register_sources`` for the source kind,
``register_routes`` for a test alert and the delivery status, ``configure`` to check ``[webhook]``.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from appliance import ApplianceError, Reply, Route, hookimpl

APPLIANCE_CONTRACT = "1.0"

DEFAULTS = {"url": "", "types": ["alert."], "timeout_s": 5.0}
#: The settings in effect; ``configure`` replaces them only once the new ones are checked.
SETTINGS: dict = dict(DEFAULTS)
STATUS = {"delivered": 0, "failed": 0, "last_error": ""}
_lock = threading.Lock()


# ------------------------------------------------------------------------------------------- the sink


@hookimpl
def on_event(event, app):
    url = SETTINGS["url"]
    if not url or not event.type.startswith(tuple(SETTINGS["types"])):
        return
    body = json.dumps(event.to_dict(), default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "appliance-webhook/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=SETTINGS["timeout_s"]) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        with _lock:
            STATUS["failed"] += 1
            STATUS["last_error"] = f"event {event.id} ({event.type}): {exc}"
        # Raising records the failure against this plugin, where `appliance plugins` and the dashboard show it.
        raise ApplianceError(f"could not post event {event.id} to the webhook: {exc}",
                             title="Webhook failed") from None
    with _lock:
        STATUS["delivered"] += 1


# ------------------------------------------------------------------------------------------- the source kind


class EuropeanCsv:
    """``kind = "csv_eu"``: ``;`` between fields and ``,`` before decimals (``1234,5``; no thousands separator)."""

    name = "csv_eu"

    def read(self, path, options, columns):
        header = "true" if options.get("header", True) else "false"
        source = f"read_csv({_sql(path)}, delim=';', decimal_separator=',', header={header}"
        if columns is None:
            return source + ")"  # DuckDB types the columns itself, reading decimal commas as decimals
        # Typed reads get text that the ingest engine checks and casts, so turn decimal commas into points.
        types = ", ".join(f"{_sql(n)}: {_sql(t)}" for n, t in columns)
        fields = ", ".join(f"regexp_replace({_ident(n)}, '^([-+]?[0-9]*),([0-9]+)$', '\\1.\\2') as {_ident(n)}"
                           for n, _ in columns)
        return f"(select {fields} from {source}, columns={{{types}}}))"


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@hookimpl
def register_sources(register):
    register(EuropeanCsv())


# ------------------------------------------------------------------------------------------- routes and settings


def _test_alert(request):
    event = request.app.events.emit("alert.test", subject="plugin:webhook",
                                    data={"message": "a test alert from appliance-webhook"}, source="webhook")
    return Reply({"event_id": event.id, "url": SETTINGS["url"]}, 202)


def _status(request):
    with _lock:
        return {"url": SETTINGS["url"], "types": SETTINGS["types"], **STATUS}


@hookimpl
def register_routes(register):
    register(Route("POST", "/webhook/test", _test_alert, "emit an alert.test event (posted to the webhook)"))
    register(Route("GET", "/webhook", _status, "the webhook's target and delivery counts"))


@hookimpl
def configure(app, config):
    section = config.section("webhook")
    new = dict(DEFAULTS)
    for key, value in section.items():
        if key not in DEFAULTS:
            raise config.error(f"unknown key; known keys: {', '.join(sorted(DEFAULTS))}", "webhook", key)
        new[key] = value
    url = new["url"]
    if not isinstance(url, str) or (url and (urlsplit(url).scheme not in ("http", "https")
                                             or not urlsplit(url).hostname)):
        raise config.error(f"expected an http:// or https:// URL, got {url!r}", "webhook", "url")
    if not isinstance(new["types"], list) or not all(isinstance(t, str) and t for t in new["types"]):
        raise config.error(f"expected a list of event type prefixes, got {new['types']!r}", "webhook", "types")
    timeout = new["timeout_s"]
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise config.error(f"expected seconds > 0, got {timeout!r}", "webhook", "timeout_s")
    SETTINGS.clear()
    SETTINGS.update(new)
