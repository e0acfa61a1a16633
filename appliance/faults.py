"""Named fault points: places where the fault tests may kill the daemon, or make a write fail, on purpose.

The fault harness (``tests/faults/``) starts a daemon with ``APPLIANCE_FAULTS`` naming the points to trip, each
``name`` (SIGKILL at that point: the process gets no chance to clean up, as with a power cut or the OOM killer)
or ``name=oserror:ERRNO`` (an ``OSError`` with that errno, e.g. ``28`` for a full disk or ``24`` for too many
open files, raised where the real one would be). ``name@N`` trips from the N-th time the point is reached on (a disk stays full once it is).

Unset (always, outside the tests), ``fault_point`` is one dictionary lookup: it costs nothing on a hot path.
"""

from __future__ import annotations

import errno
import os
import signal
import threading

ENV = "APPLIANCE_FAULTS"


def _parse(spec: str) -> dict[str, tuple[str, int]]:
    points: dict[str, tuple[str, int]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, action = item.partition("=")
        name, _, nth = name.partition("@")
        points[name] = (action or "kill", int(nth or 1))
    return points


_POINTS = _parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def fault_point(name: str) -> None:
    """Trip the fault the harness set for ``name``, if any: SIGKILL, or an OSError with the errno it named."""
    if not _POINTS:
        return
    spec = _POINTS.get(name)
    if spec is None:
        return
    action, nth = spec
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] < nth:
            return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action.startswith("oserror:"):
        code = int(action.split(":", 1)[1])
        raise OSError(code, f"{os.strerror(code)} (fault point {name!r})")
    raise ValueError(f"{ENV}: unknown action {action!r} for {name!r}; expected kill or oserror:ERRNO "
                     f"(e.g. oserror:{errno.ENOSPC})")
