"""Fair use: a token bucket per user. Pure: the clock is an argument.

Each user's bucket holds up to ``burst`` requests and fills at ``rate`` per second; a request takes
one. An empty bucket answers how long until the next request may go, which the server sends back
(HTTP 429 with ``Retry-After``) and the commands wait out.
"""

from __future__ import annotations


class RateLimiter:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._next_prune = 0.0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, now: float) -> float:
        """Take one request from ``key``'s bucket: 0.0 if it may go now, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        tokens, when = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - when) * self.rate)
        if tokens >= 1.0 - 1e-9:  # (rounding of the clock)
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        if now >= self._next_prune:
            self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        """Forget the buckets that have filled up again (they are as good as new)."""
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        self._next_prune = now + max(1.0, full_after)

    def __len__(self) -> int:
        return len(self._buckets)
