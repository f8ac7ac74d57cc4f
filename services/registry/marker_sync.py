"""The registry's write side: apply a batch of a source adapter's changes."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from sqlalchemy import Engine

from baken.clock import Clock
from baken.errors import FieldViolation, InvalidArgument, PermissionDenied
from baken.houses import House
from baken.pki import Identity
from services.accesslog.inquiry import Inquiry
from services.accesslog.store import AccessLog
from services.common import db
from services.common.access import AccessPolicy
from services.common.at_rest import Sealer
from services.registry import matches, repository
from services.registry.markers import (
    MarkerData,
    RecordKey,
    Rejection,
    SyncBatch,
    SyncChange,
    SyncCounts,
    Tombstone,
)
from services.registry.sync import (
    EMPTY_DIGEST,
    ChangeOutcome,
    StoredState,
    changes_row,
    classify,
    state_of,
)


class MarkerSync:
    def __init__(
        self,
        engine: Engine,
        houses: Mapping[str, House],
        clock: Clock,
        *,
        policy: AccessPolicy,
        sealer: Sealer,
        log: AccessLog,
    ) -> None:
        self._engine = engine
        self._log = log
        self._houses = houses
        self._clock = clock
        self._policy = policy
        self._sealer = sealer
        # Read-classify-write must not interleave: two streams for the same record would both
        # insert it (IntegrityError) or let an older version overwrite a newer one. This lock
        # covers one process; repository.serialise_sync covers several on PostgreSQL.
        self._sync_lock = threading.Lock()

    @property
    def houses(self) -> Mapping[str, House]:
        return self._houses

    def check_caller(self, caller: Identity) -> None:
        """Reference data is for every party of the register, and only for them."""
        self._policy.check_party(caller)

    def sync_scope(self, caller: Identity) -> str:
        """The source system a caller may write markers of: only a source adapter, only its own."""
        self._policy.check_party(caller)
        system = self._policy.covenants.parties[caller.id].source_system
        if caller.role != "source-adapter" or system is None:
            raise PermissionDenied("NOT_A_SOURCE_ADAPTER", "only a source adapter syncs markers")
        return system

    def sync(self, inquiry: Inquiry, first_index: int, batch: SyncBatch) -> SyncCounts:
        """Apply one message of a SyncMarkers stream in one transaction: `batch` as read for the
        source system the adapter serves (see sync_scope), whose first change is the stream's
        `first_index`th. Markers of two houses that now carry the same BSN pseudonym are matched
        in the same transaction (services/registry/matches.py; `inquiry` is the adapter's call,
        as their access-log entries name it).

        Invalid changes are rejected with their reasons; the valid ones land.
        """
        counts = SyncCounts()
        today = self._clock.today()
        sealer = self._sealer
        with self._sync_lock, db.write_transaction(self._engine) as connection:
            repository.serialise_sync(connection)
            stored = repository.load_states(connection, {c.key for c in batch.changes if c.key})
            states: dict[RecordKey, StoredState] = {k: s.state for k, s in stored.items()}
            writes: dict[RecordKey, repository.Write] = {}
            refreshes: dict[int, StoredState] = {}
            for position, change in enumerate(batch.changes):
                index, key, record = first_index + position, change.key, change.record
                previous = states.get(key) if key else None
                # Compare under the key the stored digests were made with (a key rotation
                # may not have been resealed yet); write under the current one.
                key_id = sealer.digest_key_for(previous.content_digest if previous else b"")
                digest = sealer.digest(record, key_id) if record is not None else EMPTY_DIGEST
                if previous and previous.replayed_by(change.source_version, digest):
                    counts.unchanged += 1
                    continue
                try:
                    marker = batch.checked(position, today)
                except InvalidArgument as error:
                    _reject(counts, index, change, error.reason, error.violations)
                    continue
                incoming = self._state(marker, record, key_id)
                outcome = classify(previous, incoming)
                if outcome is ChangeOutcome.VERSION_REUSED:
                    _reject(counts, index, change, "VERSION_REUSED", [_VERSION_REUSED])
                    continue
                setattr(counts, outcome.value, getattr(counts, outcome.value) + 1)
                known = stored.get(marker.key)
                # A tombstone for a record never seen is kept too: it blocks older replays.
                if changes_row(outcome) or previous is None:
                    states[marker.key] = incoming = self._state(marker, record, sealer.current)
                    writes[marker.key] = repository.Write(
                        known.id if known else None,
                        known.uid if known else repository.new_uid(),
                        marker,
                        incoming,
                    )
                elif (
                    known is not None
                    and isinstance(marker, MarkerData)
                    and not known.state.deleted
                    and incoming.source_version == known.state.source_version
                    and (known.state.record_digest != digest or key_id != sealer.current)
                ):
                    # Unchanged, but its digests were cleared or made under an older key:
                    # store them anew, so that the next replay takes the fast path again.
                    states[marker.key] = refreshes[known.id] = self._state(
                        marker, record, sealer.current
                    )
            now = self._clock.now()
            repository.write(connection, list(writes.values()), now, sealer)
            repository.refresh_digests(connection, refreshes)
            matches.record(
                connection,
                [w.change for w in writes.values()],
                log=self._log,
                inquiry=inquiry,
                now=now,
            )
        return counts

    def _state(
        self, marker: MarkerData | Tombstone, record: bytes | None, key_id: str
    ) -> StoredState:
        if isinstance(marker, Tombstone) or record is None:
            return state_of(marker)
        return state_of(
            marker,
            self._sealer.digest(marker.content(), key_id),
            self._sealer.digest(record, key_id),
        )


_VERSION_REUSED = FieldViolation(
    "upsert.source_version", "this version was synced with other content; raise the version"
)


def _reject(
    counts: SyncCounts,
    index: int,
    change: SyncChange,
    reason: str,
    violations: Sequence[FieldViolation],
) -> None:
    counts.rejected += 1
    counts.rejections.append(
        Rejection(
            index=index,
            source_system=change.source_system,
            house=change.house[:71],
            source_record_id=change.source_record_id[:128],
            reason=reason,
            violations=tuple(violations),
        )
    )
