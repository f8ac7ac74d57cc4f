"""Recording a ZSM decision: route it to the houses that marked the person (or an aanmelding to
the house of the residence municipality), and purge the case on technisch sepot 01.

Everything a call writes (the decision, its delivery items, the access-log entry) commits in one
transaction; the outbox is woken after the commit.
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
from services.feedback.context import Context, pseudonym_values
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
        results: list[Recorded | BakenError | None] = [None] * len(calls)
        asked: dict[int, set[str]] = {}
        # One connection for what is read before routing (on PostgreSQL each checkout is a
        # round trip for its ping and one for its reset).
        with context.engine.connect() as connection:
            for i, ((inquiry, decision), key) in enumerate(zip(calls, keys, strict=True)):
                earlier = self._earlier(connection, key) if key else None
                if earlier is not None:
                    results[i] = earlier
                elif decision.code != DecisionCode.TECHNISCH_SEPOT_01:
                    try:
                        context.check_not_purged(connection, decision.case_reference)
                    except BakenError as error:
                        results[i] = error
                        continue
                    asked[i] = repository.houses_asked(
                        connection, decision.case_reference, inquiry.caller.id
                    )
        (inquiry, decision), *_ = calls
        if decision.code == DecisionCode.TECHNISCH_SEPOT_01 and results[0] is None:
            # Alone, as record_all lets it be.
            return [Recorded("", Routing((), ()), self._purge(inquiry, decision.case_reference))]
        todo = list(asked)
        found = context.markings_of(
            [
                (calls[i][0], Asked(d.subject, d.case_reference, d.subject_age))
                for i in todo
                for d in (calls[i][1],)
            ],
            TERUGKOPPELING,
        )
        visible = context.advice_visible(inquiry.caller) if todo else frozenset()
        routed: list[tuple[int, Decision, str, Sequence[Marking], Routing]] = []
        for i, markings in zip(todo, found, strict=True):
            if isinstance(markings, BakenError):
                results[i] = markings
                continue
            try:
                routed.append((i, *self._route(calls[i], markings, visible | asked[i])))
            except BakenError as error:
                results[i] = error
        if routed:
            self._store(calls, keys, routed, results)
            context.outbox.notify()
        done = [r for r in results if r is not None]
        if len(done) != len(calls):
            raise RuntimeError("a decision was left without a result")
        return done

    def _route(
        self, call: tuple[Inquiry, Decision], markings: Sequence[Marking], visible: frozenset[str]
    ) -> tuple[Decision, str, Sequence[Marking], Routing]:
        inquiry, decision = call
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
        return decision, decision_id, markings, Routing(routing.items, not_routed)

    def _store(
        self,
        calls: Sequence[tuple[Inquiry, Decision]],
        keys: Sequence[str | None],
        routed: Sequence[tuple[int, Decision, str, Sequence[Marking], Routing]],
        results: list[Recorded | BakenError | None],
    ) -> None:
        """The decisions, their items and their access-log entries, in one transaction. A
        decision whose case was purged, or waits for advice, meanwhile is refused alone: its
        checks come before its writes."""
        context = self._context
        now = context.now()
        entries = []
        with db.write_transaction(context.engine) as connection:
            for i, decision, decision_id, markings, routing in routed:
                inquiry = calls[i][0]
                try:
                    context.check_not_purged(connection, decision.case_reference)
                    if not decision.routes_only:
                        _check_no_advice_in_term(connection, decision.case_reference, now)
                except BakenError as error:
                    results[i] = error
                    continue
                self._write(
                    connection, inquiry, decision, keys[i], decision_id, markings, routing, now
                )
                entries.append(
                    context.entry(
                        inquiry,
                        now,
                        "routed" if routing.items else "not-routed",
                        activity=DECISION_ACTIVITY,
                        subject=pseudonym_values(decision.subject),
                        case_reference=decision.case_reference,
                        routing=routing,
                        decision=f"DECISION_CODE_{decision.code.name}",
                    )
                )
                results[i] = Recorded(f"decisions/{decision_id}", routing)
            context.append_entries(connection, entries, now)

    def _write(
        self,
        connection: Connection,
        inquiry: Inquiry,
        decision: Decision,
        request_key: str | None,
        decision_id: str,
        markings: Sequence[Marking],
        routing: Routing,
        now: dt.datetime,
    ) -> None:
        context = self._context
        caller = inquiry.caller
        repository.add_decision(
            connection,
            decision_id,
            request_key=request_key,
            case_reference=decision.case_reference,
            party_id=caller.id,
            recorded_time=now,
            code=decision.code,
            stage=decision.stage,
            minor=decision.subject_age == SubjectAge.MINOR,
            known=bool(markings),
            advice_current=any(m.advice_counts for m in markings),
            advice_followed=_summary(decision),
            complex_problems=decision.complex_problems_suspected,
            deviation_reason_given=any(
                line.deviated and line.deviation_reason for line in decision.house_advice
            ),
            house_advice=decision.house_advice,
        )
        repository.link_inflow_decision(
            connection,
            context.region_of(caller),
            decision.case_reference,
            decision_id,
            decision.stage,
        )
        context.outbox.add(
            connection,
            routing.items,
            now,
            case_reference=decision.case_reference,
            decision_id=decision_id,
        )

    def _earlier(self, connection: Connection, request_key: str) -> Recorded | None:
        earlier = repository.earlier_decision(connection, request_key)
        if earlier is None:
            return None
        decision_id, rows = earlier
        items = tuple(
            Item(key, house_id, "", Delivery(house_id, DeliveryKind(kind), key=key), (), {})
            for key, house_id, kind in rows
        )
        return Recorded(f"decisions/{decision_id}", Routing(items, ()))

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


def _check_no_advice_in_term(connection: Connection, case_reference: str, now: dt.datetime) -> None:
    waiting = repository.advice_in_term(connection, case_reference, now)
    if waiting is not None:
        house_id, due_time = waiting
        raise FailedPrecondition(
            "ADVICE_REQUEST_IN_TERM",
            "advice was asked of {house} until {dueTime}; decide after its answer or once the "
            "term has passed",
            metadata={
                "house": house_name(house_id),
                "dueTime": due_time.isoformat(timespec="seconds"),
            },
        )


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
