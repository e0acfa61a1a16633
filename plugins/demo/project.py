"""Laying out the demo project: the repository's data/demo/appliance.toml plus generated transactions."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DATA = REPO / "data"


def generator():
    """``data/generator.py``, loaded by path: data/ holds files, not a package."""
    spec = importlib.util.spec_from_file_location("appliance_demo_generator", DATA / "generator.py")
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
        assert spec.loader
        spec.loader.exec_module(module)
    return module


def lay_out(project: Path, *, seed: int = 7, days: int = 10, per_day: int = 4000) -> dict:
    """Create the project once; an existing one is reused as it is (the demo is safe to run again)."""
    marker = project / ".generated"
    if marker.exists():
        return {"reused": True}
    project.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / "demo" / "appliance.toml", project / "appliance.toml")
    (project / "plugins").mkdir(exist_ok=True)
    counts = generator().generate(project / "data" / "transactions", now=time.time(), days=days, per_day=per_day,
                                  seed=seed)
    marker.write_text(str(counts))
    return counts
