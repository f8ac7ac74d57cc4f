"""The registry's read side: look persons up nationwide and show what the covenants allow."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from baken.clock import Clock
from baken.errors import PermissionDenied
from baken.purposes import AFDOENING, PURPOSES
from services.accesslog.inquiry import Inquiry, entry
from services.accesslog.store import AccessLog, Entry
from services.common import db
from services.common.access import AccessPolicy, Scope
from services.common.at_rest import Sealer
from services.common.covenants import PURPOSE_ONLY_FIELDS, WITHOUT_CASE, zsm_locations
from services.registry import repository, signals
from services.registry.denials import Denials
from services.registry.disclosure import Disclosure, disclose

BREAK_GLASS_ROLE = "zsm-officier"
BREAK_GLASS_PURPOSE = AFDOENING
LOOKUP_PURPOSES = frozenset(PURPOSES) - set(PURPOSE_ONLY_FIELDS)
CASE_REFERENCE_REQUIRED = PermissionDenied(
    "CASE_REFERENCE_REQUIRED", "this purpose needs the ZSM case reference"
)


@dataclass(frozen=True, slots=True)
class Question:
    """One person asked about: the pseudonym values, the ZSM case, the age the caller claims
    ("minor", "adult", or "" where the purpose needs none)."""

    values: tuple[bytes, ...]
    case_reference: str | None = None
    age: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """A disclosure, or this person's denial; `sequence` is its access-log entry, `time` the
    time of the look-up (the entry's): the time a hit's contact point is answered for."""

    disclosure: Disclosure | None
    denial: PermissionDenied | None
    sequence: int
    break_glass: bool
    time: dt.datetime


@dataclass(frozen=True, slots=True)
class _Call:
    """One call's questions, admitted: the caller may look up under `scope`."""

    inquiry: Inquiry
    scope: Scope
    questions: Sequence[Question]


class Lookups:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        policy: AccessPolicy,
        sealer: Sealer,
        log: AccessLog,
        denials: Denials,
    ) -> None:
        self._engine = engine
        # On PostgreSQL a group waits for the server's round trips and its commit: a second
        # group reads and decides meanwhile (8 callers: ~490 against ~370 a second). SQLite's
        # writes are short and local; a second group there only contends for the GIL.
        self._group = db.Grouped(
            self._answer_group, at_once=1 if engine.dialect.name == "sqlite" else 2
        )
        self._denials = denials
        self._finder = repository.Finder(engine)
        self._clock = clock
        self._policy = policy
        self._sealer = sealer
        self._log = log
        # The ZSM desks, whose lookups that find markers signal the houses (signals.py).
        self._zsm_locations = zsm_locations(policy.covenants.parties, policy.houses)

    def answer(self, inquiry: Inquiry, questions: Sequence[Question]) -> list[Answer]:
        """Look each person up nationwide and show what the covenants let the caller see.

        Every answer and every denial is written to the access log before it is given; if the
        entry cannot be written, nobody gets an answer. The calls of the moment share one
        query and one append (db.Grouped). A denial of the whole call (no covenant grants the
        purpose) raises PermissionDenied, once logged. A ZSM desk's lookup at intake or
        decision that finds markers signals their houses, in the transaction of its entry
        (services/registry/signals.py)."""
        if not questions:
            return []
        now, today = self._clock.now(), self._clock.today()
        try:
            scope = self._admit(inquiry, today)
        except PermissionDenied as denied:
            self._denials.write([_denied(inquiry, q, now, denied.reason) for q in questions])
            raise
        return self._group.run(_Call(inquiry, scope, questions))

    def _answer_group(self, calls: list[_Call]) -> list[list[Answer] | Exception]:
        """The calls of the moment: one read of the markers, each call decided apart, then one
        append of every entry, and the signals. The write lock is held for the writes only
        (db.read_then_write), so the registry's instances and the sync wait for each other's
        writes, not for each other's deciding; the entries record what was read."""
        now, today = self._clock.now(), self._clock.today()
        asked = (q for c in calls for q in c.questions if _has_case(c.inquiry, q))
        values = list(dict.fromkeys(v for q in asked for v in q.values))
        with db.read_then_write(self._engine) as transaction:
            by_value: dict[bytes, list[repository.Found]] = {}
            for row in self._finder.find(transaction.reading, values):
                by_value.setdefault(row.value, []).append(row)
            entries: list[Entry] = []
            flowed_in: list[tuple[int, signals.FlowedIn]] = []
            decided: list[tuple[int, list[Answer]] | Exception] = []
            for call in calls:
                try:
                    answers, own_entries, own_flowed = self._decide(call, by_value, now, today)
                except Exception as error:  # that call's alone: nothing of it is written
                    decided.append(error)
                    continue
                flowed_in += [(len(entries) + i, f) for i, f in own_flowed]
                decided.append((len(entries), answers))
                entries += own_entries
            with transaction.writing() as connection:
                sequences = self._log.append(connection, entries, now)
                flowed = [f for _, f in flowed_in]
                signals.record(connection, flowed, [sequences[i] for i, _ in flowed_in], now)
        results: list[list[Answer] | Exception] = []
        for d in decided:
            if isinstance(d, Exception):
                results.append(d)
                continue
            first, answers = d
            own = sequences[first : first + len(answers)]
            results.append(
                [dataclasses.replace(a, sequence=s) for a, s in zip(answers, own, strict=True)]
            )
        return results

    def _decide(
        self,
        call: _Call,
        by_value: Mapping[bytes, list[repository.Found]],
        now: dt.datetime,
        today: dt.date,
    ) -> tuple[list[Answer], list[Entry], list[tuple[int, signals.FlowedIn]]]:
        """One call's answers, their entries in order, and the look-ups that found markers
        and signal their houses, by their entry's index."""
        inquiry, scope = call.inquiry, call.scope
        break_glass = inquiry.break_glass_reason is not None
        location = (
            self._zsm_locations.get(inquiry.caller.id)
            if inquiry.purpose in signals.SIGNAL_PURPOSES
            else None
        )
        answers: list[Answer] = []
        entries: list[Entry] = []
        flowed_in: list[tuple[int, signals.FlowedIn]] = []
        for q in call.questions:
            if not _has_case(inquiry, q):
                answers.append(Answer(None, CASE_REFERENCE_REQUIRED, 0, break_glass, now))
                entries.append(_denied(inquiry, q, now, CASE_REFERENCE_REQUIRED.reason))
                continue
            found = [row for v in q.values for row in by_value.get(v, ())]
            disclosure = disclose(
                found,
                scope,
                today,
                self._sealer,
                minor=q.age == "minor",
                break_glass=break_glass,
            )
            answers.append(Answer(disclosure, None, 0, break_glass, now))
            if location is not None and disclosure.found:
                # Every marker found, whether or not the caller may see it: the house is
                # to hear that its person flowed in.
                markers = {row.uid: (row.house_id, row.source_record_id) for row in found}
                flowed_in.append(
                    (
                        len(entries),
                        signals.FlowedIn(sorted(markers.values()), q.case_reference, location),
                    )
                )
            entries.append(
                entry(
                    inquiry,
                    now,
                    _outcome(disclosure, break_glass),
                    subject=q.values,
                    case_reference=q.case_reference,
                    covenants=scope.covenants,
                    # Which of the subject's pseudonyms found a marker: what a sweep counts.
                    matched=[v.hex() for v in dict.fromkeys(q.values) if v in by_value],
                    # The age the caller claimed (the disclosure says whether a source
                    # knew better).
                    subject_age=q.age,
                    **disclosure.log_fields(),
                )
            )
        return answers, entries, flowed_in

    def _admit(self, inquiry: Inquiry, today: dt.date) -> Scope:
        if not inquiry.purpose:
            raise PermissionDenied("PURPOSE_REQUIRED", "name the purpose of the lookup")
        scope = self._policy.authorise(inquiry.caller, inquiry.purpose, today)
        if inquiry.purpose not in LOOKUP_PURPOSES:
            raise PermissionDenied(
                "PURPOSE_NOT_FOR_LOOKUP",
                "{purpose} does not look up persons",
                metadata={"purpose": inquiry.purpose},
            )
        if inquiry.break_glass_reason is not None and (
            inquiry.caller.role != BREAK_GLASS_ROLE or inquiry.purpose != BREAK_GLASS_PURPOSE
        ):
            raise PermissionDenied(
                "BREAK_GLASS_NOT_ALLOWED",
                "break-glass is for the {breakGlassRole} role at {breakGlassPurpose} only",
                metadata={
                    "breakGlassRole": BREAK_GLASS_ROLE,
                    "breakGlassPurpose": BREAK_GLASS_PURPOSE,
                },
            )
        return scope


def _outcome(disclosure: Disclosure, break_glass: bool) -> str:
    if not disclosure.found:
        return "no-hit"
    if break_glass:
        return "break-glass"
    return "hit" if disclosure.hits else "withheld"


def _has_case(inquiry: Inquiry, question: Question) -> bool:
    return bool(question.case_reference) or inquiry.purpose in WITHOUT_CASE


def _denied(inquiry: Inquiry, question: Question, now: dt.datetime, reason: str) -> Entry:
    return entry(
        inquiry,
        now,
        "denied",
        subject=question.values,
        case_reference=question.case_reference,
        denial_reason=reason,
    )
