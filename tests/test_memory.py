"""The daemon settles its heap after startup and each model load, so full collections stop stalling serving."""

import gc
import weakref

from appliance.memory import settle


class _Node:
    pass


def test_settle_collects_garbage_then_freezes_the_survivors():
    # A reference cycle that nothing holds: only the cycle collector frees it.
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    kept = [_Node() for _ in range(3)]
    before = gc.get_freeze_count()
    try:
        settle()
        assert gone() is None, "garbage from before the settle must be collected, not frozen"
        assert gc.get_freeze_count() > before
        # Frozen objects are out of every generation, so later full collections do not walk them.
        tracked = {id(o) for o in gc.get_objects()}
        assert id(kept) not in tracked and id(kept[0]) not in tracked
        newer = [_Node()]
        assert id(newer) in {id(o) for o in gc.get_objects()}
    finally:
        gc.unfreeze()
