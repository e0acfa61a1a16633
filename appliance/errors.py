"""One error vocabulary for the whole appliance.

Every error a person can see is an ``ApplianceError`` with a short title and a message that says what was
wrong and what to do. Plugins wrap library errors into it; the control API turns it into
``{"error": {"title", "message"}}`` with the error's HTTP status, and the CLI prints it without a traceback.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """An error meant for a person: a title, a message, and the HTTP status it maps to."""

    status = 400
    default_title = "Error"

    def __init__(self, message: str, *, title: str | None = None, status: int | None = None):
        super().__init__(message)
        self.title = title or self.default_title
        self.message = message
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        return {"error": {"title": self.title, "message": self.message}}

    def __str__(self) -> str:
        return f"{self.title}: {self.message}"


class BadRequest(ApplianceError):
    status = 400
    default_title = "Bad request"


class NotFound(ApplianceError):
    status = 404
    default_title = "Not found"


class Conflict(ApplianceError):
    status = 409
    default_title = "Conflict"


class ConfigError(ApplianceError):
    """The project's configuration is wrong; the message names file, line and key."""

    status = 400
    default_title = "Configuration error"


class PluginError(ApplianceError):
    """A plugin could not be loaded or broke the contract."""

    status = 500
    default_title = "Plugin error"


class DaemonNotRunning(ApplianceError):
    status = 503
    default_title = "No daemon"
