"""Exponential backoff with jitter: the one rule for every retry in Baken (a source adapter's
sync batches and its delivery streams, the feedback service's redeliveries and its signal
follower)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """After the n-th failure (n >= 1) wait base, 2x base, 4x base ... seconds, at most cap,
    times a random factor from `jitter`, so that retries that failed together spread out."""

    base: float
    cap: float
    jitter: tuple[float, float] = (0.5, 1.0)

    def delay(self, n: int) -> float:
        wait: float = min(self.cap, self.base * 2 ** max(n - 1, 0))
        return wait * random.uniform(*self.jitter)
