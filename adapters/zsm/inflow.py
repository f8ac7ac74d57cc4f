"""The ZSM inflow adapter: the desk's suspects monitor into Baken (README.md).

Per run, over the whole export:
1. each row is read and checked; the person is pseudonymised here and never leaves the adapter
   (under an OPRF key a chunk of rows per call of the pseudonymisation service);
2. every suspect not checked yet is looked up by BatchLookup at intake-en-selectie, with his
   case reference and age; each answer is written to the state file as it arrives;
3. every case the feedback service does not have yet (or has without the check that is now
   there) is recorded with RecordInflow;
4. every decision the service does not have yet is recorded with RecordDecision under a request
   key made of case, code and stage; one refused for want of what only the desk can say
   (INVALID_ARGUMENT) is held for the desk on the inflow entry (RecordInflow held_decision).

A service that is unreachable fails nothing for good: what waits is done by a later run."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import grpc
import structlog
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from adapters.records import BadRecord
from adapters.zsm.export import NOTHING_READ, Decision, InflowRow, ZsmExport
from adapters.zsm.state import Case, DecisionState, InflowState
from baken import enums
from baken.age import claimed_minor
from baken.backoff import Backoff
from baken.client import RETRYABLE, Suspect, error_reason, subject_age, subject_proto
from baken.clock import Clock
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.keyring import KeyRing
from baken.pseudonym import Identifier, InvalidIdentifier, pseudonymise
from baken.pseudonymiser_client import PER_CALL
from baken.registry.v1 import registry_service_pb2
from baken.type.v1 import pseudonym_pb2

log = structlog.get_logger("baken.adapter.zsm")
_Age: TypeAlias = registry_service_pb2.SubjectAge.ValueType
CODES = enums.numbers(pb.DecisionCode, "DECISION_CODE_", "-")
STAGES = enums.numbers(pb.DecisionStage, "DECISION_STAGE_", "-")
ADVICE = enums.numbers(pb.AdviceFollowed, "ADVICE_FOLLOWED_", "-")
KNOWN = frozenset(
    {registry_service_pb2.LOOKUP_OUTCOME_HIT, registry_service_pb2.LOOKUP_OUTCOME_WITHHELD}
)
# Person fields of the pseudonym library -> the export's columns, for reports.
COLUMNS = {"bsn": "BSN", "surname": "Achternaam", "birth_date": "Geboortedatum"}
# How long the state file remembers a row's pseudonyms (under an OPRF key): a monitor still in
# the folder after that is pseudonymised again.
PSEUDONYM_MEMORY = dt.timedelta(days=14)
# Suspects per BatchLookup call: a kill while answers come in asks at most these again.
LOOKUP_CHUNK = 50
# A BatchLookup the registry did not take (UNAVAILABLE) goes again within the run, this often.
ATTEMPTS = 6
RUN_BACKOFF = Backoff(0.25, 10.0, (0.5, 1.5))
# A decision the feedback service refused for another reason than what the desk must say, or
# a held decision RecordInflow did not take, goes again in a later run: not before 1, 2, 4 ...
# minutes (at most an hour), and after this many failures no more (reported).
DECISION_ATTEMPTS = 8
DECISION_BACKOFF = Backoff(60.0, 3600.0, (1.0, 1.0))
# An arrest time this far ahead of the clock is a mistake, not a clock that runs a little fast.
FUTURE_SLACK = dt.timedelta(minutes=5)  # as the feedback service allows (ARREST_CLOCK_SKEW)
MAX_PROBLEM = 500
MAX_KEY = 64
CALL_TIMEOUT_S = 10.0
# RecordInflow refusals about the one case (a field of the record; the case closed by a
# technisch sepot 01, or in the inflow for another person): that case is not recorded again.
PER_CASE = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION})
# A decision refused with this reason is never recorded: its case was closed.
CASE_PURGED = "CASE_PURGED"


class Lookup(Protocol):
    def batch_lookup(
        self, suspects: Sequence[Suspect]
    ) -> Iterator[registry_service_pb2.BatchLookupResult]: ...


class Feedback(Protocol):
    """The feedback service's calls the adapter makes (a FeedbackServiceStub)."""

    def RecordInflow(self, request: pb.RecordInflowRequest, timeout: float) -> Any: ...

    def RecordDecision(self, request: pb.RecordDecisionRequest, timeout: float) -> Any: ...


@dataclass
class InflowReport:
    new: int = 0  # cases seen for the first time
    checked: int = 0  # looked up this run
    known: int = 0  # of those, a marker found
    unchecked: int = 0  # waiting for a look-up (registry unreachable)
    recorded: int = 0  # RecordInflow calls taken this run
    decided: int = 0  # decisions RecordDecision took this run
    fed_back: int = 0  # delivery items those decisions made
    held: int = 0  # decisions held for the desk this run
    waiting: int = 0  # inflow records and decisions that go with a later run
    problems: list[BadRecord] = field(default_factory=list)
    # The export could not prove it is complete: its whole rows were taken, the rest waits.
    incomplete: str | None = None
    # A file that is no monitor at all (no header with the monitor's columns, not UTF-8, empty):
    # nothing in it was read.
    refused: str | None = None
    # Why a service could not be used this run (no personal data).
    failures: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return sum(1 for p in self.problems if not (p.incomplete or p.notice))

    def summary(self) -> str:
        text = (
            f"suspects new {self.new}, checked {self.checked} (known {self.known}), "
            f"unchecked {self.unchecked}, inflow recorded {self.recorded}, "
            f"decisions recorded {self.decided} ({self.fed_back} items to houses), "
            f"held for the desk {self.held}, waiting {self.waiting}, rejected {self.rejected}"
        )
        if self.refused:
            text += f"; nothing done: {self.refused}"
        elif self.incomplete:
            text += f"; incomplete: {self.incomplete}"
        return text


@dataclass(frozen=True, slots=True)
class _Suspect:
    """A row, checked and pseudonymised: what is sent about it."""

    row: InflowRow
    subject: pseudonym_pb2.Subject
    fingerprints: frozenset[str]
    age: registry_service_pb2.SubjectAge.ValueType


class _Bad(Exception):
    pass


class _Stop(Exception):
    """The feedback service cannot be reached this run: the rest waits."""


def request_key(case_reference: str, decision: Decision) -> str:
    """The RecordDecision request key of a decision of the export: the same decision, the same
    key, so recording it again records nothing new (at most 64 characters)."""
    code = decision.code + (f"-{decision.sepot_code}" if decision.sepot_code else "")
    key = f"zsm:{case_reference}:{code}:{decision.stage}"
    if len(key) <= MAX_KEY:
        return key
    return "zsm:" + hashlib.sha256(key.encode()).hexdigest()[:40]


def fingerprints(subject: pseudonym_pb2.Subject) -> frozenset[str]:
    return frozenset(
        hashlib.sha256(f"{p.kind}:{p.key_id}:{p.value.hex()}".encode()).hexdigest()[:32]
        for p in subject.pseudonyms
    )


class Inflow:
    """One desk's inflow adapter, under the desk's certificate, on behalf of its system account."""

    def __init__(
        self,
        *,
        ring: KeyRing,
        state: InflowState,
        clock: Clock,
        registry: Lookup,
        feedback: Feedback,
        on_behalf_of: str,
        location: str | None = None,
        case_format: re.Pattern[str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        chunk: int = LOOKUP_CHUNK,
    ) -> None:
        """`ring`: its OPRF keys are evaluated through its evaluator
        (baken/pseudonymiser_client.py). `location`: the desk's ZSM location
        ("ZSM Midden-Nederland"): a row of another is refused. `case_format`: the desk's case
        references as the party register has them."""
        self._ring = ring
        self._state = state
        self._clock = clock
        self._registry = registry
        self._feedback = feedback
        self._user = on_behalf_of
        self._location = _words(location) if location else None
        self._case_format = case_format
        self._sleep = sleep
        self._chunk = chunk
        self._export = ZsmExport()

    def run(self, paths: Path | Sequence[Path]) -> InflowReport:
        paths = [paths] if isinstance(paths, Path) else list(paths)
        report = InflowReport()
        items = [list(self._export.read(path)) for path in paths]
        for read in items:
            rows = 0
            for item in read:
                if isinstance(item, InflowRow):
                    rows += 1
                elif item.incomplete and rows == 0 and item.reason.endswith(NOTHING_READ):
                    report.refused = f"{item.where}: {item.reason}"
                    break
            if report.refused:
                # One file of the run is no monitor: a wrong --source, do nothing.
                report.problems = [i for read in items for i in read if isinstance(i, BadRecord)]
                return report
        good = [i for read in items for i in read if isinstance(i, InflowRow)]
        taken = iter(self._pseudonymised(good))
        cases = self._state.cases()
        suspects: dict[str, _Suspect] = {}
        decisions: list[tuple[_Suspect, Decision]] = []
        for item in (i for read in items for i in read):
            if isinstance(item, InflowRow):
                self._take(item, next(taken), cases, suspects, decisions, report)
                continue
            report.problems.append(item)
            if item.incomplete and report.incomplete is None:
                report.incomplete = f"{item.where}: {item.reason}"
        for case_reference, suspect in suspects.items():
            if case_reference not in cases:
                case = Case(case_reference, suspect.fingerprints, self._clock.now())
                self._state.seen(case)  # before anything about it is sent
                cases[case_reference] = case
                report.new += 1
        self._check(suspects, report)
        cases = self._state.cases()
        try:
            self._record_inflow(suspects, cases, report)
            self._decide(decisions, report)
        except _Stop:
            pass
        return report

    # -- the rows ---------------------------------------------------------------------------

    def _take(
        self,
        row: InflowRow,
        suspect: _Suspect | _Bad,
        cases: dict[str, Case],
        suspects: dict[str, _Suspect],
        decisions: list[tuple[_Suspect, Decision]],
        report: InflowReport,
    ) -> None:
        try:
            if isinstance(suspect, _Bad):
                raise suspect
            self._same_person(
                suspect, suspects.get(row.case_reference), cases.get(row.case_reference)
            )
        except _Bad as bad:
            report.problems.append(BadRecord(row.where, row.case_reference, str(bad)))
            return
        suspects.setdefault(row.case_reference, suspect)
        if row.decision is not None:
            decisions.append((suspect, row.decision))

    def _pseudonymised(self, rows: Sequence[InflowRow]) -> list[_Suspect | _Bad]:
        """Each row checked, its suspect pseudonymised, or why the row is bad. The good rows go
        a chunk at a time: under an OPRF key one call of the pseudonymisation service per
        PER_CALL identifiers, not one a row, and only for rows whose pseudonyms the state file
        does not remember (a monitor read again costs the service nothing)."""
        oprf_keys = bool(self._ring.oprf)
        remembered = self._state.pseudonyms() if oprf_keys else {}
        made: list[tuple[bytes, str, bytes]] = []
        found: dict[int, _Suspect | _Bad] = {}
        # person -> his identifiers and the rows (index, age) waiting for his pseudonyms
        chunk: dict[bytes, tuple[list[Identifier], list[tuple[int, _Age]]]] = {}
        size = 0

        def take(at: int, age: _Age, subject: pseudonym_pb2.Subject) -> None:
            found[at] = _Suspect(rows[at], subject, fingerprints(subject), age)

        def pseudonymise_chunk() -> None:
            persons = pseudonymise(self._ring, [ids for ids, _ in chunk.values()])
            for (person, (_, waiting)), pseudonyms in zip(chunk.items(), persons, strict=True):
                subject = subject_proto(pseudonyms)
                if oprf_keys:
                    remembered[person] = subject.SerializeToString()
                    made.append((person, rows[waiting[0][0]].case_reference, remembered[person]))
                for at, age in waiting:
                    take(at, age, subject)

        for at, row in enumerate(rows):
            try:
                identifiers, age = self._checked(row)
            except _Bad as bad:
                found[at] = bad
                continue
            person = (
                self._person(row.case_reference, identifiers)
                if oprf_keys
                else at.to_bytes(8, "big")
            )
            if person in remembered:
                take(at, age, pseudonym_pb2.Subject.FromString(remembered[person]))
                continue
            if person in chunk:
                chunk[person][1].append((at, age))
                continue
            if chunk and size + len(identifiers) > PER_CALL:
                pseudonymise_chunk()
                chunk, size = {}, 0
            chunk[person] = (identifiers, [(at, age)])
            size += len(identifiers)
        if chunk:
            pseudonymise_chunk()
        if made:
            self._state.remember(made, self._clock.now(), PSEUDONYM_MEMORY)
        return [found[at] for at in range(len(rows))]

    def _person(self, case_reference: str, identifiers: Sequence[Identifier]) -> bytes:
        """A row's suspect as the state file remembers his pseudonyms: SHA-256 over the state
        file's salt, the case reference, the ring's key ids and the identifiers (never a hash
        of a BSN alone, which would be a dictionary across rows)."""
        digest = hashlib.sha256(self._state.salt)
        texts = (case_reference, ",".join(self._ring.ids))
        for text in (*(t.encode() for t in texts), *(i.message for i in identifiers)):
            digest.update(len(text).to_bytes(4, "big") + text)
        return digest.digest()

    def _checked(
        self, row: InflowRow
    ) -> tuple[list[Identifier], registry_service_pb2.SubjectAge.ValueType]:
        """The row's suspect's identifiers and age, or _Bad naming the column."""
        if self._location is not None and _words(row.location) != self._location:
            raise _Bad("ZSM-locatie: not this desk's location")
        if self._case_format is not None and not self._case_format.fullmatch(row.case_reference):
            raise _Bad(
                "Zaaknummer: not a case reference of this desk (parketnummer or ZSM "
                "registration number)"
            )
        if row.arrest_time > self._clock.now() + FUTURE_SLACK:
            raise _Bad("Aanhouding: lies in the future")
        today = self._clock.today()
        person = row.person
        try:
            identifiers = person.identifiers(today)
        except InvalidIdentifier as error:
            raise _Bad(f"{COLUMNS.get(error.field, error.field)}: {error}") from None
        try:
            minor = claimed_minor(row.minor, person.birth_date, today)
        except ValueError as error:
            raise _Bad(f"Leeftijd: {error}") from None
        return identifiers, subject_age(minor)

    @staticmethod
    def _same_person(suspect: _Suspect, earlier: _Suspect | None, stored: Case | None) -> None:
        """A case is about one suspect: a row naming another person is refused (a case number
        typed wrong, or reused), and so is one whose age differs from the case's first row."""
        if earlier is not None and not (earlier.fingerprints & suspect.fingerprints):
            raise _Bad("suspect: not the one an earlier row of this case names")
        if earlier is not None and earlier.age != suspect.age:
            raise _Bad("Leeftijd: not the one an earlier row of this case says")
        if (
            stored is not None
            and stored.fingerprints
            and not (stored.fingerprints & suspect.fingerprints)
        ):
            raise _Bad("suspect: not the one this case was recorded with; correct it at the desk")

    # -- look-ups -----------------------------------------------------------------------------

    def _check(self, suspects: dict[str, _Suspect], report: InflowReport) -> None:
        """Look up every suspect not checked yet, once: one BatchLookup per `chunk` suspects,
        each answer in the state file before the next is read. A kill between chunks asks
        nobody twice; a kill while a chunk's answers come in asks those not written down yet
        again in the next run (at least once: better a second access-log line than a suspect
        nobody checked). A registry that is unreachable is tried again with backoff; what it
        did not answer waits for the next run."""
        cases = self._state.cases()
        waiting = {
            case_reference: suspect
            for case_reference, suspect in suspects.items()
            if cases[case_reference].checked_time is None and cases[case_reference].refused is None
        }
        attempt = 0
        while waiting:
            order = list(waiting)[: self._chunk]  # one BatchLookup per chunk
            batch = [
                Suspect(
                    ref=str(n),
                    subject=waiting[c].subject,
                    case_reference=c,
                    minor=_minor(waiting[c].age),
                )
                for n, c in enumerate(order)
            ]
            try:
                for result in self._registry.batch_lookup(batch):
                    case_reference = order[int(result.ref)]
                    suspect = waiting.pop(case_reference)
                    self._answered(case_reference, suspect, result, report)
                attempt = 0
            except grpc.RpcError as error:
                code = error.code()
                attempt += 1
                # UNAVAILABLE: not reached, nothing looked up; DEADLINE_EXCEEDED may have been
                # answered unseen, so it goes with the next run rather than at once.
                if code == grpc.StatusCode.UNAVAILABLE and attempt < ATTEMPTS:
                    self._sleep(RUN_BACKOFF.delay(attempt))
                    continue
                report.failures.append(f"registry: {_status(error)}")
                log.warning(
                    "look-ups not done; tried again next run",
                    code=code.name if code else None,
                    waiting=len(waiting),
                )
                break
        report.unchecked = len(waiting)

    def _answered(
        self,
        case_reference: str,
        suspect: _Suspect,
        result: registry_service_pb2.BatchLookupResult,
        report: InflowReport,
    ) -> None:
        if result.HasField("lookup"):
            known = result.lookup.outcome in KNOWN
            self._state.checked(case_reference, self._clock.now(), known)
            report.checked += 1
            report.known += known
            return
        why = f"look-up refused: {_grpc_code(result.error.code)}: {result.error.message}"
        why = why[:MAX_PROBLEM]
        self._state.refuse(case_reference, why)
        report.problems.append(BadRecord(suspect.row.where, case_reference, why))

    # -- the feedback service -----------------------------------------------------------------

    def _inflow_request(self, suspect: _Suspect, case: Case) -> pb.RecordInflowRequest:
        row = suspect.row
        request = pb.RecordInflowRequest(
            case_reference=row.case_reference,
            subject=suspect.subject,
            arrest_time=_timestamp(row.arrest_time),
            subject_age=suspect.age,
            offence_category=row.offence_category,
            on_behalf_of=self._user,
        )
        if case.checked_time is not None:
            request.checked_time.CopyFrom(_timestamp(case.checked_time))
            request.known = case.known
        return request

    def _record_inflow(
        self, suspects: dict[str, _Suspect], cases: dict[str, Case], report: InflowReport
    ) -> None:
        for case_reference, suspect in suspects.items():
            case = cases[case_reference]
            want = "checked" if case.checked_time is not None else "unchecked"
            if case.refused is not None or case.recorded in (want, "checked"):
                continue
            try:
                self._feedback.RecordInflow(
                    self._inflow_request(suspect, case), timeout=CALL_TIMEOUT_S
                )
            except grpc.RpcError as error:
                code = error.code()
                if code in PER_CASE:  # this case's record is wrong, or the case is closed
                    why = f"inflow refused: {_status(error)}"[:MAX_PROBLEM]
                    self._state.refuse(case_reference, why)
                    report.problems.append(BadRecord(suspect.row.where, case_reference, why))
                    continue
                report.failures.append(f"feedback service (RecordInflow): {_status(error)}")
                report.waiting += (
                    sum(
                        1
                        for c in suspects
                        if cases[c].refused is None and cases[c].recorded != "checked"
                    )
                    - report.recorded
                )
                if code in RETRYABLE:
                    raise _Stop from None
                return  # e.g. UNIMPLEMENTED, PERMISSION_DENIED: the decisions may still go
            self._state.recorded(case_reference, want)
            report.recorded += 1

    def _decide(self, decisions: list[tuple[_Suspect, Decision]], report: InflowReport) -> None:
        done = self._state.decisions()
        cases = self._state.cases()
        now = self._clock.now()
        for suspect, decision in decisions:
            case_reference = suspect.row.case_reference
            key = request_key(case_reference, decision)
            earlier = done.get(key)
            if earlier is not None and earlier.status in ("recorded", "held", "failed"):
                continue
            if earlier is not None and earlier.next_try is not None and earlier.next_try > now:
                report.waiting += 1
                continue
            attempts = earlier.attempts if earlier else 0
            try:
                response = self._feedback.RecordDecision(
                    self._decision_request(suspect, decision, key), timeout=CALL_TIMEOUT_S
                )
            except grpc.RpcError as error:
                code = error.code()
                if code in RETRYABLE:
                    report.waiting += 1
                    report.failures.append(f"feedback service (RecordDecision): {_status(error)}")
                    raise _Stop from None
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    done[key] = self._hold(
                        suspect,
                        cases[case_reference],
                        decision,
                        key,
                        _status(error),
                        attempts,
                        report,
                    )
                    continue
                why = f"decision refused: {_status(error)}"
                if error_reason(error) == CASE_PURGED:
                    attempts = DECISION_ATTEMPTS - 1  # it will never be taken: no retries
                done[key] = self._later(suspect, key, attempts, why, report)
                continue
            done[key] = DecisionState(key, case_reference, "recorded")
            self._state.decision(done[key])
            if decision.code == "technisch-sepot-01":
                # Wrongly taken for a suspect: the service purged the case and its inflow
                # entry; he is not looked up or recorded again.
                self._state.refuse(case_reference, "technisch sepot 01")
            report.decided += 1
            report.fed_back += len(response.items)

    def _decision_request(
        self, suspect: _Suspect, decision: Decision, key: str
    ) -> pb.RecordDecisionRequest:
        request = pb.RecordDecisionRequest(
            case_reference=suspect.row.case_reference,
            subject=suspect.subject,
            code=CODES[decision.code],  # type: ignore[arg-type]
            sepot_code=decision.sepot_code,
            stage=STAGES[decision.stage],  # type: ignore[arg-type]
            subject_age=suspect.age,
            probation_report_requested=decision.probation_report_requested,
            on_behalf_of=self._user,
            request_key=key,
        )
        # The export's one advice line is the legacy single line: the one house whose advice
        # the desk could see (the service finds it, and refuses when there are several).
        if decision.advice_followed is not None:
            request.advice_followed = ADVICE[decision.advice_followed]  # type: ignore[assignment]
            request.deviation_reason = decision.deviation_reason or ""
        return request

    def _hold(
        self,
        suspect: _Suspect,
        case: Case,
        decision: Decision,
        key: str,
        problem: str,
        attempts: int,
        report: InflowReport,
    ) -> DecisionState:
        """RecordDecision refused the decision for what only the desk can say: it is held on
        the inflow entry, for the desk's screen to ask and record under the same key."""
        request = self._inflow_request(suspect, case)
        request.held_decision.CopyFrom(
            pb.HeldDecision(
                code=CODES[decision.code],  # type: ignore[arg-type]
                sepot_code=decision.sepot_code,
                stage=STAGES[decision.stage],  # type: ignore[arg-type]
                request_key=key,
                problem=problem[:MAX_PROBLEM],
                probation_report_requested=decision.probation_report_requested,
            )
        )
        try:
            self._feedback.RecordInflow(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            if error.code() in RETRYABLE:
                report.waiting += 1
                report.failures.append(f"feedback service (RecordInflow): {_status(error)}")
                raise _Stop from None
            return self._later(
                suspect, key, attempts, f"decision not held for the desk: {_status(error)}", report
            )
        state = DecisionState(key, case.case_reference, "held")
        self._state.decision(state)
        report.held += 1
        report.problems.append(
            BadRecord(
                suspect.row.where,
                case.case_reference,
                f"decision held for the desk: {problem}"[:MAX_PROBLEM],
                notice=True,
            )
        )
        return state

    def _later(
        self, suspect: _Suspect, key: str, attempts: int, why: str, report: InflowReport
    ) -> DecisionState:
        """A decision that goes again in a later run, after a backoff; after DECISION_ATTEMPTS
        failures no more, and the report names it."""
        attempts += 1
        case_reference = suspect.row.case_reference
        if attempts >= DECISION_ATTEMPTS:
            state = DecisionState(key, case_reference, "failed", attempts)
            report.problems.append(
                BadRecord(
                    suspect.row.where, case_reference, f"{why}; given up after {attempts} attempts"
                )
            )
        else:
            next_try = self._clock.now() + dt.timedelta(seconds=DECISION_BACKOFF.delay(attempts))
            state = DecisionState(key, case_reference, "pending", attempts, next_try)
            report.waiting += 1
            report.failures.append(
                f"{case_reference}: {why}; tried again after {next_try:%H:%M} UTC"
            )
        self._state.decision(state)
        return state


def _words(text: str) -> str:
    return " ".join(text.casefold().split())


def _minor(age: registry_service_pb2.SubjectAge.ValueType) -> bool | None:
    if age == registry_service_pb2.SUBJECT_AGE_UNSPECIFIED:
        return None
    return age == registry_service_pb2.SUBJECT_AGE_MINOR


def _timestamp(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(dt.UTC))
    return stamp


def _grpc_code(number: int) -> str:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return str(code.name)
    return str(number)


def _status(error: grpc.RpcError) -> str:
    """CODE: what the service said, its field violations when it named them."""
    code = error.code()
    name = code.name if code else "UNKNOWN"
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"{name}: not reachable"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{name}: no answer in time"
    fields: list[str] = []
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    if status is not None:
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                fields += [f"{v.field}: {v.description}" for v in bad.field_violations]
    return f"{name}: " + ("; ".join(fields) or str(error.details() or ""))
