"""What the dashboard remembers between runs, in ``<home>/tui.json``: the theme, and the project the home's
daemon last served (so the no-daemon screen can start it again with that project)."""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE = "tui.json"


def load(home: Path | None) -> dict:
    if home is None:
        return {}
    try:
        data = json.loads((Path(home) / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(home: Path | None, **changes) -> None:
    """Merge ``changes`` in; a home that cannot be written to only loses the memory, never the dashboard."""
    if home is None:
        return
    data = {**load(home), **changes}
    if data == load(home):
        return
    path = Path(home) / FILE
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError:
        pass
