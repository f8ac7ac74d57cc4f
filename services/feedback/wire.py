"""The delivery items on the wire: a domain Delivery (services/feedback/values.py) as the
baken.feedback.v1.Delivery that the outbox stores (serialised, then sealed) and the stream sends.
The one place that builds or reads those messages; the servicer builds its responses."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2

from baken import enums
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.houses import house_name
from baken.registry.v1 import marker_pb2, registry_service_pb2
from services.feedback.values import DecisionFeedback, Delivery

_TARGET_GROUPS = enums.numbers(marker_pb2.TargetGroup, "TARGET_GROUP_")


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(dt.UTC))
    return stamp


def message(delivery: Delivery) -> pb.Delivery:
    """The wire's Delivery, without `attempt`."""
    message = pb.Delivery(
        key=delivery.key,
        house=house_name(delivery.house_id),
        kind=pb.DeliveryKind.ValueType(delivery.kind),
        case_reference=delivery.case_reference,
        source_record_id=delivery.source_record_id,
        zsm_location=delivery.zsm_location,
        question=delivery.question,
        withheld=delivery.withheld,
        advice_request=delivery.advice_request,
        retracts=delivery.retracts,
    )
    if delivery.occurred_time is not None:
        message.occurred_time.CopyFrom(timestamp(delivery.occurred_time))
    if delivery.decision is not None:
        _fill_decision(message.decision, delivery.decision)
    if (envelope := delivery.referral) is not None:
        message.referral.CopyFrom(
            pb.SealedEnvelope(
                house=envelope.house,
                key_id=envelope.key_id,
                ephemeral_public_key=envelope.ephemeral_public_key,
                ciphertext=envelope.ciphertext,
            )
        )
    if delivery.due_time is not None:
        message.due_time.CopyFrom(timestamp(delivery.due_time))
    message.enrichment_criteria.extend(pb.TriageCriterion.ValueType(c) for c in delivery.enrichment)
    if (match := delivery.match) is not None:
        message.match.house = match.house.name
        message.match.house_display_name = match.house.display_name
        message.match.contact.CopyFrom(match.house.to_proto().contact)
        if match.target_group:
            message.match.target_group = marker_pb2.TargetGroup.ValueType(
                _TARGET_GROUPS[match.target_group]
            )
    return message


def _fill_decision(target: pb.DecisionFeedback, decision: DecisionFeedback) -> None:
    target.SetInParent()
    target.code = pb.DecisionCode.ValueType(decision.code)
    target.sepot_code = decision.sepot_code
    target.stage = pb.DecisionStage.ValueType(decision.stage)
    target.subject_age = registry_service_pb2.SubjectAge.ValueType(decision.subject_age)
    target.advice_followed = pb.AdviceFollowed.ValueType(decision.advice_followed)
    target.deviation_reason = decision.deviation_reason
    target.other_houses = decision.other_houses
    target.probation_report_requested = decision.probation_report_requested
    if decision.triage is not None:
        target.triage.SetInParent()
        target.triage.checked = decision.triage.checked
        target.triage.matched.extend(
            pb.TriageCriterion.ValueType(m) for m in decision.triage.matched
        )
    target.complex_problems_suspected = decision.complex_problems_suspected


def encode(delivery: Delivery) -> bytes:
    """The payload the outbox stores (before it seals it)."""
    return message(delivery).SerializeToString()


def delivered(payload: bytes, attempt: int) -> pb.Delivery:
    """A stored payload, opened, as the stream sends it: with the attempt it is."""
    delivery = pb.Delivery.FromString(payload)
    delivery.attempt = attempt
    return delivery
