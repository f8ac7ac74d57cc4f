"""Per-party rate limits: a token bucket per calling party, so that no desk can sweep the
registry (enumerate pseudonyms) or crowd out the others. Not limited here: Baken's own services
(role service), each limited where its own callers come in, and the source adapters, which look
nobody up, send a sync as one stream and acknowledge a house's backlog item by item (a house
back after a week acknowledges thousands in a row)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

EXEMPT_ROLES = frozenset({"service", "source-adapter"})


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`per_second` units a party may spend, with bursts up to `burst` (a BatchLookup of the
    night's inflow spends one unit per subject in one go)."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        exempt_roles: frozenset[str] = EXEMPT_ROLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.per_second = per_second
        self.burst = burst
        self._exempt = exempt_roles
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, party: str, role: str, cost: int = 1) -> float:
        """Spend `cost` units of the party's bucket: 0.0 when it may go ahead, else how many
        seconds until it could (nothing is spent then)."""
        if role in self._exempt:
            return 0.0
        cost = min(max(cost, 1), self.burst)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(party)
            if bucket is None:
                bucket = self._buckets[party] = _Bucket(float(self.burst), now)
            bucket.tokens = min(
                self.burst, bucket.tokens + (now - bucket.updated) * self.per_second
            )
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.per_second
