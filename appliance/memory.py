"""Keeping Python's cycle collector off the serving path.

A full (oldest-generation) collection walks every tracked object in the process: with the libraries a daemon
imports and a few loaded models that is hundreds of thousands of objects and 25-35 ms with the GIL held, a
stall every request in flight waits out (it was the serving port's p99). Objects alive after startup or after a
model load stay alive, so they are collected once and then frozen: later collections walk only what is newer.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what is garbage now, then exempt every surviving object from future collections."""
    gc.collect()
    gc.freeze()
