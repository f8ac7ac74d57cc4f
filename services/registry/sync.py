"""What a change does to a stored source record: the idempotency rules of SyncMarkers.

The key is (source system, house, source record id); versions only grow.
- a lower version than stored is a stale replay: unchanged;
- the same version with the same content is a replay: unchanged, unless only the pseudonyms
  differ, which is a re-keying during key rotation: updated;
- the same version with other content is refused (VERSION_REUSED): a source that changes a
  record must raise its version;
- a tombstone erases the record's data and pseudonyms but keeps its key and version, so that
  an older replay cannot bring the person back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.registry.markers import MarkerData, Tombstone

EMPTY_DIGEST = b""


class ChangeOutcome(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    VERSION_REUSED = "version_reused"


@dataclass(frozen=True, slots=True)
class StoredState:
    source_version: int
    deleted: bool
    content_digest: bytes
    pseudonyms_digest: bytes
    record_digest: bytes

    def replayed_by(self, source_version: int, record_digest: bytes) -> bool:
        """Whether an upsert is a byte-identical replay of what is stored: unchanged."""
        return (
            not self.deleted
            and self.source_version == source_version
            and self.record_digest == record_digest
        )


def state_of(
    change: MarkerData | Tombstone,
    content_digest: bytes = EMPTY_DIGEST,
    record_digest: bytes = EMPTY_DIGEST,
) -> StoredState:
    """The state a change leaves; the keyed digests come from at_rest.Sealer.digest."""
    if isinstance(change, Tombstone):
        return StoredState(change.source_version, True, EMPTY_DIGEST, EMPTY_DIGEST, EMPTY_DIGEST)
    return StoredState(
        change.source_version, False, content_digest, change.pseudonyms_digest(), record_digest
    )


def classify(stored: StoredState | None, incoming: StoredState) -> ChangeOutcome:
    if incoming.deleted:
        if stored is None or stored.deleted or incoming.source_version < stored.source_version:
            return ChangeOutcome.UNCHANGED
        return ChangeOutcome.DELETED
    if stored is None:
        return ChangeOutcome.CREATED
    if incoming.source_version < stored.source_version:
        return ChangeOutcome.UNCHANGED
    if incoming.source_version > stored.source_version:
        return ChangeOutcome.CREATED if stored.deleted else ChangeOutcome.UPDATED
    if stored.deleted:
        return ChangeOutcome.UNCHANGED
    if incoming.content_digest != stored.content_digest:
        return ChangeOutcome.VERSION_REUSED
    if incoming.pseudonyms_digest != stored.pseudonyms_digest:
        return ChangeOutcome.UPDATED
    return ChangeOutcome.UNCHANGED


def changes_row(outcome: ChangeOutcome) -> bool:
    """Whether the outcome writes the stored record."""
    return outcome in (ChangeOutcome.CREATED, ChangeOutcome.UPDATED, ChangeOutcome.DELETED)
