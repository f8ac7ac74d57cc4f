"""Each party's rate limit held in the service's own database, so that every instance of the
service on that database spends from one bucket per party: two registries behind a load
balancer give a party its rate once, not twice.

An instance leases units from the shared bucket a fifth of a second's worth at a time (at
least what the call costs) and spends them locally, so the database sees one short write per
lease, not one per call. What an instance leased and has not spent yet is the most the
instances together can be ahead of the limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import cast

from sqlalchemy import Double, Engine, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from services.common import db
from services.common.db import Base, Id


class RateBucketRow(Base):
    """A party's token bucket, shared by every instance of the service on this database: the
    units left at `refilled_at` (seconds since the epoch)."""

    __tablename__ = "rate_buckets"

    party_id: Mapped[Id] = mapped_column(primary_key=True)
    tokens: Mapped[float] = mapped_column(Double)
    refilled_at: Mapped[float] = mapped_column(Double)


LEASE_SECONDS = 0.2

_bucket = cast(Table, RateBucketRow.__table__)


class SharedRates:
    def __init__(
        self,
        engine: Engine,
        *,
        lease_seconds: float = LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._lease = lease_seconds
        self._clock = clock
        self._held: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, key: str, per_second: float, burst: int, cost: int = 1) -> float:
        """As services.common.ratelimit.RateLimiter.take, from the bucket every instance shares."""
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        cost = min(max(cost, 1), burst)
        with self._lock:
            held = self._held.get(key, 0.0)
            if held < cost:
                need = cost - held
                granted, wait = self._lease_from(key, per_second, burst, need)
                if wait:
                    return wait
                held += granted
            self._held[key] = held - cost
            return 0.0

    def _lease_from(
        self, key: str, per_second: float, burst: int, need: float
    ) -> tuple[float, float]:
        """Units leased from the shared bucket (at least `need`), or 0 and the seconds until
        `need` would be there."""
        # Whole units beyond the need, so a slow party's lease is exactly what it spends.
        want = min(float(burst), need + math.floor(per_second * self._lease))
        now = self._clock()
        with db.write_transaction(self._engine) as connection:
            insert = (postgresql if self._engine.dialect.name == "postgresql" else sqlite).insert
            connection.execute(
                insert(_bucket)
                .values(party_id=key, tokens=float(burst), refilled_at=now)
                .on_conflict_do_nothing()
            )
            tokens, refilled_at = connection.execute(
                select(_bucket.c.tokens, _bucket.c.refilled_at)
                .where(_bucket.c.party_id == key)
                .with_for_update()
            ).one()
            tokens = min(float(burst), tokens + max(0.0, now - refilled_at) * per_second)
            granted = min(tokens, want) if tokens >= need else 0.0
            connection.execute(
                update(_bucket)
                .where(_bucket.c.party_id == key)
                .values(tokens=tokens - granted, refilled_at=max(now, refilled_at))
            )
        if not granted:
            return 0.0, (need - tokens) / per_second
        return granted, 0.0
