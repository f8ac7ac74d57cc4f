"""Denied calls in the access log, counted rather than each written once they repeat: a flood of
denials (a stolen certificate, a party unknown to the register) cannot grow the log without
bound, and none goes unrecorded.

The first denial of a party for a reason in an interval is an entry like any other (its
subject, case, request id). Its repeats within the interval are counted, and the count is one
entry of its own (outcome "denied", `repeats`, the first and last time, the operations) once
the interval is over: written with the party's next denial after it, or by `flush` (the
service calls it a few times an interval, and when it stops). A crash loses the count of the open
interval only; the first denial of it is in the log.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from baken.clock import Clock
from services.accesslog.store import AccessLog, Entry
from services.common import db

INTERVAL = dt.timedelta(minutes=1)
# The first entry's fields that say who asked and how, and stay in the count's entry; the rest
# (request id, case, subject) belong to one call.
_KEPT = ("processing_activity", "organisation", "role", "purpose", "denial_reason")


@dataclass(slots=True)
class _Window:
    opened: dt.datetime
    first: Entry
    repeats: int = 0
    last: dt.datetime | None = None
    operations: set[str] = field(default_factory=set)

    def count(self) -> Entry:
        assert self.last is not None
        body: dict[str, Any] = {k: self.first.body[k] for k in _KEPT if k in self.first.body}
        body |= {
            "repeats": self.repeats,
            "repeats_from": _iso(self.opened),
            "repeats_until": _iso(self.last),
            "operations": sorted(self.operations),
        }
        return Entry(time=self.last, outcome="denied", party_id=self.first.party_id, body=body)


class Denials:
    def __init__(
        self, engine: Engine, log: AccessLog, clock: Clock, interval: dt.timedelta = INTERVAL
    ) -> None:
        self._engine = engine
        self._log = log
        self._clock = clock
        self.interval = interval
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def to_write(self, entries: Sequence[Entry], now: dt.datetime) -> list[Entry]:
        """Of these denials, the entries to append now: each that opens an interval, and the
        counts of intervals they close; the rest are counted."""
        written: list[Entry] = []
        with self._lock:
            for entry in entries:
                key = (entry.party_id, str(entry.body.get("denial_reason", "")))
                window = self._windows.get(key)
                if window is not None and now - window.opened < self.interval:
                    window.repeats += 1
                    window.last = now
                    window.operations.add(str(entry.body.get("operation", "")))
                    continue
                if window is not None and window.repeats:
                    written.append(window.count())
                self._windows[key] = _Window(now, entry)
                written.append(entry)
        return written

    def write(self, entries: Sequence[Entry]) -> None:
        """Append these denials (as `to_write` says) in a transaction of their own."""
        now = self._clock.now()
        wanted = self.to_write(entries, now)
        if wanted:
            with db.write_transaction(self._engine) as connection:
                self._log.append(connection, wanted, now)

    def flush(self, everything: bool = False) -> int:
        """Append the counts of the intervals that are over (of all, at a stop): how many."""
        now = self._clock.now()
        with self._lock:
            closed = [
                key
                for key, window in self._windows.items()
                if everything or now - window.opened >= self.interval
            ]
            counts = [w.count() for key in closed if (w := self._windows.pop(key)).repeats]
        if counts:
            with db.write_transaction(self._engine) as connection:
                self._log.append(connection, counts, now)
        return len(counts)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()
