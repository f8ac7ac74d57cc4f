"""FeedbackService over gRPC: checks each request, names the caller from its certificate, and
hands over to the use cases (decisions, advice) and the outbox."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import grpc

from baken.errors import BakenError, FieldViolation, InvalidArgument, NotFound
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.houses import house_id_of, house_name
from baken.purposes import INTAKE, TERUGKOPPELING
from baken.registry.v1 import registry_service_pb2
from baken.type.v1 import pseudonym_pb2
from services.accesslog.inquiry import Inquiry, inquiry_of
from services.common import checks, field_rules
from services.common.covenants import CovenantSet, Formats
from services.common.grpc_server import caller_of
from services.feedback import validation
from services.feedback.advice import ADVICE_PURPOSE, Advice
from services.feedback.context import Context
from services.feedback.decisions import Decisions, Recorded
from services.feedback.inflow import Inflow
from services.feedback.outbox import DeadLetter
from services.feedback.values import (
    AdviceRequestView,
    Decision,
    HeldDecision,
    InflowView,
    SubjectAge,
)
from services.feedback.wire import delivered, timestamp

SERVICE = "/baken.feedback.v1.FeedbackService/"


def _advice_request(view: AdviceRequestView, now: dt.datetime) -> pb.AdviceRequest:
    message = pb.AdviceRequest(
        name=view.name,
        case_reference=view.case_reference,
        house=house_name(view.house_id),
        requested_time=timestamp(view.requested_time),
        due_time=timestamp(view.due_time),
        state=pb.AdviceRequestState.ValueType(view.state(now)),
        requested_by=view.requested_by,
        delivery_key=view.delivery_key,
    )
    if view.answered_time is not None:
        message.answered_time.CopyFrom(timestamp(view.answered_time))
    if view.cancelled_time is not None:
        message.cancelled_time.CopyFrom(timestamp(view.cancelled_time))
    return message


def _dead_letter(letter: DeadLetter) -> pb.DeadLetter:
    message = pb.DeadLetter(
        name=f"deadLetters/{letter.key}",
        house=house_name(letter.house_id),
        kind=pb.DeliveryKind.ValueType(letter.kind),
        attempts=letter.attempts,
        created_time=timestamp(letter.created_time),
        last_failure=letter.last_failure,
    )
    if letter.last_attempt_time is not None:
        message.last_attempt_time.CopyFrom(timestamp(letter.last_attempt_time))
    return message


def _held(held: HeldDecision) -> pb.HeldDecision:
    return pb.HeldDecision(
        code=pb.DecisionCode.ValueType(held.code),
        sepot_code=held.sepot_code,
        stage=pb.DecisionStage.ValueType(held.stage),
        request_key=held.request_key,
        problem=held.problem,
        probation_report_requested=held.probation_report_requested,
    )


def _inflow_entry(view: InflowView) -> pb.InflowEntry:
    entry = pb.InflowEntry(
        name=f"inflow/{view.id}",
        case_reference=view.case_reference,
        arrest_time=timestamp(view.arrest_time),
        subject_age=registry_service_pb2.SubjectAge.ValueType(
            SubjectAge.MINOR if view.minor else SubjectAge.ADULT
        ),
        offence_category=view.offence_category,
        known=view.known,
        decision=f"decisions/{view.decision_id}" if view.decision_id else "",
        decision_stage=pb.DecisionStage.ValueType(view.decision_stage or 0),
        recorded_by=view.recorded_by,
        recorded_time=timestamp(view.recorded_time),
    )
    if view.subject:
        entry.subject.CopyFrom(
            pseudonym_pb2.Subject(
                pseudonyms=[
                    pseudonym_pb2.Pseudonym(
                        kind=pseudonym_pb2.PseudonymKind.ValueType(p.kind),
                        key_id=p.key_id,
                        value=p.value,
                    )
                    for p in view.subject
                ]
            )
        )
    if view.checked_time is not None:
        entry.checked_time.CopyFrom(timestamp(view.checked_time))
    if view.held_decision is not None:
        entry.held_decision.CopyFrom(_held(view.held_decision))
    return entry


def _recorded(recorded: Recorded) -> pb.RecordDecisionResponse:
    return pb.RecordDecisionResponse(
        name=recorded.name,
        items=[
            pb.RoutedItem(
                house=house_name(i.house_id),
                kind=pb.DeliveryKind.ValueType(i.kind),
                key=i.key,
                withheld=i.withheld,
            )
            for i in recorded.routing.items
        ],
        not_routed=[
            pb.NotRouted(house=house_name(n.house_id) if n.house_id else "", reason=n.reason)
            for n in recorded.routing.not_routed
        ],
        purged_items=recorded.purged_items,
    )


class FeedbackServicer(feedback_service_pb2_grpc.FeedbackServiceServicer):
    def __init__(
        self,
        context: Context,
        decisions: Decisions,
        advice: Advice,
        inflow: Inflow,
        *,
        poll_seconds: float,
        register: CovenantSet,
    ) -> None:
        self._register = register
        self._context = context
        self._decisions = decisions
        self._advice = advice
        self._inflow = inflow
        self._outbox = context.outbox
        self._poll = poll_seconds

    def RecordDecision(
        self, request: pb.RecordDecisionRequest, context: grpc.ServicerContext
    ) -> pb.RecordDecisionResponse:
        formats = self._register.formats_of(caller_of(context).id)
        call = self._decision(request, context, formats, "RecordDecision")
        return _recorded(self._decisions.record(*call))

    def RecordDecisions(
        self, request: pb.RecordDecisionsRequest, context: grpc.ServicerContext
    ) -> pb.RecordDecisionsResponse:
        formats = self._register.formats_of(caller_of(context).id)
        response = pb.RecordDecisionsResponse()
        valid: list[tuple[pb.RecordDecisionResult, tuple[Inquiry, Decision]]] = []
        for one in request.requests:
            result = response.results.add()
            try:
                field_rules.check(one)
                valid.append((result, self._decision(one, context, formats, "RecordDecisions")))
            except BakenError as error:
                result.error.CopyFrom(error.to_status())
        recorded = self._decisions.record_all([call for _, call in valid])
        for (result, _), outcome in zip(valid, recorded, strict=True):
            if isinstance(outcome, BakenError):
                result.error.CopyFrom(outcome.to_status())
            else:
                result.decision.CopyFrom(_recorded(outcome))
        return response

    def _decision(
        self,
        request: pb.RecordDecisionRequest,
        context: grpc.ServicerContext,
        formats: Formats,
        method: str,
    ) -> tuple[Inquiry, Decision]:
        decision = validation.record_decision(request, self._decisions.referral_house, formats)
        inquiry = inquiry_of(
            context,
            SERVICE + method,
            TERUGKOPPELING,
            decision.on_behalf_of,
            register=self._register,
        )
        return inquiry, decision

    def RequestAdvice(
        self, request: pb.RequestAdviceRequest, context: grpc.ServicerContext
    ) -> pb.AdviceRequest:
        formats = self._register.formats_of(caller_of(context).id)
        asked = validation.request_advice(request, self._decisions.referral_house, formats)
        inquiry = inquiry_of(
            context,
            SERVICE + "RequestAdvice",
            ADVICE_PURPOSE,
            asked.on_behalf_of,
            register=self._register,
        )
        view = self._advice.request(inquiry, asked)
        return _advice_request(view, view.requested_time)

    def AnswerAdviceRequest(
        self, request: pb.AnswerAdviceRequestRequest, context: grpc.ServicerContext
    ) -> pb.AdviceRequest:
        request_id = validation.advice_request_id(request.name)
        view = self._advice.answer(caller_of(context), request_id)
        return _advice_request(view, view.answered_time or view.requested_time)

    def CancelAdviceRequest(
        self, request: pb.CancelAdviceRequestRequest, context: grpc.ServicerContext
    ) -> pb.AdviceRequest:
        request_id = validation.advice_request_id(request.name)
        inquiry = inquiry_of(
            context,
            SERVICE + "CancelAdviceRequest",
            ADVICE_PURPOSE,
            request.on_behalf_of,
            register=self._register,
        )
        view = self._advice.cancel(inquiry, request_id)
        return _advice_request(view, self._context.now())

    def ListAdviceRequests(
        self, request: pb.ListAdviceRequestsRequest, context: grpc.ServicerContext
    ) -> pb.ListAdviceRequestsResponse:
        house_id = house_id_of(request.house) if request.house else None
        views = self._advice.unanswered(
            caller_of(context), overdue_only=request.overdue_only, house_id=house_id
        )
        now = self._context.now()
        start, end = checks.page(request.page_size, request.page_token, views)
        return pb.ListAdviceRequestsResponse(
            advice_requests=[_advice_request(v, now) for v in views[start:end]],
            next_page_token=str(end) if end < len(views) else "",
        )

    def SubscribeDeliveries(
        self, request: pb.SubscribeDeliveriesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Delivery]:
        house_id = house_id_of(request.house)
        self._context.check_adapter_for(caller_of(context), house_id)
        context.add_callback(self._outbox.notify)  # a cancelled stream stops waiting
        with self._outbox.stream(house_id):
            while context.is_active():
                generation = self._outbox.generation()
                sent = self._outbox.take(house_id)
                for item in sent:
                    yield delivered(item.payload, item.attempt)
                if sent:
                    continue
                self._outbox.wait(generation, self._wait_seconds(house_id))

    def _wait_seconds(self, house_id: str) -> float:
        due = self._outbox.next_due(house_id)
        if due is None:
            return self._poll
        left = (due - self._context.now()).total_seconds()
        return min(max(left, 0.01), self._poll)

    def AcknowledgeDelivery(
        self, request: pb.AcknowledgeDeliveryRequest, context: grpc.ServicerContext
    ) -> pb.AcknowledgeDeliveryResponse:
        acknowledgement = validation.key(request.key), validation.failure(request.failure)
        if self._acknowledge(context, [acknowledgement]):
            raise NotFound("DELIVERY_NOT_FOUND", "no delivery item has this key")
        return pb.AcknowledgeDeliveryResponse()

    def AcknowledgeDeliveries(
        self, request: pb.AcknowledgeDeliveriesRequest, context: grpc.ServicerContext
    ) -> pb.AcknowledgeDeliveriesResponse:
        acknowledgements = []
        violations = []
        for i, one in enumerate(request.acknowledgements):
            prefix = f"acknowledgements[{i}]."
            found = field_rules.violations(one, prefix)
            try:
                acknowledgements.append((validation.key(one.key), validation.failure(one.failure)))
            except InvalidArgument as error:
                found += [FieldViolation(prefix + v.field, v.description) for v in error.violations]
            violations += found
        if violations:
            raise InvalidArgument(violations)
        unknown = self._acknowledge(context, acknowledgements)
        return pb.AcknowledgeDeliveriesResponse(unknown_keys=unknown)

    def _acknowledge(
        self, context: grpc.ServicerContext, acknowledgements: Sequence[tuple[str, str | None]]
    ) -> list[str]:
        """Acknowledge the items the caller's house adapter may; the keys of no item. An item
        of another house refuses them all."""
        caller = caller_of(context)
        houses = self._outbox.houses_of([key for key, _ in acknowledgements])
        for house_id in set(houses.values()):
            self._context.check_adapter_for(caller, house_id)
        self._outbox.acknowledge([a for a in acknowledgements if a[0] in houses])
        return [key for key, _ in acknowledgements if key not in houses]

    def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        house_id = house_id_of(request.house) if request.house else None
        self._context.check_operator(caller_of(context))
        letters = self._outbox.dead_letters(house_id)
        start, end = checks.page(request.page_size, request.page_token, letters)
        return pb.ListDeadLettersResponse(
            dead_letters=[_dead_letter(d) for d in letters[start:end]],
            next_page_token=str(end) if end < len(letters) else "",
        )

    def RequeueDeadLetter(
        self, request: pb.RequeueDeadLetterRequest, context: grpc.ServicerContext
    ) -> pb.DeadLetter:
        key = validation.dead_letter_key(request.name)
        self._context.check_operator(caller_of(context))
        return _dead_letter(self._outbox.requeue(key))

    def RecordInflow(
        self, request: pb.RecordInflowRequest, context: grpc.ServicerContext
    ) -> pb.InflowEntry:
        formats = self._register.formats_of(caller_of(context).id)
        record = validation.record_inflow(request, formats, self._context.now())
        inquiry = inquiry_of(
            context, SERVICE + "RecordInflow", INTAKE, record.on_behalf_of, register=self._register
        )
        return _inflow_entry(self._inflow.record(inquiry, record))

    def ListInflow(
        self, request: pb.ListInflowRequest, context: grpc.ServicerContext
    ) -> pb.ListInflowResponse:
        formats = self._register.formats_of(caller_of(context).id)
        validation.list_inflow(request, formats)
        inquiry = inquiry_of(
            context, SERVICE + "ListInflow", INTAKE, request.on_behalf_of, register=self._register
        )
        since = request.since.ToDatetime(dt.UTC) if request.HasField("since") else None
        views = self._inflow.since(inquiry, since)
        start, end = checks.page(request.page_size, request.page_token, views)
        return pb.ListInflowResponse(
            entries=[_inflow_entry(v) for v in views[start:end]],
            next_page_token=str(end) if end < len(views) else "",
        )
