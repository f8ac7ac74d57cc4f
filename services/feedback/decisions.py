"""Recording a ZSM decision: route it to the houses that marked the person (or an aanmelding to
the house of the residence municipality), and purge the case on technisch sepot 01.

Everything a call writes (its decisions, their delivery items and access-log entries) commits in
one transaction; the outbox is woken after the commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from baken.errors import BakenError, FailedPrecondition, FieldViolation, InvalidArgument
from baken.houses import house_name
from baken.purposes import TERUGKOPPELING
from services.accesslog.inquiry import Inquiry
from services.common import db
from services.feedback import repository
from services.feedback.context import Context, case_purged, pseudonym_values
from services.feedback.routing import Asked, Item, Marking, NotRouted, Routing, route_decision
from services.feedback.signals import SIGNAL_PAGE, Signals
from services.feedback.values import (
    AdviceFollowed,
    Decision,
    DecisionCode,
    Delivery,
    DeliveryKind,
    SubjectAge,
)

DECISION_ACTIVITY = "baken:terugkoppeling-zsm-beslissing"
PURGE_ACTIVITY = "baken:verwijdering-technisch-sepot"


@dataclass(frozen=True, slots=True)
class _Routed:
    """A decision routed, on its way to be stored; `position` is its place in the call."""

    position: int
    inquiry: Inquiry
    decision: Decision
    request_key: str | None
    decision_id: str
    markings: Sequence[Marking]
    routing: Routing


@dataclass(frozen=True, slots=True)
class Recorded:
    name: str
    routing: Routing
    purged_items: int = 0


class Decisions:
    def __init__(
        self, context: Context, signals: Signals, *, municipalities: Mapping[str, str]
    ) -> None:
        self._context = context
        self._signals = signals
        self._municipalities = municipalities

    def referral_house(self, municipality: str) -> str | None:
        return self._municipalities.get(municipality.strip().casefold())

    def record(self, inquiry: Inquiry, decision: Decision) -> Recorded:
        (result,) = self.record_all([(inquiry, decision)])
        if isinstance(result, BakenError):
            raise result
        return result

    def record_all(self, calls: Sequence[tuple[Inquiry, Decision]]) -> list[Recorded | BakenError]:
        """The decisions of one caller, in order, each recorded as it would be alone, or why it
        was refused. One read, one routing call per user and one transaction serve them all; a
        technisch sepot 01 among them, or a request key twice, and they go one by one."""
        if not calls:
            return []
        self._context.authorise(calls[0][0].caller, TERUGKOPPELING)
        keys = [_request_key(inquiry, decision) for inquiry, decision in calls]
        given = [key for key in keys if key is not None]
        alone = len(calls) == 1
        if not alone and (
            len(set(given)) < len(given)
            or any(d.code == DecisionCode.TECHNISCH_SEPOT_01 for _, d in calls)
        ):
            return [self._one(inquiry, decision) for inquiry, decision in calls]
        try:
            return self._record(calls, keys)
        except IntegrityError:
            # A request key recorded a moment ago by a concurrent retry.
            if not alone:
                return [self._one(inquiry, decision) for inquiry, decision in calls]
            (key,) = keys
            if key is None:
                raise
            with self._context.engine.connect() as connection:
                earlier = self._earlier(connection, key)
            if earlier is None:
                raise
            return [earlier]

    def _one(self, inquiry: Inquiry, decision: Decision) -> Recorded | BakenError:
        try:
            return self.record(inquiry, decision)
        except BakenError as error:
            return error

    def _record(
        self, calls: Sequence[tuple[Inquiry, Decision]], keys: Sequence[str | None]
    ) -> list[Recorded | BakenError]:
        context = self._context
        (inquiry, decision), *_ = calls
        caller = inquiry.caller
        results: list[Recorded | BakenError | None] = [None] * len(calls)
        # One connection for what is read before routing (on PostgreSQL each checkout is a
        # round trip for its ping and one for its reset), a statement for all decisions.
        with context.engine.connect() as connection:
            earlier = repository.earlier_decisions(connection, [k for k in keys if k])
            for i, key in enumerate(keys):
                if key in earlier:
                    results[i] = _recorded(*earlier[key])
            cases = {
                d.case_reference for (_, d), r in zip(calls, results, strict=True) if r is None
            }
            purged = context.purged(connection, cases)
            asked = repository.houses_asked(connection, cases - purged, caller.id)
        if decision.code == DecisionCode.TECHNISCH_SEPOT_01 and results[0] is None:
            # Alone, as record_all lets it be.
            return [Recorded("", Routing((), ()), self._purge(inquiry, decision.case_reference))]
        todo = []
        for i, (_, d) in enumerate(calls):
            if results[i] is None:
                if d.case_reference in purged:
                    results[i] = case_purged()
                else:
                    todo.append(i)
        found = context.markings_of(
            [
                (asker, Asked(d.subject, d.case_reference, d.subject_age))
                for asker, d in (calls[i] for i in todo)
            ],
            TERUGKOPPELING,
        )
        visible = context.advice_visible(caller) if todo else frozenset()
        routed: list[_Routed] = []
        for i, markings in zip(todo, found, strict=True):
            if isinstance(markings, BakenError):
                results[i] = markings
                continue
            inquiry, d = calls[i]
            try:
                routed.append(
                    self._route(i, inquiry, d, keys[i], markings, visible | asked[d.case_reference])
                )
            except BakenError as error:
                results[i] = error
        if routed:
            self._store(routed, results)
            context.outbox.notify()
        done = [r for r in results if r is not None]
        if len(done) != len(calls):
            raise RuntimeError("a decision was left without a result")
        return done

    def _route(
        self,
        position: int,
        inquiry: Inquiry,
        decision: Decision,
        request_key: str | None,
        markings: Sequence[Marking],
        visible: frozenset[str],
    ) -> _Routed:
        context = self._context
        decision = _with_house_advice(decision, markings, visible)
        decision_id = uuid.uuid4().hex[:20]
        referral_house = self.referral_house(decision.residence_municipality)
        routing = route_decision(
            decision,
            markings,
            context.recipients,
            decision_id=decision_id,
            referral_house=referral_house,
            zsm_location=context.location_of(inquiry.caller),
            now=context.now(),
        )
        not_routed = routing.not_routed
        if not markings and decision.complex_problems_suspected and referral_house is None:
            not_routed = (NotRouted("", "NO_HOUSE_FOR_MUNICIPALITY"),)
        return _Routed(
            position,
            inquiry,
            decision,
            request_key,
            decision_id,
            markings,
            Routing(routing.items, not_routed),
        )

    def _store(
        self, routed: Sequence[_Routed], results: list[Recorded | BakenError | None]
    ) -> None:
        """The decisions, their items and their access-log entries, in one transaction, a
        statement for all. A decision whose case was purged, or waits for advice, meanwhile is
        refused alone: its checks come before the writes."""
        context = self._context
        now = context.now()
        with db.write_transaction(context.engine) as connection:
            cases = {r.decision.case_reference for r in routed}
            purged = context.purged(connection, cases)
            waiting = repository.advice_in_term(
                connection,
                {r.decision.case_reference for r in routed if not r.decision.routes_only},
                now,
            )
            stored = []
            for r in routed:
                case = r.decision.case_reference
                if case in purged:
                    results[r.position] = case_purged()
                elif not r.decision.routes_only and case in waiting:
                    results[r.position] = _advice_in_term(*waiting[case])
                else:
                    stored.append(r)
            if not stored:
                return
            repository.add_decisions(connection, [self._new(r, now) for r in stored])
            repository.link_inflow_decisions(
                connection,
                [
                    (
                        context.region_of(r.inquiry.caller),
                        r.decision.case_reference,
                        r.decision_id,
                        r.decision.stage,
                    )
                    for r in stored
                ],
            )
            context.outbox.add_all(
                connection,
                [(r.routing.items, r.decision.case_reference, r.decision_id) for r in stored],
                now,
            )
            context.append_entries(
                connection,
                [
                    context.entry(
                        r.inquiry,
                        now,
                        "routed" if r.routing.items else "not-routed",
                        activity=DECISION_ACTIVITY,
                        subject=pseudonym_values(r.decision.subject),
                        case_reference=r.decision.case_reference,
                        routing=r.routing,
                        decision=f"DECISION_CODE_{r.decision.code.name}",
                    )
                    for r in stored
                ],
                now,
            )
        for r in stored:
            results[r.position] = Recorded(f"decisions/{r.decision_id}", r.routing)

    @staticmethod
    def _new(r: _Routed, now: dt.datetime) -> repository.NewDecision:
        decision = r.decision
        return repository.NewDecision(
            r.decision_id,
            request_key=r.request_key,
            case_reference=decision.case_reference,
            party_id=r.inquiry.caller.id,
            recorded_time=now,
            code=decision.code,
            stage=decision.stage,
            minor=decision.subject_age == SubjectAge.MINOR,
            known=bool(r.markings),
            advice_current=any(m.advice_counts for m in r.markings),
            advice_followed=_summary(decision),
            complex_problems=decision.complex_problems_suspected,
            deviation_reason_given=any(
                line.deviated and line.deviation_reason for line in decision.house_advice
            ),
            house_advice=decision.house_advice,
        )

    def _earlier(self, connection: Connection, request_key: str) -> Recorded | None:
        earlier = repository.earlier_decisions(connection, [request_key]).get(request_key)
        return None if earlier is None else _recorded(*earlier)

    def _purge(self, inquiry: Inquiry, case_reference: str) -> int:
        """Technisch sepot 01: nobody may use the case's data. Everything of the case goes,
        queued items included; each item a house may already hold gets a retraction; the
        case is remembered as purged by a keyed hash of its reference only, so that a later
        signal under it is dropped and a later decision refused. The log says that a purge
        happened, by whom, and how much, never which case. Signals of the case still waiting
        in the registry are taken over first, so that none arrives after the purge
        (UNAVAILABLE while the registry is away)."""
        context = self._context
        while self._signals.follow() == SIGNAL_PAGE:
            pass
        now = context.now()
        with db.write_transaction(context.engine) as connection:
            items, retractions = context.outbox.purge_case(connection, case_reference, now)
            requests = repository.delete_advice_requests(connection, case_reference)
            earlier = repository.delete_decisions(connection, case_reference)
            # He was wrongly taken for a suspect: he was never in the inflow.
            inflow = repository.delete_inflow(connection, case_reference)
            repository.add_purged_case(connection, context.outbox.case_digest(case_reference), now)
            context.append(
                connection,
                inquiry,
                now,
                "purged",
                activity=PURGE_ACTIVITY,
                purged={
                    "items": items,
                    "advice_requests": requests,
                    "decisions": earlier,
                    "inflow": inflow,
                },
                retractions=retractions,
            )
        context.outbox.notify()
        return items


def _request_key(inquiry: Inquiry, decision: Decision) -> str | None:
    return f"{inquiry.caller.id}:{decision.request_key}" if decision.request_key else None


def _summary(decision: Decision) -> AdviceFollowed:
    """The decision's advice as one value for the region's figures: NOT_FOLLOWED when any
    house's advice was not followed, FOLLOWED when every line was, else NO_ADVICE."""
    lines = decision.house_advice
    if any(line.deviated for line in lines):
        return AdviceFollowed.NOT_FOLLOWED
    return AdviceFollowed.FOLLOWED if lines else AdviceFollowed.NO_ADVICE


def _advice_in_term(house_id: str, due_time: dt.datetime) -> FailedPrecondition:
    return FailedPrecondition(
        "ADVICE_REQUEST_IN_TERM",
        "advice was asked of {house} until {dueTime}; decide after its answer or once the "
        "term has passed",
        metadata={
            "house": house_name(house_id),
            "dueTime": due_time.isoformat(timespec="seconds"),
        },
    )


def _recorded(decision_id: str, rows: Sequence[tuple[str, str, int]]) -> Recorded:
    """A decision recorded before, as its items were routed (without their content)."""
    items = tuple(
        Item(key, house_id, "", Delivery(house_id, DeliveryKind(kind), key=key), (), {})
        for key, house_id, kind in rows
    )
    return Recorded(f"decisions/{decision_id}", Routing(items, ()))


def _with_house_advice(
    decision: Decision, markings: Sequence[Marking], visible: frozenset[str]
) -> Decision:
    """The decision with one advice line per marking house whose CURRENT or AGED advice the
    desk could see, or InvalidArgument. A line for any other house is refused in the same words
    whether that house marked the person, has advice, or neither: the refusal tells the desk
    nothing its look-up did not."""
    advising = [m.house_id for m in markings if m.advice_counts and m.house_id in visible]
    lines = list(decision.house_advice)
    if len(lines) == 1 and lines[0].house_id == "":
        if len(advising) > 1:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "house_advice",
                        "required: one line per house; several houses' advice could be seen",
                    )
                ]
            )
        if not advising:
            # As the deprecated field always was: said where no advice asked for it, ignored.
            return replace(decision, house_advice=())
        lines = [replace(lines[0], house_id=advising[0])]
    violations = [
        FieldViolation(
            f"house_advice[{i}].house",
            "not a house whose CURRENT or AGED advice for this person the desk could see",
        )
        for i, line in enumerate(lines)
        if line.house_id not in advising
    ]
    given = {line.house_id for line in lines}
    violations += [
        FieldViolation(
            "house_advice",
            f"required: a line for houses/{house_id}, whose CURRENT or AGED advice the desk "
            "could see; FOLLOWED or NOT_FOLLOWED (with deviation_reason)",
        )
        for house_id in advising
        if house_id not in given
    ]
    if violations:
        raise InvalidArgument(violations)
    return replace(decision, house_advice=tuple(lines))
