"""The registry's domain: markers as synced from the sources, and what a lookup finds."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from baken.errors import FieldViolation
from baken.houses import house_name
from services.common.checks import PseudonymRef
from services.registry.freshness import Freshness

# json.dumps builds a new encoder for every call with options; these give the same text.
_JSON = json.JSONEncoder(ensure_ascii=False)
_JSON_SORTED = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True, slots=True)
class RecordKey:
    source_system: str
    house_id: str
    source_record_id: str


@dataclass(frozen=True, slots=True)
class MarkerData:
    """One source record: dat-informatie, waarom-informatie and the person's pseudonyms."""

    key: RecordKey
    source_version: int
    target_group: str
    plan_status: str
    mark_date: dt.date
    advice: str | None
    advice_date: dt.date | None
    at_information: dict[str, str] | None
    pseudonyms: tuple[PseudonymRef, ...]  # sorted, without duplicates
    # A minor until this day, as the source knows him (the month after his 18th birthday).
    minor_until: dt.date | None = None

    def at_information_json(self) -> str | None:
        if not self.at_information:
            return None
        return _JSON_SORTED.encode(self.at_information)

    def content(self) -> bytes:
        """What the content digest covers (at_rest.Sealer.digest keys it)."""
        return content_bytes(
            self.target_group,
            self.plan_status,
            self.mark_date.isoformat(),
            self.advice,
            self.advice_date.isoformat() if self.advice_date else None,
            self.at_information_json(),
            self.minor_until.isoformat() if self.minor_until else None,
        )

    def pseudonyms_digest(self) -> bytes:
        digest = hashlib.sha256()
        for p in self.pseudonyms:
            digest.update(p.value + bytes([p.kind]) + p.key_id.encode() + b"\x00")
        return digest.digest()


def content_bytes(
    target_group: str,
    plan_status: str,
    mark_date: str,
    advice: str | None,
    advice_date: str | None,
    at_information_json: str | None,
    minor_until: str | None = None,
) -> bytes:
    """A marker's content as one canonical text (dates in ISO form). `minor_until` joins it only
    when set, so the digests of markers synced before it existed still hold."""
    content = [target_group, plan_status, mark_date, advice, advice_date, at_information_json]
    if minor_until:
        content.append(minor_until)
    return _JSON.encode(content).encode()


@dataclass(frozen=True, slots=True)
class Tombstone:
    key: RecordKey
    source_version: int


@dataclass(frozen=True, slots=True)
class SyncChange:
    """One change of a SyncMarkers message before its full check: what a rejection names and
    what recognises a replay."""

    source_system: int  # SourceSystem number as sent, possibly invalid
    house: str  # "houses/{house}" as sent
    source_record_id: str  # as sent
    key: RecordKey | None  # None when not valid or not of the source system the adapter serves
    source_version: int  # an upsert's; 0 for anything else, which is never a replay
    record: bytes | None  # an upsert's record, serialised deterministically; else None


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """One message of a SyncMarkers stream as the write side takes it (validation.sync_request).

    A byte-identical replay of a stored upsert counts as unchanged before it is checked again
    (docs/REGISTRY.md), so the costlier full check is deferred: `checked(position, today)` gives
    the change at that position as a valid upsert or tombstone, or raises InvalidArgument naming
    every bad field.
    """

    changes: tuple[SyncChange, ...]
    checked: Callable[[int, dt.date], MarkerData | Tombstone]


@dataclass(slots=True)
class SyncCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def add(self, other: SyncCounts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.deleted += other.deleted
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.rejections += other.rejections


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    source_system: int  # SourceSystem number as sent, possibly invalid
    house: str  # "houses/{house}" as sent
    source_record_id: str
    reason: str
    violations: tuple[FieldViolation, ...]


@dataclass(frozen=True, slots=True)
class MarkerHit:
    """A marker found by a lookup, as the caller may see it."""

    uid: str
    key: RecordKey
    source_version: int
    target_group: str
    plan_status: str
    mark_date: dt.date
    advice: str | None  # None when EXPIRED or withheld
    advice_date: dt.date | None
    freshness: Freshness
    at_information: dict[str, str] | None
    match_kind: int  # the strongest PseudonymKind that matched
    # The covenant fields the caller may see (services.common.covenants.MARKER_FIELDS); the rest
    # is unset.
    fields: frozenset[str]

    @property
    def name(self) -> str:
        return marker_name(self.key.house_id, self.uid)


def marker_name(house_id: str, uid: str) -> str:
    """A marker's resource name on the wire: "houses/{house}/markers/{uid}"."""
    return f"{house_name(house_id)}/markers/{uid}"
