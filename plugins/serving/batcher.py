"""Dynamic batching with Triton's semantics: hold requests up to ``max_queue_delay`` or ``max_batch_size`` rows,
run them as one batch, and hand each request back its own rows.

Runs on the serving event loop, so it needs no locks: requests that arrive while a batch waits are read by
the loop in the same turn and join it. A batch only ever holds requests for one model version, so a hot swap
never mixes versions inside a batch. Each request gets its rows back through a callback (no future, no task:
at tens of thousands of requests a second those were a fifth of the serving thread's time). Whatever the
callbacks return is handed, with the batch's stacked inputs and outputs, to ``on_answered``: the server logs a
batch's predictions with one append instead of one per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from appliance.logthrottle import LogThrottle

# Per request or per batch: at most once a minute per kind, so a failing model cannot flood the log.
throttled = LogThrottle(logging.getLogger("appliance.serving"))


class Batcher:
    def __init__(self, max_batch_size: int, max_queue_delay_s: float,
                 on_batch: Callable[[int, float, float], None] | None = None,
                 on_answered: Callable[[Any, dict, dict, list], None] | None = None):
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.on_batch = on_batch  # (rows, queue time of the oldest request, seconds the model ran)
        self.on_answered = on_answered  # (model, stacked inputs, stacked outputs, what each callback returned)
        self._pending: list[tuple[dict, Callable[[Any], None], float]] = []
        self._rows = 0
        self._model = None
        self._timer: asyncio.TimerHandle | None = None

    def submit(self, model, arrays: dict[str, np.ndarray], done: Callable[[Any], Any]) -> None:
        """Queue one request's rows; ``done`` gets its outputs, or the exception the batch raised."""
        rows = next(iter(arrays.values())).shape[0]
        if self._pending and (self._model is not model or self._rows + rows > self.max_batch_size):
            self._flush()
        self._model = model
        self._pending.append((arrays, done, time.perf_counter()))
        self._rows += rows
        if self._rows >= self.max_batch_size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_queue_delay_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, model = self._pending, self._model
        self._pending, self._rows, self._model = [], 0, None
        if not pending:
            return
        started = time.perf_counter()
        try:
            if len(pending) == 1:
                merged = pending[0][0]
                result = model.infer(merged)
                outs = [result]
            else:
                names = pending[0][0].keys()
                merged = {n: np.concatenate([p[0][n] for p in pending]) for n in names}
                result = model.infer(merged)
                outs, start = [], 0
                for arrays, _, _ in pending:
                    n = next(iter(arrays.values())).shape[0]
                    outs.append({k: v[start:start + n] for k, v in result.items()})
                    start += n
        except Exception as exc:
            outs, result = [exc] * len(pending), None
        else:
            if self.on_batch:
                self.on_batch(sum(next(iter(p[0].values())).shape[0] for p in pending),
                              started - min(p[2] for p in pending), time.perf_counter() - started)
        notes = []
        for (_, done, _), out in zip(pending, outs, strict=True):
            try:
                notes.append(done(out))
            except Exception:  # one request's bad answer must not cost the others theirs
                throttled.exception("answering a batched request failed")
                notes.append(None)
        if result is not None and self.on_answered is not None:
            try:
                self.on_answered(model, merged, result, notes)
            except Exception:
                throttled.exception("after answering a batch")
