"""Advice on request: ZSM asks a house that marked the person for advice within a term, the
house's adapter reports it answered, the requesting desk may withdraw it, and desks and
operators list what is still open."""

from __future__ import annotations

import datetime as dt
import uuid

from baken.errors import FailedPrecondition, NotFound, PermissionDenied
from baken.houses import house_name
from baken.pki import Identity
from services.accesslog.inquiry import Inquiry
from services.common import db
from services.feedback import repository
from services.feedback.context import Context, pseudonym_values
from services.feedback.routing import (
    ENRICHMENT_REQUEST,
    Item,
    NotRouted,
    Routing,
    route_advice_cancellation,
    route_advice_request,
    route_enrichment_request,
)
from services.feedback.values import AdviceQuestion, AdviceRequestState, AdviceRequestView

ADVICE_ACTIVITY = "baken:advies-op-aanvraag"
ADVICE_PURPOSE = "advies-op-aanvraag"
CANCEL_ACTIVITY = "baken:advies-op-aanvraag-ingetrokken"


class Advice:
    def __init__(self, context: Context) -> None:
        self._context = context

    def request(self, inquiry: Inquiry, asked: AdviceQuestion) -> AdviceRequestView:
        context = self._context
        house_id = asked.house_id
        caller = inquiry.caller
        context.authorise(caller, ADVICE_PURPOSE)
        with context.engine.connect() as connection:
            context.check_not_purged(connection, asked.case_reference)
        markings = context.markings(
            inquiry,
            asked.subject,
            case_reference=asked.case_reference,
            subject_age=asked.subject_age,
            purpose=ADVICE_PURPOSE,
        )
        marking = next((m for m in markings if m.house_id == house_id), None)
        if asked.enriches and marking is None and markings:
            raise FailedPrecondition(
                "PERSON_KNOWN",
                "a house marks this person: ask a house that marked him, not for enrichment",
            )
        if marking is None and not asked.enriches:
            raise FailedPrecondition(
                "NOT_MARKED_BY_HOUSE",
                "{house} has not marked this person; ask a house that has",
                metadata={"house": house_name(house_id)},
            )
        now = context.now()
        due = asked.due(now)
        request_id = uuid.uuid4().hex[:20]
        zsm_location = context.location_of(caller)
        routed: Item | NotRouted
        if marking is not None:
            # The house marks him (an enrichment asked of the house that turns out to know
            # him too): to its own record; the sealed person is dropped unread.
            routed = route_advice_request(
                context.recipients,
                request_id=request_id,
                marking=marking,
                case_reference=asked.case_reference,
                question=asked.question,
                zsm_location=zsm_location,
                now=now,
                due=due,
            )
        else:
            assert asked.person is not None
            routed = route_enrichment_request(
                context.recipients,
                request_id=request_id,
                house_id=house_id,
                person=asked.person,
                criteria=asked.enrichment,
                case_reference=asked.case_reference,
                question=asked.question,
                zsm_location=zsm_location,
                now=now,
                due=due,
            )
        if isinstance(routed, NotRouted):
            raise _not_granted(routed)
        view = AdviceRequestView(
            request_id,
            asked.case_reference,
            house_id,
            routed.key,
            caller.id,
            now,
            due,
            None,
            source_record_id=marking.source_record_id if marking is not None else "",
        )
        with db.write_transaction(context.engine) as connection:
            context.check_not_purged(connection, asked.case_reference)
            repository.add_advice_request(connection, view)
            context.outbox.add(connection, [routed], now, case_reference=asked.case_reference)
            context.append(
                connection,
                inquiry,
                now,
                "routed",
                activity=ADVICE_ACTIVITY,
                subject=pseudonym_values(asked.subject),
                case_reference=asked.case_reference,
                routing=Routing((routed,), ()),
                due=view.due_time.isoformat(),
            )
        context.outbox.notify()
        return view

    def answer(self, caller: Identity, request_id: str) -> AdviceRequestView:
        """The house gave the advice asked for; answering twice keeps the first time. Only
        the adapter of the house asked may say so."""
        view = self._find(request_id)
        self._context.check_adapter_for(caller, view.house_id)
        if view.answered_time is None:
            with db.write_transaction(self._context.engine) as connection:
                repository.mark_answered(connection, request_id, self._context.now())
            view = self._find(request_id)
        return view

    def cancel(self, inquiry: Inquiry, request_id: str) -> AdviceRequestView:
        """The requesting party withdraws its request: it no longer holds up a decision, and
        the house hears it (an ADVICE_REQUEST_CANCELLED item, in the same transaction).
        Cancelling twice returns the cancelled request; an answered or overdue one cannot be."""
        context = self._context
        caller = inquiry.caller
        context.authorise(caller, ADVICE_PURPOSE)
        view = self._find(request_id)
        if view.requested_by != caller.id:
            raise PermissionDenied(
                "NOT_THE_REQUESTER", "only the party that asked for the advice may cancel it"
            )
        now = context.now()
        state = view.state(now)
        if state == AdviceRequestState.CANCELLED:
            return view
        if state != AdviceRequestState.OPEN:
            raise _not_open(state)
        routed = route_advice_cancellation(
            context.recipients,
            request_id=request_id,
            house_id=view.house_id,
            source_record_id=view.source_record_id,
            case_reference=view.case_reference,
            zsm_location=context.location_of(caller),
            now=now,
        )
        routing = (
            Routing((), (routed,)) if isinstance(routed, NotRouted) else Routing((routed,), ())
        )
        with db.write_transaction(context.engine) as connection:
            cancelled = repository.mark_cancelled(connection, request_id, now)
            if cancelled:
                context.outbox.add(
                    connection, routing.items, now, case_reference=view.case_reference
                )
                context.append(
                    connection,
                    inquiry,
                    now,
                    "cancelled",
                    activity=CANCEL_ACTIVITY,
                    case_reference=view.case_reference,
                    routing=routing,
                    advice_request=view.name,
                )
        if not cancelled:
            # Answered (or cancelled) a moment ago: nothing to withdraw.
            return self._refused_after_race(request_id, now)
        context.outbox.notify()
        return self._find(request_id)

    def _refused_after_race(self, request_id: str, now: dt.datetime) -> AdviceRequestView:
        view = self._find(request_id)
        state = view.state(now)
        if state == AdviceRequestState.CANCELLED:
            return view
        raise _not_open(state)

    def unanswered(
        self, caller: Identity, *, overdue_only: bool, house_id: str | None
    ) -> list[AdviceRequestView]:
        """Unanswered requests (open and overdue), earliest term first."""
        context = self._context
        if caller.role != "operator":
            context.authorise(caller, ADVICE_PURPOSE)
        else:
            context.check_party(caller)
        now = context.now()
        with context.engine.connect() as connection:
            return repository.unanswered_advice_requests(
                connection, due_by=now if overdue_only else None, house_id=house_id
            )

    def _find(self, request_id: str) -> AdviceRequestView:
        with self._context.engine.connect() as connection:
            view = repository.advice_request(connection, request_id)
        if view is None:
            raise NotFound("ADVICE_REQUEST_NOT_FOUND", "no advice request has this name")
        return view


def _not_granted(routed: NotRouted) -> FailedPrecondition | PermissionDenied:
    """Why the house asked cannot receive the request: an enrichment criterion its covenant
    does not grant (the disclosure that a person it does not know is a suspect needs one), or
    no advice requests at all."""
    criterion = _CRITERIA.get(routed.field)
    if criterion is not None:
        return PermissionDenied(
            "ENRICHMENT_NOT_GRANTED",
            "no covenant in force lets {house} receive an enrichment request for {criterion}",
            metadata={
                "house": house_name(routed.house_id),
                "criterion": f"TRIAGE_CRITERION_{criterion.name}",
            },
        )
    return FailedPrecondition(
        f"HOUSE_NOT_GRANTED_{routed.reason}",
        "no covenant in force lets {house} receive advice requests",
        metadata={"house": house_name(routed.house_id)},
    )


_CRITERIA = {field: criterion for criterion, field in ENRICHMENT_REQUEST.items()}


def _not_open(state: AdviceRequestState) -> FailedPrecondition:
    return FailedPrecondition(
        f"ADVICE_REQUEST_{state.name}",
        "the advice request is {state}; only an open request can be cancelled",
        metadata={"state": f"ADVICE_REQUEST_STATE_{state.name}"},
    )
