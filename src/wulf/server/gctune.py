"""The server's garbage collector: no long pauses on the hot path.

A server of a thousand nodes holds millions of objects (jobs, the outside work on every node, their
records), and they grow as work comes. CPython's collector makes a full pass over all of them every time
the objects that survived grew by a quarter since the last one: with ~65,000 outside process clusters
that pass took 0.4-0.5 s, every few seconds while jobs were scheduled, and every request waited for it.

Most of those objects live long, and are freed by their reference counts when they go. So every
FREEZE_EVERY seconds what is alive is moved out of the collector's sight (``gc.freeze``: a constant-time
splice); a full pass then looks only at what came since. What the frozen objects hold in reference
cycles that becomes garbage later is not freed until FULL_EVERY seconds have passed: then everything is
put back, collected once (the one long pass, rarely) and frozen again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("wulf.server")

FREEZE_EVERY = 1.0
FULL_EVERY = 3600.0


def settle() -> None:
    """After start (the store read): collect what loading left, then freeze the rest."""
    gc.collect()
    gc.freeze()


def full() -> float:
    """The rare full collection: everything back in sight, collected, frozen again; its seconds."""
    t = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - t


async def keep_tending() -> None:
    """Freeze what is alive every FREEZE_EVERY seconds; a full collection every FULL_EVERY seconds."""
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(FREEZE_EVERY)
        if time.monotonic() - last_full >= FULL_EVERY:
            last_full = time.monotonic()
            log.info("full garbage collection: %.0f ms", full() * 1000)
        else:
            gc.freeze()
