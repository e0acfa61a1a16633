"""The terminal dashboard: a client of the daemon's control API and event stream, never of its stores."""

from __future__ import annotations

from pathlib import Path


def run(home: Path, *, readonly: bool = False) -> None:
    """Attach a dashboard to the daemon of ``home`` (``appliance tui``)."""
    from .app import ApplianceApp
    from .client import ApiClient

    ApplianceApp(ApiClient(home), readonly=readonly, home=home).run()
