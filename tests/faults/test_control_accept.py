"""Out of descriptors, the control port's failing accepts are logged once, not once a second with a traceback
each: a night of it would rotate the log that says what happened before."""

from __future__ import annotations

import errno
import logging
import time

from appliance.api.accepts import AcceptLog
from faults.harness import LimitedDaemon, idle_connections, open_fds


def accept_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "accept" in line and ("ERROR" in line or "WARNING" in line)]


def test_failing_accepts_are_logged_once_while_they_last(tmp_path):
    d = LimitedDaemon(tmp_path / "home", nofile=64).start()
    try:
        log_path = d.home / "logs" / "daemon.log"
        start = log_path.stat().st_size
        port = d.info["port"]
        spare = 64 - open_fds(d.proc.pid)
        with idle_connections("127.0.0.1", port, spare + 20):
            time.sleep(2.5)  # asyncio retries a failed accept every second: two retries, still one line
            with open(log_path, errors="replace") as f:
                f.seek(start)
                logged = f.read()
        errors = accept_errors(logged)
        assert len(errors) == 1, "\n".join(errors)
        assert "Too many open files" in errors[0] and str(port) in errors[0]
        assert "Traceback" not in logged
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # descriptors back: the port accepts again
            try:
                if d.get("/health").status_code == 200:
                    break
            except Exception:
                time.sleep(0.2)
        assert d.get("/health").status_code == 200
    finally:
        d.stop()


def test_a_long_outage_is_counted_once_a_minute(caplog):
    now = [0.0]
    handler = AcceptLog("control port http://127.0.0.1:7870", clock=lambda: now[0])
    failure = {"message": "socket.accept() out of system resource",
               "exception": OSError(errno.EMFILE, "Too many open files")}
    with caplog.at_level(logging.WARNING, logger="appliance.api"):
        for second in range(150):  # asyncio retries once a second
            now[0] = float(second)
            handler(None, failure)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "cannot accept connections: Too many open files" in lines[0]
    assert lines[1].endswith("60 accept failure(s) in the last 60 s (Too many open files)")
    assert lines[2].endswith("60 accept failure(s) in the last 60 s (Too many open files)")
