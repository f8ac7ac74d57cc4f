"""The adapter framework: what the GCOS, Amazone and PGA adapters share.

A mapping (`adapters.records.SourceFormat`) reads its source's export. The framework then
- checks what every source must get right (BSN by the 11-proef, a name and birth date when there
  is no BSN, a house of this source system, no dates in the future), reporting a bad record with
  its place in the export and the reason, while the rest syncs;
- pseudonymises: the BSN and the name never leave the adapter;
- works out against its state file what changed since the last confirmed sync: new records,
  changed ones (a higher version), unchanged ones (nothing sent), and records that left the
  source (a tombstone). A record that is bad this time keeps its marker; a bad record whose id
  cannot be read withholds every deletion of the run (it may be any of them);
- changes nothing at all in a run whose export cannot prove it is complete (`BadRecord.
  incomplete`: cut off, no footer or trailer, a count or checksum that does not match,
  unreadable as a whole), or that would delete more than `max_delete_share` of the source's
  live markers unless the operator confirmed exactly that many deletions; the report says why
  (`SyncReport.refused`) and the state file is not touched;
- writes the plan to the state file before anything is sent, and marks a change confirmed only
  after the registry answered for it. Killed at any point, the next run sends the unconfirmed
  changes again under the same version with the same content, which the registry applies once;
  a record that changed in between gets a higher version, so no version is ever reused.

The state file also remembers, without personal data, which feedback items the receiver
(adapters/receive.py) applied, and the advice requests (advies op aanvraag) it wrote into the
source that are still open. After a run the registry confirmed, an open request whose record now
carries an advice dated on or after the request is answered to the feedback service
(AnswerAdviceRequest) and forgotten; an unreachable feedback service fails nothing, the answer
goes with a later run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import grpc
import structlog

from adapters.records import BadRecord, SourceFormat, SourceRecord
from baken import enums
from baken.age import minor_until
from baken.backoff import Backoff
from baken.client import RETRYABLE, date_proto, subject_proto
from baken.clock import Clock
from baken.feedback.v1 import feedback_service_pb2, feedback_service_pb2_grpc
from baken.houses import House
from baken.keyring import KeyRing
from baken.pseudonym import InvalidIdentifier, person_pseudonyms
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2, registry_service_pb2_grpc

BATCH = 1000
ATTEMPTS = 6
SEND_BACKOFF = Backoff(0.25, 10.0, (0.5, 1.5))
# An open advice request is forgotten this long after it was asked: its term (at most 7 days)
# is long past, and the house's advice reaches ZSM through the registry anyway.
ADVICE_REQUEST_MEMORY = dt.timedelta(days=30)
# A run may delete at most this share of the source's live markers unless the operator confirms
# the exact number: one wrong or truncated export must not wipe a region.
MAX_DELETE_SHARE = 0.10
# In a text: C0 controls but TAB and LF, DEL, C1 controls, and the bidirectional overrides and
# isolates. Each can rewrite what a terminal or a screen shows (clear it, forge a line).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
log = structlog.get_logger("baken.adapter")
TARGET_GROUPS = enums.numbers(marker_pb2.TargetGroup, "TARGET_GROUP_")
PLAN_STATUSES = enums.numbers(marker_pb2.PlanStatus, "PLAN_STATUS_")
SYSTEMS = enums.numbers(house_pb2.SourceSystem, "SOURCE_SYSTEM_")


@dataclass
class SyncReport:
    new: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    problems: list[BadRecord] = field(default_factory=list)
    # Advice requests answered to the feedback service this run, and answers still waiting
    # (feedback service unreachable, or no feedback service given).
    advice_answered: int = 0
    advice_waiting: int = 0
    # Why the run changed nothing (None: it synced), and how many deletions it held back.
    refused: str | None = None
    # The deletions a run refused for their number: what the operator confirms to apply them.
    deletions_to_confirm: int = 0
    # Deletions not made because a bad record's id could not be read (it may be one of them).
    deletions_withheld: int = 0

    @property
    def rejected(self) -> int:
        return len(self.problems)

    def summary(self) -> str:
        text = (
            f"new {self.new}, changed {self.changed}, deleted {self.deleted}, "
            f"unchanged {self.unchanged}, rejected {self.rejected}"
        )
        if self.deletions_withheld:
            text += (
                f", deletions withheld {self.deletions_withheld}"
                " (a bad record without a readable id may be one of them)"
            )
        if self.refused:
            text += f"; nothing changed: {self.refused}"
        if self.advice_answered:
            text += f", advice answered {self.advice_answered}"
        if self.advice_waiting:
            text += f", advice answers waiting {self.advice_waiting}"
        return text


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


class OpenAdviceRequest(NamedTuple):
    """An advice request written into the source and not answered yet (no personal data)."""

    delivery_key: str  # the feedback item's idempotency key
    house_id: str
    record_id: str  # the house's own record of the person
    requested: dt.date  # the day ZSM asked, in the Netherlands


class State:
    """The adapter's memory of what it sent: per record, the highest version sent, the
    fingerprint of that content, whether it is a tombstone, and whether the registry confirmed
    it. Also the feedback items the receiver applied (by key) and the advice requests still
    open. A SQLite file next to nothing else; it holds no personal data (fingerprints are hashes
    of the pseudonymised record). Sync and receiver may use it at once, each with its own
    State (one per thread)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, record_id TEXT NOT NULL,"
            " version INTEGER NOT NULL, fingerprint BLOB NOT NULL, deleted INTEGER NOT NULL,"
            " confirmed INTEGER NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS received (key TEXT PRIMARY KEY, house_id TEXT NOT NULL,"
            " applied_time TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS advice_requests (delivery_key TEXT PRIMARY KEY,"
            " house_id TEXT NOT NULL, record_id TEXT NOT NULL, requested TEXT NOT NULL)"
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

    # -- feedback items and advice requests (adapters/receive.py) ------------------------------

    def was_received(self, key: str) -> bool:
        """The feedback item with this idempotency key was applied in the source already."""
        row = self._db.execute("SELECT 1 FROM received WHERE key = ?", (key,)).fetchone()
        return row is not None

    def received(
        self,
        key: str,
        house_id: str,
        now: dt.datetime,
        advice_request: OpenAdviceRequest | None = None,
    ) -> None:
        """The item is in the source (and, for an advice request, open): one transaction."""
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO received (key, house_id, applied_time) VALUES (?, ?, ?)",
                (key, house_id, now.isoformat()),
            )
            if advice_request is not None:
                r = advice_request
                self._db.execute(
                    "INSERT OR IGNORE INTO advice_requests (delivery_key, house_id, record_id,"
                    " requested) VALUES (?, ?, ?, ?)",
                    (r.delivery_key, r.house_id, r.record_id, r.requested.isoformat()),
                )

    def forget_received(self, before: dt.datetime) -> int:
        """Drop receipts older than `before` (long after any redelivery of their items)."""
        with self._transaction():
            count = self._db.execute(
                "DELETE FROM received WHERE applied_time < ?", (before.isoformat(),)
            ).rowcount
        return int(count)

    def open_advice_requests(self) -> list[OpenAdviceRequest]:
        return [
            OpenAdviceRequest(key, house_id, record_id, dt.date.fromisoformat(requested))
            for key, house_id, record_id, requested in self._db.execute(
                "SELECT delivery_key, house_id, record_id, requested FROM advice_requests"
                " ORDER BY requested, delivery_key"
            )
        ]

    def forget_advice_requests(self, keys: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany(
                "DELETE FROM advice_requests WHERE delivery_key = ?", [(k,) for k in keys]
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on an error so the connection stays usable
        (the receiver goes on after a locked or failing state file)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
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
                sleep(SEND_BACKOFF.delay(attempt + 1))
        raise AssertionError("unreachable")

    return send


Answer = Callable[[str], None]
"""Tells the feedback service the house answered the advice request of this delivery key."""


def answerer(channel: grpc.Channel, *, timeout_s: float = 10.0) -> Answer:
    """AnswerAdviceRequest on the feedback service, under the adapter's own certificate; raises
    grpc.RpcError (the sync keeps the request and tries again next run)."""
    stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)

    def answer(delivery_key: str) -> None:
        stub.AnswerAdviceRequest(
            feedback_service_pb2.AnswerAdviceRequestRequest(delivery_key=delivery_key),
            timeout=timeout_s,
        )

    return answer


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
        answer: Answer | None = None,
        max_delete_share: float = MAX_DELETE_SHARE,
    ) -> None:
        """`answer`: how to tell the feedback service an advice request was answered; None
        sends no answers (they wait in the state file for a run that has one).
        `max_delete_share`: a run that would delete more than this share of the live markers
        (0 to 1) changes nothing unless its deletions are confirmed."""
        if not 0.0 <= max_delete_share <= 1.0:
            raise ValueError("max_delete_share: a share from 0 to 1")
        self._max_delete_share = max_delete_share
        self._mapping = mapping
        self._ring = ring
        self._state = state
        self._houses = houses
        self._clock = clock
        self._send = send
        self._batch = batch
        self._answer = answer
        self._system = SYSTEMS[mapping.source_system]

    def sync(
        self, paths: Path | Sequence[Path], *, confirm_deletions: int | None = None
    ) -> SyncReport:
        """One run over the whole export (one file, or one per house): what is not in it has
        left the source. `confirm_deletions`: the operator's word that exactly this many
        markers left the source, for a run that deletes more than the limit allows."""
        paths = [paths] if isinstance(paths, Path) else list(paths)
        report = SyncReport()
        today = self._clock.today()
        stored = self._state.load()
        seen: set[str] = set()
        bad_ids: set[str] = set()
        planned: list[_Planned] = []
        advice_dates: dict[str, dt.date | None] = {}  # of the good records of this run
        for item in (item for path in paths for item in self._mapping.read(path)):
            if isinstance(item, BadRecord):
                report.problems.append(item)
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
            advice_dates[key] = item.advice_date if item.advice else None
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
        incomplete_at = [p for p in report.problems if p.incomplete]
        unidentified = any(p.record_id is None and not p.notice for p in report.problems)
        tombstones: list[_Planned] = []
        for key, sent in stored.items():
            record_id = sent.record_id
            if key in seen or record_id in bad_ids or (sent.deleted and sent.confirmed):
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
            tombstones.append(
                _Planned(key, "deleted", tombstone_version, b"", change, key, record_id)
            )
        if incomplete_at:
            first = incomplete_at[0]
            report.refused = (
                f"the export cannot prove it is complete ({first.where}: {first.reason})"
            )
            return report
        if unidentified:
            # A tombstone planned before and not confirmed is a deletion already decided.
            report.deletions_withheld = sum(1 for t in tombstones if not stored[t.key].deleted)
            tombstones = [t for t in tombstones if stored[t.key].deleted]
        refusal = self._deletion_refusal(stored, tombstones, confirm_deletions, report)
        if refusal:
            report.refused = refusal
            return report
        planned += tombstones
        self._state.plan(planned)
        confirmed: set[str] = set()
        for start in range(0, len(planned), self._batch):
            confirmed |= self._apply(planned[start : start + self._batch], report)
        unconfirmed = {p.key for p in planned} - confirmed
        gone = {p.key for p in planned if p.kind == "deleted"} & confirmed
        settled = {k: day for k, day in advice_dates.items() if k not in unconfirmed}
        self._answer_advice(settled, gone, today, report)
        return report

    def _deletion_refusal(
        self,
        stored: Mapping[str, Sent],
        tombstones: Sequence[_Planned],
        confirmed: int | None,
        report: SyncReport,
    ) -> str | None:
        """Why the run must not delete what it would, or None. Counted: markers live now that
        would be deleted (a tombstone sent before and not confirmed was counted when planned)."""
        deleting = sum(1 for t in tombstones if not stored[t.key].deleted)
        live = sum(1 for sent in stored.values() if not sent.deleted)
        if deleting == 0 or deleting <= self._max_delete_share * live or confirmed == deleting:
            return None
        report.deletions_to_confirm = deleting
        why = (
            f"the run would delete {deleting} of {live} live markers ({deleting / live:.1%}),"
            f" more than the limit of {self._max_delete_share:.0%}"
        )
        if confirmed is not None:
            why += f"; {confirmed} were confirmed, not {deleting}"
        return why

    def _apply(self, batch: Sequence[_Planned], report: SyncReport) -> set[str]:
        """Send one batch; the keys the registry confirmed."""
        response = self._send([p.change for p in batch])
        rejected = {r.index for r in response.rejections}
        for r in response.rejections:
            p = batch[r.index]
            fields = "; ".join(f"{v.field}: {v.description}" for v in r.field_violations)
            report.problems.append(BadRecord(p.where, p.record_id, f"{r.reason}: {fields}"))
        confirmed = {p.key for i, p in enumerate(batch) if i not in rejected}
        self._state.confirm(confirmed)
        for i, p in enumerate(batch):
            if i not in rejected:
                setattr(report, p.kind, getattr(report, p.kind) + 1)
        return confirmed

    def _answer_advice(
        self,
        settled: Mapping[str, dt.date | None],
        gone: set[str],
        today: dt.date,
        report: SyncReport,
    ) -> None:
        """Answer each open advice request whose record, as the registry now holds it, carries
        an advice dated on or after the request; forget those answered, those whose record
        left the source, and those asked longer than ADVICE_REQUEST_MEMORY ago."""
        open_requests = self._state.open_advice_requests()
        if not open_requests:
            return
        forget: list[str] = []
        ready: list[OpenAdviceRequest] = []
        for request in open_requests:
            key = f"{request.house_id}/{request.record_id}"
            advice_date = settled.get(key)
            if advice_date is not None and advice_date >= request.requested:
                ready.append(request)
            elif key in gone or today - request.requested > ADVICE_REQUEST_MEMORY:
                forget.append(request.delivery_key)
        for n, request in enumerate(ready):
            if self._answer is None:
                report.advice_waiting += len(ready) - n
                break
            try:
                self._answer(request.delivery_key)
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.NOT_FOUND:  # purged (technisch sepot 01): moot
                    forget.append(request.delivery_key)
                    continue
                log.warning(
                    "advice answer not sent; tried again next run",
                    house=request.house_id,
                    delivery_key=request.delivery_key,
                    code=code.name if code else None,
                )
                if code in RETRYABLE:  # the feedback service is away: the rest waits too
                    report.advice_waiting += len(ready) - n
                    break
                report.advice_waiting += 1
                continue
            forget.append(request.delivery_key)
            report.advice_answered += 1
            log.info(
                "advice request answered", house=request.house_id, delivery_key=request.delivery_key
            )
        if forget:
            self._state.forget_advice_requests(forget)

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
                raise _Bad(f"{name}: lies in the future")
        if item.advice and item.advice_date is None:
            raise _Bad("advice date: required with an advice")
        texts = [("record id", item.record_id), ("advice", item.advice or "")]
        texts += [(f"at_information.{k}", v) for k, v in item.at_information.items()]
        for name, text in texts:
            if found := _CONTROL.search(text):
                raise _Bad(f"{name}: holds a control character (U+{ord(found.group()):04X})")
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
            minor_until=date_proto(minor_until(person.birth_date, today)),
        )


class _Bad(Exception):
    """A record this adapter will not send; the message names the field and never its value
    for a BSN or a name."""
