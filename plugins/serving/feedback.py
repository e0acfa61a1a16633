"""Feedback: ground-truth labels for logged predictions, joined to the log by request id and row.

Labels change what monitoring reports, so posting them needs a credential (DESIGN, "Trust boundaries"): on the
serving port the feedback token (a file in the home, printed by ``appliance deployments feedback-token``) as a
bearer token, on the control API the daemon's own token. Either way a request is checked before it is queued
(``read_feedback``: one request id, one finite number of moderate size per row), and the queue holds at most
``[serving] feedback_max_pending`` labels: beyond, a 503 the client retries, never memory without bound.

The prediction log's writer takes the queue, flushes the predictions, then stores what it took: a prediction
answered before its feedback was posted is in the store by then. Labels for a request id that no logged prediction has are
refused (404, naming the id): a label that joins nothing is lost to monitoring, and with one id per request
the client learns exactly which one was wrong. So are labels that do not give one number per logged row (400).
The rest are stored in one insert per cycle, and each poster gets its answer then.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from appliance.logthrottle import LogThrottle

from .protocol import ProtocolError

throttled = LogThrottle(logging.getLogger("appliance.serving.feedback"))

#: Where the serving port's feedback token lives, under the home.
TOKEN_PATH = Path("serving") / "feedback-token"
#: Labels are numbers a model could predict, not the ends of the float range (sums of them must stay finite).
MAX_LABEL = 1e15
MAX_ID = 256

Done = Callable[[int, dict], None]  # (HTTP status, JSON body): how a poster gets its answer


def feedback_token(home: Path) -> str:
    """The serving port's feedback token, created (mode 0600) the first time it is asked for."""
    path = Path(home) / TOKEN_PATH
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def max_labels(deployments, queue: FeedbackQueue) -> int:
    """The most labels one feedback request may give: a request logs at most its deployment's
    ``max_request_rows`` rows, and the queue must be able to hold them."""
    return min(queue.max_pending, max((d.spec.max_request_rows for d in list(deployments.values())), default=1))


def read_feedback(body, max_labels: int) -> tuple[str, list[float]]:
    """The request id and labels of a feedback body, or a 4xx naming what is wrong."""
    if not isinstance(body, dict):
        raise ProtocolError(400, "feedback must be a JSON object: {\"request_id\": ..., \"labels\": [...]}")
    rid = body.get("request_id")
    if not isinstance(rid, str) or not rid or len(rid) > MAX_ID:
        raise ProtocolError(400, f"feedback needs 'request_id' (the id a prediction answered with, at most {MAX_ID} "
                                 "characters)")
    labels = body.get("labels", [body.get("label")] if "label" in body else None)
    if not isinstance(labels, list) or not labels:
        raise ProtocolError(400, "feedback needs 'label' (a number) or 'labels' (one number per row)")
    if len(labels) > max_labels:
        raise ProtocolError(413, f"feedback gives {len(labels)} labels; at most {max_labels} are taken at once")
    for i, v in enumerate(labels):
        if type(v) not in (int, float) or abs(v) > MAX_LABEL or not math.isfinite(v):
            raise ProtocolError(400, f"label {i} is {v!r}; labels are finite numbers from {-MAX_LABEL:g} to "
                                     f"{MAX_LABEL:g}")
    return rid, [float(v) for v in labels]


class FeedbackQueue:
    """Labels waiting for the prediction log's writer; thread-safe (the serving loop and the control API post)."""

    def __init__(self, max_pending: int = 100_000):
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._items: list[tuple[str, list[float], float, Done]] = []
        self._pending = 0
        self.stored = 0  # labels

    def stats(self) -> dict[str, int]:
        """Labels stored, and labels waiting to be (for /metrics)."""
        return {"feedback_stored_labels": self.stored, "feedback_pending_labels": self._pending}

    def submit(self, request_id: str, labels: list[float], done: Done) -> None:
        """Queue the labels; ``done`` gets the answer from the writer's thread once they are stored or refused."""
        with self._lock:
            if self._pending + len(labels) > self.max_pending:
                raise ProtocolError(503, f"{self._pending} feedback labels are waiting to be stored (the most is "
                                         f"{self.max_pending}); retry later")
            self._items.append((request_id, labels, time.time(), done))
            self._pending += len(labels)

    def take(self) -> list:
        """Everything queued, for ``write``. The writer takes it before it flushes the predictions: whatever a
        label names was answered, and so appended to the log, before the label was posted."""
        with self._lock:
            items, self._items, self._pending = self._items, [], 0
        return items

    def write(self, cur, items: list) -> None:
        """Store or refuse ``items`` and answer each poster (on the prediction log's writer)."""
        if not items:
            return
        try:
            answers = self._store(cur, items)
        except Exception as exc:  # a full disk, say: the poster hears of it and may retry
            throttled.exception("storing feedback failed")
            answers = [(503, {"error": f"the labels could not be stored ({str(exc)[:200]}); retry later"})] * len(items)
        for (*_, done), (status, body) in zip(items, answers, strict=True):
            try:
                done(status, body)
            except Exception:
                throttled.exception("answering a feedback request failed")

    def _store(self, cur, items) -> list[tuple[int, dict]]:
        import numpy as np
        import pyarrow as pa

        feedback_ids = pa.table({"request_id": sorted({rid for rid, *_ in items})})  # noqa: F841 (read by DuckDB)
        logged = dict(cur.execute(
            "select request_id, max(row_index) + 1 from serving.predictions where not shadow and request_id in "
            "(select request_id from feedback_ids) group by request_id").fetchall())
        answers, kept = [], []
        for rid, labels, ts, _ in items:
            rows = logged.get(rid)
            if rows is None:
                answers.append((404, {"error": f"no logged prediction has request id {rid!r} (a deployment's "
                                               "log_sample may leave requests out of the log)"}))
            elif len(labels) != rows:
                answers.append((400, {"error": f"request {rid!r} logged {rows} rows: feedback needs one label per "
                                               f"row, got {len(labels)}"}))
            else:
                answers.append((200, {"request_id": rid, "labels": len(labels)}))
                kept.append((rid, labels, ts))
        if kept:
            counts = [len(labels) for _, labels, _ in kept]
            feedback_batch = pa.table({  # noqa: F841 (read by DuckDB)
                "request_id": pa.array(np.repeat([rid for rid, *_ in kept], counts)),
                "row_index": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in counts])),
                "label": pa.array(np.concatenate([np.asarray(labels, np.float64) for _, labels, _ in kept])),
                "ts": pa.array((np.repeat([ts for *_, ts in kept], counts) * 1e6).astype(np.int64))
                .cast(pa.timestamp("us"))})
            cur.execute("insert into serving.feedback (request_id, row_index, label, ts) "
                        "select request_id, row_index, label, ts from feedback_batch")
            self.stored += sum(counts)
        return answers
