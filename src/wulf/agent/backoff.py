"""How long an agent waits before it tries the server again: twice as long after each failure, up to
``[agent] reconnect_max``, and a random part of that (between half and all of it), so that the agents
a restart of the server cut off all at once do not all come back at the same moments (issue 16 §2)."""

from __future__ import annotations

import random

FIRST = 0.2
"""The first pause, in seconds (a server that restarts is soon back)."""


class Backoff:
    def __init__(self, cap: float, rng: random.Random | None = None) -> None:
        self.cap = cap
        self.step = FIRST
        self.rng = rng or random.Random()

    def reset(self) -> None:
        """The connection had been up for a while: the next failure starts over from the first pause."""
        self.step = FIRST

    def next(self) -> float:
        """The pause before the next try."""
        step = min(self.step, self.cap)
        self.step = min(self.step * 2, self.cap)
        return step / 2 + self.rng.uniform(0, step / 2)
