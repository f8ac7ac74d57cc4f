"""The adapter framework: what the GCOS, Amazone and PGA adapters share.

A mapping (`adapters.records.SourceFormat`) reads its source's export. The framework then
- checks what every source must get right (BSN by the 11-proef, a name and birth date when there
  is no BSN, a house of this source system, no dates in the future), reporting a bad record with
  its place in the export and the reason, while the rest syncs;
- pseudonymises: the BSN and the name never leave the adapter. The checked records go a chunk
  at a time (PSEUDONYMISE_CHUNK identifiers), so an OPRF key costs one call of the
  pseudonymisation service per 1,000 identifiers, not one a record;
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

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog

from adapters.records import BadRecord, SourceFormat, SourceRecord
from adapters.state import OpenAdviceRequest, Planned, Sent, State
from adapters.transport import Answer, Send
from baken import enums
from baken.age import minor_until
from baken.client import RETRYABLE, date_proto, subject_proto
from baken.clock import Clock
from baken.houses import House, house_name
from baken.keyring import KeyRing
from baken.pseudonym import Identifier, InvalidIdentifier, pseudonymise
from baken.pseudonymiser_client import PER_CALL
from baken.registry.v1 import house_pb2, marker_pb2
from baken.type.v1 import pseudonym_pb2

BATCH = 1000
# Identifiers pseudonymised together: under an OPRF key one Evaluate call per PER_CALL of them,
# pipelined (baken/pseudonymiser_client.py), so the edge blinds while the service evaluates.
PSEUDONYMISE_CHUNK = 10 * PER_CALL
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
        """`ring`: its OPRF keys are evaluated through its evaluator
        (baken/pseudonymiser_client.py). `answer`: how to tell the feedback service an advice
        request was answered; None sends no answers (they wait in the state file for a run that has
        one). `max_delete_share`: a run that would delete more than this share of the live markers
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
        planned: list[Planned] = []
        advice_dates: dict[str, dt.date | None] = {}  # of the good records of this run
        chunk: list[_Checked] = []  # checked, waiting for their pseudonyms
        chunk_size = 0  # their identifiers to pseudonymise
        remembered: list[tuple[str, bytes, bytes]] = []  # pseudonymised, unchanged: State.remember
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
                record, identifiers = self._record(item, today)
            except _Bad as bad:
                report.problems.append(BadRecord(item.where, item.record_id, str(bad)))
                bad_ids.add(item.record_id)
                seen.discard(key)
                continue
            advice_dates[key] = item.advice_date if item.advice else None
            checked = self._cached(_Checked(key, item, record, identifiers), stored.get(key))
            size = 0 if checked.subject is not None else len(identifiers)
            if chunk and chunk_size + size > PSEUDONYMISE_CHUNK:
                self._plan(chunk, stored, planned, remembered, report)
                chunk, chunk_size = [], 0
            chunk.append(checked)
            chunk_size += size
        if chunk:
            self._plan(chunk, stored, planned, remembered, report)
        incomplete_at = [p for p in report.problems if p.incomplete]
        unidentified = any(p.record_id is None and not p.notice for p in report.problems)
        tombstones: list[Planned] = []
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
                    house=house_name(house_id),
                )
            )
            tombstones.append(
                Planned(key, "deleted", tombstone_version, b"", change, key, record_id)
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
        self._state.remember(remembered)
        self._state.plan(planned)
        confirmed: set[str] = set()
        for start in range(0, len(planned), self._batch):
            confirmed |= self._apply(planned[start : start + self._batch], report)
        unconfirmed = {p.key for p in planned} - confirmed
        gone = {p.key for p in planned if p.kind == "deleted"} & confirmed
        settled = {k: day for k, day in advice_dates.items() if k not in unconfirmed}
        self._answer_advice(settled, gone, today, report)
        return report

    def _cached(self, checked: _Checked, previous: Sent | None) -> _Checked:
        """Under an OPRF key: the record with the hash of its person's identifiers, and the
        pseudonyms the state file holds for them when they are unchanged since (the ring's key
        ids included). A rerun thus asks the pseudonymisation service only for new and changed
        persons: its cost and its rate (one unit an identifier) go to what changed."""
        if not self._ring.oprf:
            return checked
        digest = hashlib.sha256(self._state.salt + checked.key.encode() + b"\x00")
        for text in (",".join(self._ring.ids).encode(), *(i.message for i in checked.identifiers)):
            digest.update(len(text).to_bytes(4, "big") + text)
        person = digest.digest()
        subject = None
        if previous is not None and previous.person == person and previous.subject:
            subject = pseudonym_pb2.Subject.FromString(previous.subject)
        return dataclasses.replace(checked, person=person, subject=subject)

    def _plan(
        self,
        chunk: Sequence[_Checked],
        stored: Mapping[str, Sent],
        planned: list[Planned],
        remembered: list[tuple[str, bytes, bytes]],
        report: SyncReport,
    ) -> None:
        """Pseudonymise a chunk of checked records at once (an OPRF key: one Evaluate call for
        those whose pseudonyms are not remembered), then plan each against what the state file
        says was sent."""
        fresh = [c.identifiers for c in chunk if c.subject is None]
        made = iter(pseudonymise(self._ring, fresh) if fresh else [])
        for checked in chunk:
            key, item, record = checked.key, checked.item, checked.record
            subject = checked.subject
            if subject is None:
                subject = subject_proto(next(made))
            record.subject.CopyFrom(subject)
            cache = (checked.person, subject.SerializeToString()) if checked.person else (b"", b"")
            fingerprint = hashlib.sha256(record.SerializeToString(deterministic=True)).digest()
            previous = stored.get(key)
            if previous is None or previous.deleted:  # unknown, or back after a tombstone
                version, kind = (previous.version + 1 if previous else 1), "new"
            elif previous.fingerprint == fingerprint:
                if checked.person and checked.subject is None:
                    remembered.append((key, *cache))
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
                Planned(key, kind, version, fingerprint, change, item.where, item.record_id, *cache)
            )

    def _deletion_refusal(
        self,
        stored: Mapping[str, Sent],
        tombstones: Sequence[Planned],
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

    def _apply(self, batch: Sequence[Planned], report: SyncReport) -> set[str]:
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
                forget.append(request.name)
        for n, request in enumerate(ready):
            if self._answer is None:
                report.advice_waiting += len(ready) - n
                break
            try:
                self._answer(request.name)
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.NOT_FOUND:  # purged (technisch sepot 01): moot
                    forget.append(request.name)
                    continue
                log.warning(
                    "advice answer not sent; tried again next run",
                    house=request.house_id,
                    advice_request=request.name,
                    code=code.name if code else None,
                )
                if code in RETRYABLE:  # the feedback service is away: the rest waits too
                    report.advice_waiting += len(ready) - n
                    break
                report.advice_waiting += 1
                continue
            forget.append(request.name)
            report.advice_answered += 1
            log.info("advice request answered", house=request.house_id, advice_request=request.name)
        if forget:
            self._state.forget_advice_requests(forget)

    def _record(
        self, item: SourceRecord, today: dt.date
    ) -> tuple[marker_pb2.MarkerRecord, list[Identifier]]:
        """The record checked, without its subject, and the person's identifiers."""
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
            identifiers = person.identifiers(today)
        except InvalidIdentifier as error:
            raise _Bad(f"{error.field}: {error}") from None
        try:
            at_information = marker_pb2.AtInformation(**dict(item.at_information))
        except ValueError as error:
            raise _Bad(f"at_information: {error}") from None
        record = marker_pb2.MarkerRecord(
            source_system=self._system,  # type: ignore[arg-type]
            source_record_id=item.record_id,
            house=house_name(item.house_id),
            target_group=group,  # type: ignore[arg-type]
            plan_status=status,  # type: ignore[arg-type]
            mark_date=date_proto(item.mark_date),
            advice=item.advice or "",
            advice_date=date_proto(item.advice_date) if item.advice else None,
            at_information=at_information,
            minor_until=date_proto(minor_until(person.birth_date, today)),
        )
        return record, identifiers


@dataclass(frozen=True, slots=True)
class _Checked:
    """A good record of the export waiting for its pseudonyms."""

    key: str
    item: SourceRecord
    record: marker_pb2.MarkerRecord  # without its subject
    identifiers: list[Identifier]
    person: bytes = b""  # Sent.person, under an OPRF key
    subject: pseudonym_pb2.Subject | None = None  # remembered from an earlier run


class _Bad(Exception):
    """A record this adapter will not send; the message names the field and never its value
    for a BSN or a name."""
