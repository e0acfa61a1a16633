"""Running a job in a child process (``JobKind(process=True)``): what is sent to it, and what comes back.

The child (``appliance.jobs.child``) gets the job as one JSON line on stdin and answers with JSON lines on
stdout: progress, log lines, messages for the kind's ``on_message``, then its result or its error. Anything
else it prints, and its stderr, become the job's log lines.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..errors import ApplianceError
from .handle import Cancelled


def run_in_child(running: Any, home: str, report: Callable[[str, dict], None],
                 interrupt: Callable[[Any], None], settings: dict | None = None) -> Any:
    """Run ``running``'s job in a child process; returns its result, or raises as the job failed. ``settings``
    is the job kind's plugin's table of the project (``job.settings`` in the child)."""
    kind, handle = running.kind, running.handle
    fn = kind.run
    module = sys.modules.get(fn.__module__)
    module_file = getattr(module, "__file__", None) if fn.__module__.startswith("appliance_dropin_") else None
    spec = {"target": f"{fn.__module__}:{fn.__qualname__}", "module_file": module_file,
            "job_id": handle.id, "kind": kind.name, "params": handle.params, "attempt": handle.attempt,
            "home": home, "settings": settings or {}}
    # -P: nothing in the daemon's working directory (a triton/ export, say) may stand in for a real module.
    proc = subprocess.Popen([sys.executable, "-P", "-m", "appliance.jobs.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    running.proc = proc
    if handle.cancelled:
        interrupt(running)
    stderr_thread = threading.Thread(target=_pump_stderr, args=(proc, report), daemon=True)
    stderr_thread.start()
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    outcome: dict | None = None
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            report("log", {"line": line.rstrip("\n")})
            continue
        t = msg.get("t")
        if t in ("result", "error"):
            outcome = msg
        elif t == "progress":
            report("progress", {"fraction": msg["fraction"], "message": msg.get("message", "")})
        elif t in ("log", "message"):
            report(t, msg)
    code = proc.wait()
    stderr_thread.join(5)
    if handle.cancelled and not running.timed_out and (running.user_cancelled or running.shutdown):
        raise Cancelled()
    if outcome and outcome["t"] == "result" and code == 0:
        return outcome.get("value")
    if outcome and outcome["t"] == "error":
        report("log", {"line": outcome.get("traceback", "")})
        raise ApplianceError(outcome.get("message") or "the job failed", title=outcome.get("title"))
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        raise ApplianceError(f"the job's child process was killed by {name}{hint}")
    raise ApplianceError(f"the job's child process exited with code {code} before reporting a result")


def _pump_stderr(proc: subprocess.Popen, report: Callable[[str, dict], None]) -> None:
    assert proc.stderr
    for line in proc.stderr:
        report("log", {"line": line.rstrip("\n")})
