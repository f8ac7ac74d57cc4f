"""A service's expiry (docs/RETENTION.md): on a timer on the services' clock, one transaction
removes what its schedule says had its period, then the access log's oldest signed segment,
and writes one access-log entry saying which kinds went and how many, never whose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import Connection, Engine

from baken.clock import Clock
from services.accesslog.store import AccessLog, Entry
from services.common import db
from services.common.periodic import Periodic
from services.common.retention import month_cutoff
from services.common.settings import RetentionSettings

RETENTION_ACTIVITY = "baken:bewaartermijn"
EXPIRED = "expired"
log = structlog.get_logger("baken.retention")

# Removes each kind's rows that had their period under the schedule: kind -> how many went.
Kinds = Callable[[Connection, dt.datetime, RetentionSettings], dict[str, int]]
# The first access-log entry another table still names (the log keeps it and what follows).
Keeps = Callable[[Connection], int | None]


class Expirer:
    def __init__(
        self,
        engine: Engine,
        access_log: AccessLog,
        clock: Clock,
        schedule: RetentionSettings,
        *,
        party_id: str,
        kinds: Kinds = lambda _connection, _now, _schedule: {},
        keeps: Keeps = lambda _: None,
    ) -> None:
        self._engine = engine
        self._log = access_log
        self._clock = clock
        self._schedule = schedule
        self._party_id = party_id
        self._kinds = kinds
        self._keeps = keeps
        self._timer = Periodic(
            "expirer", self.expire, lambda: schedule.interval_seconds, at_start=True
        )

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def expire(self) -> dict[str, int]:
        """One run: what went, by kind (nothing that went is left out of the entry)."""
        # The write lock first: a SQLite transaction that read and then writes fails at once
        # when another writer committed in between.
        with db.write_transaction(self._engine) as connection:
            now = self._clock.now()
            counts = self._kinds(connection, now, self._schedule)
            before = month_cutoff(now, self._schedule.access_log_months)
            expired = self._log.expire(connection, before, now, keep_from=self._keeps(connection))
            if expired is not None:
                counts["access_log"] = expired.count
            counts = {kind: n for kind, n in counts.items() if n}
            if counts:
                body: dict[str, Any] = {
                    "processing_activity": RETENTION_ACTIVITY,
                    "operation": "expiry",
                    "expired": counts,
                }
                if expired is not None:
                    body["access_log_expired_up_to"] = expired.last
                entry = Entry(time=now, outcome=EXPIRED, party_id=self._party_id, body=body)
                self._log.append(connection, [entry], now)
        if counts:
            log.info("expired what had its retention period", **counts)
        return counts
