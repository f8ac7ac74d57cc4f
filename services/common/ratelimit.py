"""Token buckets, one per key: a party may spend `per_second` units a second, with bursts up to
`burst`. What each party may spend is for the party register to say
(services/common/admission.py); a service keeps the buckets in its database, shared by its
instances (services/common/shared_rates.py), and this in-process one serves where there is no
database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Rates(Protocol):
    def take(self, key: str, per_second: float, burst: int, cost: int = 1) -> float:
        """Spend `cost` units of the key's bucket: 0.0 when it may go ahead, else how many
        seconds until it could (nothing is spent then)."""
        ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, per_second: float, burst: int, cost: int = 1) -> float:
        """Spend `cost` units of the key's bucket: 0.0 when it may go ahead, else how many
        seconds until it could (nothing is spent then). A cost above the burst costs the burst
        (a BatchLookup of the night's inflow spends one unit per subject in one go)."""
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        cost = min(max(cost, 1), burst)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(burst), now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * per_second)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / per_second
