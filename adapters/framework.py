"""The adapter framework: what the GCOS, Amazone and PGA adapters share.

A mapping (`adapters.records.SourceFormat`) reads its source's export. The framework then
- checks what every source must get right (BSN by the 11-proef, a name and birth date when there
  is no BSN, a house of this source system, no dates in the future), reporting a bad record with
  its place in the export and the reason, while the rest syncs;
- pseudonymises: the BSN and the name never leave the adapter;
- works out against its state file what changed since the last confirmed sync: new records,
  changed ones (a higher version), unchanged ones (nothing sent), and records that left the
  source (a tombstone). A record that is bad this time keeps its marker, and an export that
  is cut off or unreadable (`BadRecord.incomplete`) deletes nothing;
- writes the plan to the state file before anything is sent, and marks a change confirmed only
  after the registry answered for it. Killed at any point, the next run sends the unconfirmed
  changes again under the same version with the same content, which the registry applies once;
  a record that changed in between gets a higher version, so no version is ever reused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import grpc

from adapters.records import BadRecord, SourceFormat, SourceRecord
from baken.client import date_proto, subject_proto
from baken.clock import Clock
from baken.houses import House
from baken.keyring import KeyRing
from baken.pseudonym import InvalidIdentifier, person_pseudonyms
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2, registry_service_pb2_grpc

BATCH = 1000
ATTEMPTS = 6
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
TARGET_GROUPS = {
    v.name.removeprefix("TARGET_GROUP_").lower(): v.number
    for v in marker_pb2.TargetGroup.DESCRIPTOR.values
    if v.number
}
PLAN_STATUSES = {
    v.name.removeprefix("PLAN_STATUS_").lower(): v.number
    for v in marker_pb2.PlanStatus.DESCRIPTOR.values
    if v.number
}
SYSTEMS = {
    v.name.removeprefix("SOURCE_SYSTEM_").lower(): v.number
    for v in house_pb2.SourceSystem.DESCRIPTOR.values
    if v.number
}


@dataclass
class SyncReport:
    new: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    problems: list[BadRecord] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.problems)

    def summary(self) -> str:
        return (
            f"new {self.new}, changed {self.changed}, deleted {self.deleted}, "
            f"unchanged {self.unchanged}, rejected {self.rejected}"
        )


@dataclass(frozen=True, slots=True)
class _Planned:
    key: str
    kind: str  # "new", "changed" or "deleted"
    version: int
    fingerprint: bytes
    change: marker_pb2.MarkerChange
    where: str
    record_id: str


class Sent(NamedTuple):
    """What the state file says was sent for one record."""

    record_id: str
    version: int  # the highest version sent
    fingerprint: bytes  # of the record sent; empty for a tombstone
    deleted: bool
    confirmed: bool  # the registry answered for it


class State:
    """The adapter's memory of what it sent: per record, the highest version sent, the
    fingerprint of that content, whether it is a tombstone, and whether the registry confirmed
    it. A SQLite file next to nothing else; it holds no personal data (fingerprints are hashes
    of the pseudonymised record)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, record_id TEXT NOT NULL,"
            " version INTEGER NOT NULL, fingerprint BLOB NOT NULL, deleted INTEGER NOT NULL,"
            " confirmed INTEGER NOT NULL)"
        )

    def close(self) -> None:
        self._db.close()

    def load(self) -> dict[str, Sent]:
        return {
            key: Sent(record_id, version, bytes(fp), bool(deleted), bool(confirmed))
            for key, record_id, version, fp, deleted, confirmed in self._db.execute(
                "SELECT key, record_id, version, fingerprint, deleted, confirmed FROM records"
            )
        }

    def plan(self, planned: Sequence[_Planned]) -> None:
        """Write the plan before anything is sent (one transaction)."""
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT INTO records (key, record_id, version, fingerprint, deleted, confirmed)"
            " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (key) DO UPDATE SET version = excluded.version,"
            " fingerprint = excluded.fingerprint, deleted = excluded.deleted, confirmed = 0",
            [(p.key, p.record_id, p.version, p.fingerprint, p.kind == "deleted") for p in planned],
        )
        self._db.execute("COMMIT")

    def confirm(self, keys: Iterable[str]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("UPDATE records SET confirmed = 1 WHERE key = ?", [(k,) for k in keys])
        self._db.execute("COMMIT")


Send = Callable[[Sequence[marker_pb2.MarkerChange]], registry_service_pb2.SyncMarkersResponse]


def sender(
    channel: grpc.Channel, *, timeout_s: float = 60.0, sleep: Callable[[float], None] = time.sleep
) -> Send:
    """One SyncMarkers call per batch, retried with exponential backoff and jitter while the
    registry is unreachable; any other error ends the sync (what was confirmed stays)."""
    stub = registry_service_pb2_grpc.RegistryServiceStub(channel)

    def send(
        changes: Sequence[marker_pb2.MarkerChange],
    ) -> registry_service_pb2.SyncMarkersResponse:
        request = registry_service_pb2.SyncMarkersRequest(changes=changes)
        for attempt in range(ATTEMPTS):
            try:
                response: registry_service_pb2.SyncMarkersResponse = stub.SyncMarkers(
                    iter([request]), timeout=timeout_s
                )
                return response
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or attempt == ATTEMPTS - 1:
                    raise
                sleep(min(10.0, 0.25 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    return send


class Adapter:
    """Syncs one source's export into the registry; `mapping` knows the export's format."""

    def __init__(
        self,
        mapping: SourceFormat,
        *,
        ring: KeyRing,
        state: State,
        houses: Mapping[str, House],
        clock: Clock,
        send: Send,
        batch: int = BATCH,
    ) -> None:
        self._mapping = mapping
        self._ring = ring
        self._state = state
        self._houses = houses
        self._clock = clock
        self._send = send
        self._batch = batch
        self._system = SYSTEMS[mapping.source_system]

    def sync(self, paths: Path | Sequence[Path]) -> SyncReport:
        """One run over the whole export (one file, or one per house): what is not in it has
        left the source."""
        paths = [paths] if isinstance(paths, Path) else list(paths)
        report = SyncReport()
        today = self._clock.today()
        stored = self._state.load()
        seen: set[str] = set()
        bad_ids: set[str] = set()
        incomplete = False
        planned: list[_Planned] = []
        for item in (item for path in paths for item in self._mapping.read(path)):
            if isinstance(item, BadRecord):
                report.problems.append(item)
                incomplete = incomplete or item.incomplete
                if item.record_id:
                    bad_ids.add(item.record_id)
                continue
            key = f"{item.house_id}/{item.record_id}"
            if key in seen:
                report.problems.append(
                    BadRecord(item.where, item.record_id, "record id appears twice in the export")
                )
                continue
            seen.add(key)
            try:
                record = self._record(item, today)
            except _Bad as bad:
                report.problems.append(BadRecord(item.where, item.record_id, str(bad)))
                bad_ids.add(item.record_id)
                seen.discard(key)
                continue
            fingerprint = hashlib.sha256(record.SerializeToString(deterministic=True)).digest()
            previous = stored.get(key)
            if previous is None or previous.deleted:  # unknown, or back after a tombstone
                version, kind = (previous.version + 1 if previous else 1), "new"
            elif previous.fingerprint == fingerprint:
                if previous.confirmed:
                    report.unchanged += 1
                    continue
                # Sent before, never confirmed: the same version again.
                version, kind = previous.version, ("new" if previous.version == 1 else "changed")
            else:
                version, kind = previous.version + 1, "changed"
            record.source_version = version
            change = marker_pb2.MarkerChange(upsert=record)
            planned.append(
                _Planned(key, kind, version, fingerprint, change, item.where, item.record_id)
            )
        for key, sent in stored.items():
            record_id = sent.record_id
            if (
                incomplete
                or key in seen
                or record_id in bad_ids
                or (sent.deleted and sent.confirmed)
            ):
                continue
            house_id = key.split("/", 1)[0]
            tombstone_version = sent.version if sent.deleted else sent.version + 1
            change = marker_pb2.MarkerChange(
                tombstone=marker_pb2.MarkerTombstone(
                    source_system=self._system,  # type: ignore[arg-type]
                    source_record_id=record_id,
                    source_version=tombstone_version,
                    house_id=house_id,
                )
            )
            planned.append(_Planned(key, "deleted", tombstone_version, b"", change, key, record_id))
        self._state.plan(planned)
        for start in range(0, len(planned), self._batch):
            self._apply(planned[start : start + self._batch], report)
        return report

    def _apply(self, batch: Sequence[_Planned], report: SyncReport) -> None:
        response = self._send([p.change for p in batch])
        rejected = {r.index for r in response.rejections}
        for r in response.rejections:
            p = batch[r.index]
            fields = "; ".join(f"{v.field}: {v.description}" for v in r.field_violations)
            report.problems.append(BadRecord(p.where, p.record_id, f"{r.reason}: {fields}"))
        self._state.confirm(p.key for i, p in enumerate(batch) if i not in rejected)
        for i, p in enumerate(batch):
            if i not in rejected:
                setattr(report, p.kind, getattr(report, p.kind) + 1)

    def _record(self, item: SourceRecord, today: dt.date) -> marker_pb2.MarkerRecord:
        house = self._houses.get(item.house_id)
        if house is None:
            raise _Bad(f"house: {item.house_id!r} is not a known Safety House")
        if house.source_system != self._system:
            raise _Bad(
                f"house: {item.house_id} does not keep its markers in {self._mapping.source_system}"
            )
        group = TARGET_GROUPS.get(item.target_group)
        status = PLAN_STATUSES.get(item.plan_status)
        if group is None:
            raise _Bad(f"target group: {item.target_group!r} is not a target group")
        if status is None:
            raise _Bad(f"plan status: {item.plan_status!r} is not a plan status")
        for name, day in (("mark date", item.mark_date), ("advice date", item.advice_date)):
            if day is not None and day > today:
                raise _Bad(f"{name}: {day} lies in the future")
        if item.advice and item.advice_date is None:
            raise _Bad("advice date: required with an advice")
        person = item.person
        try:
            pseudonyms = person_pseudonyms(
                self._ring,
                bsn=person.bsn,
                surname=person.surname,
                birth_date=person.birth_date,
                today=today,
            )
        except InvalidIdentifier as error:
            raise _Bad(f"{error.field}: {error}") from None
        try:
            at_information = marker_pb2.AtInformation(**dict(item.at_information))
        except ValueError as error:
            raise _Bad(f"at_information: {error}") from None
        return marker_pb2.MarkerRecord(
            source_system=self._system,  # type: ignore[arg-type]
            source_record_id=item.record_id,
            house_id=item.house_id,
            subject=subject_proto(pseudonyms),
            target_group=group,  # type: ignore[arg-type]
            plan_status=status,  # type: ignore[arg-type]
            mark_date=date_proto(item.mark_date),
            advice=item.advice or "",
            advice_date=date_proto(item.advice_date) if item.advice else None,
            at_information=at_information,
        )


class _Bad(Exception):
    """A record this adapter will not send; the message names the field and never its value
    for a BSN or a name."""
