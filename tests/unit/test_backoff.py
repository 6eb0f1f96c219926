"""The agent's pauses between tries to reach the server (wulf.agent.backoff): doubling up to the cap,
each a random half to all of its step, so that agents cut off together do not come back together."""

from __future__ import annotations

import random

from wulf.agent.backoff import FIRST, Backoff


def test_pauses_double_up_to_the_cap_each_between_half_and_all_of_its_step() -> None:
    b = Backoff(30.0, random.Random(1))
    steps = [FIRST * 2**k for k in range(12)]
    for step in steps:
        pause = b.next()
        assert min(step, 30.0) / 2 <= pause <= min(step, 30.0)
    b.reset()
    assert FIRST / 2 <= b.next() <= FIRST


def test_agents_cut_off_together_do_not_come_back_together() -> None:
    agents = [Backoff(30.0, random.Random(i)) for i in range(100)]
    for _ in range(4):
        pauses = [a.next() for a in agents]
    assert len({round(p, 3) for p in pauses}) > 50  # (without jitter: all 100 the same)
