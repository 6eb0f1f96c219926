"""The server's garbage-collector tending (wulf.server.gctune): frozen objects are out of the collector's
sight, and the rare full collection frees what they left in cycles."""

from __future__ import annotations

import gc
import weakref

from wulf.server import gctune


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_a_cycle_frozen_while_alive_is_freed_by_the_full_collection() -> None:
    try:
        gctune.settle()
        assert gc.get_freeze_count() > 0
        cycle = _Node()
        gone = weakref.ref(cycle)
        gc.freeze()
        del cycle
        gc.collect()
        assert gone() is not None  # frozen: not looked at
        assert gctune.full() >= 0
        assert gone() is None and gc.get_freeze_count() > 0  # collected, and the rest frozen again
    finally:
        gc.unfreeze()
