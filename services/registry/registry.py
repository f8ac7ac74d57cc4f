"""The registry's use cases: apply a batch of source changes, and look a person up nationwide."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Mapping, Sequence

from sqlalchemy import Engine

from baken.clock import Clock
from baken.errors import FieldViolation, InvalidArgument
from baken.houses import House
from baken.registry.v1 import marker_pb2
from services.registry import repository, validation
from services.registry.freshness import Freshness, freshness
from services.registry.markers import (
    MarkerHit,
    RecordKey,
    Rejection,
    SyncCounts,
)
from services.registry.sync import (
    EMPTY_DIGEST,
    Outcome,
    StoredState,
    changes_row,
    classify,
    state_of,
)


class Registry:
    def __init__(self, engine: Engine, houses: Mapping[str, House], clock: Clock) -> None:
        self._engine = engine
        self._finder = repository.Finder(engine)
        self._houses = houses
        self._clock = clock
        # Read-classify-write must not interleave: two streams for the same record would both
        # insert it (IntegrityError) or let an older version overwrite a newer one. This lock
        # covers one process; repository.serialise_sync covers several on PostgreSQL.
        self._sync_lock = threading.Lock()

    @property
    def houses(self) -> Mapping[str, House]:
        return self._houses

    def sync(self, first_index: int, changes: Sequence[marker_pb2.MarkerChange]) -> SyncCounts:
        """Apply one message of a SyncMarkers stream in one transaction.

        Invalid changes are rejected with their reasons; the valid ones land.
        """
        counts = SyncCounts()
        today = self._clock.today()
        claims = [
            (
                first_index + offset,
                change,
                validation.claimed_key(change, self._houses),
                _record_digest(change),
            )
            for offset, change in enumerate(changes)
        ]
        with self._sync_lock, self._engine.begin() as connection:
            repository.serialise_sync(connection)
            stored = repository.load_states(connection, {k for _, _, k, _ in claims if k})
            states: dict[RecordKey, StoredState] = {k: s.state for k, s in stored.items()}
            writes: dict[RecordKey, repository.Write] = {}
            for index, change, key, digest in claims:
                previous = states.get(key) if key else None
                if previous and previous.replayed_by(change.upsert.source_version, digest):
                    counts.unchanged += 1
                    continue
                try:
                    record = validation.marker_change(change, self._houses, today)
                except InvalidArgument as error:
                    _reject(counts, index, change, error.reason, error.violations)
                    continue
                incoming = state_of(record, digest)
                outcome = classify(previous, incoming)
                if outcome is Outcome.VERSION_REUSED:
                    _reject(counts, index, change, "VERSION_REUSED", [_VERSION_REUSED])
                    continue
                setattr(counts, outcome.value, getattr(counts, outcome.value) + 1)
                # A tombstone for a record never seen is kept too: it blocks older replays.
                if changes_row(outcome) or previous is None:
                    states[record.key] = incoming
                    known = stored.get(record.key)
                    writes[record.key] = repository.Write(
                        known.id if known else None, record, incoming
                    )
            repository.write(connection, list(writes.values()), self._clock.now())
        return counts

    def lookup(self, values: Sequence[bytes]) -> list[MarkerHit]:
        """Every live marker of the person nationwide, strongest match first."""
        return _hits(self._finder.find(values), self._clock.today())

    def lookup_many(self, subjects: Sequence[Sequence[bytes]]) -> list[list[MarkerHit]]:
        """lookup() for each subject, with one query for all of them."""
        rows = self._finder.find(list(dict.fromkeys(v for values in subjects for v in values)))
        by_value: dict[bytes, list[repository.Found]] = {}
        for row in rows:
            by_value.setdefault(row.value, []).append(row)
        today = self._clock.today()
        return [
            _hits([row for v in values for row in by_value.get(v, ())], today) if rows else []
            for values in subjects
        ]


def _hits(rows: Sequence[repository.Found], today: dt.date) -> list[MarkerHit]:
    best: dict[str, repository.Found] = {}
    for row in rows:
        if row.uid not in best or row.kind < best[row.uid].kind:
            best[row.uid] = row
    hits = []
    for row in best.values():
        fresh = freshness(row.advice_date, today)
        hits.append(
            MarkerHit(
                uid=row.uid,
                key=RecordKey(row.source_system, row.house_id, row.source_record_id),
                source_version=row.source_version,
                target_group=row.target_group,
                plan_status=row.plan_status,
                mark_date=row.mark_date,
                advice=None if fresh is Freshness.EXPIRED else row.advice,
                advice_date=row.advice_date,
                freshness=fresh,
                at_information=repository.at_information(row.at_information),
                match_kind=row.kind,
            )
        )
    hits.sort(key=lambda h: (h.match_kind, h.key.house_id, -h.mark_date.toordinal()))
    return hits


_VERSION_REUSED = FieldViolation(
    "upsert.source_version", "this version was synced with other content; raise the version"
)


def _record_digest(change: marker_pb2.MarkerChange) -> bytes:
    if not change.HasField("upsert"):
        return EMPTY_DIGEST
    return hashlib.sha256(change.upsert.SerializeToString(deterministic=True)).digest()


def _reject(
    counts: SyncCounts,
    index: int,
    change: marker_pb2.MarkerChange,
    reason: str,
    violations: Sequence[FieldViolation],
) -> None:
    record = change.upsert if change.HasField("upsert") else change.tombstone
    counts.rejected += 1
    counts.rejections.append(
        Rejection(
            index=index,
            source_system=record.source_system,
            house_id=record.house_id[:64],
            source_record_id=record.source_record_id[:128],
            reason=reason,
            violations=tuple(violations),
        )
    )
