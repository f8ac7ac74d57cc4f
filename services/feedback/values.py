"""The feedback service's domain values: what its use cases take and give, free of the wire
format. Enumerations keep the numbers the protos give them (typed as the protos' enum values)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.registry.v1 import registry_service_pb2
from baken.type.v1 import pseudonym_pb2


class Pseudonym(NamedTuple):
    kind: pseudonym_pb2.PseudonymKind.ValueType
    key_id: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Triage:
    checked: bool
    matched: tuple[pb.TriageCriterion.ValueType, ...]


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    """The person's data sealed to a house's key; the service never opens it."""

    house: str
    key_id: str
    ephemeral_public_key: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Decision:
    """A ZSM decision, checked (services/feedback/validation.py)."""

    case_reference: str
    subject: tuple[Pseudonym, ...]
    code: pb.DecisionCode.ValueType
    sepot_code: str
    stage: pb.DecisionStage.ValueType
    subject_age: registry_service_pb2.SubjectAge.ValueType
    advice_followed: pb.AdviceFollowed.ValueType
    deviation_reason: str
    probation_report_requested: bool
    triage: Triage
    complex_problems_suspected: bool
    residence_municipality: str
    referral: SealedEnvelope | None
    on_behalf_of: str
    request_key: str


@dataclass(frozen=True, slots=True)
class AdviceQuestion:
    """ZSM asks a house that marked the person for advice, to be given within `term`."""

    case_reference: str
    subject: tuple[Pseudonym, ...]
    house_id: str
    term: dt.timedelta
    question: str
    on_behalf_of: str
    subject_age: registry_service_pb2.SubjectAge.ValueType


@dataclass(frozen=True, slots=True)
class SignalIn:
    """A registry signal as the follower took it over."""

    sequence: int
    house_id: str
    source_record_id: str
    case_reference: str
    zsm_location: str
    lookup_time: dt.datetime


ADVICE_REQUESTS = "adviceRequests/"


def advice_request_name(request_id: str) -> str:
    """An advice request's resource name on the wire: "adviceRequests/{id}"."""
    return ADVICE_REQUESTS + request_id


@dataclass(frozen=True, slots=True)
class AdviceRequestView:
    id: str
    case_reference: str
    house_id: str
    delivery_key: str
    requested_by: str
    requested_time: dt.datetime
    due_time: dt.datetime
    answered_time: dt.datetime | None

    @property
    def name(self) -> str:
        return advice_request_name(self.id)

    def state(self, now: dt.datetime) -> int:
        if self.answered_time is not None:
            return pb.ADVICE_REQUEST_STATE_ANSWERED
        if now >= self.due_time:
            return pb.ADVICE_REQUEST_STATE_OVERDUE
        return pb.ADVICE_REQUEST_STATE_OPEN
