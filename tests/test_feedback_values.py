"""The feedback service's domain enumerations mirror the wire's: the boundary converts them by
number, and its tables keep those numbers."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from baken import enums
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.registry.v1 import marker_pb2, registry_service_pb2
from services.feedback import values


@pytest.mark.parametrize(
    ("domain", "wire", "prefix"),
    [
        (values.DecisionCode, pb.DecisionCode, "DECISION_CODE_"),
        (values.DecisionStage, pb.DecisionStage, "DECISION_STAGE_"),
        (values.AdviceFollowed, pb.AdviceFollowed, "ADVICE_FOLLOWED_"),
        (values.TriageCriterion, pb.TriageCriterion, "TRIAGE_CRITERION_"),
        (values.DeliveryKind, pb.DeliveryKind, "DELIVERY_KIND_"),
        (values.AdviceRequestState, pb.AdviceRequestState, "ADVICE_REQUEST_STATE_"),
        (values.SubjectAge, registry_service_pb2.SubjectAge, "SUBJECT_AGE_"),
    ],
)
def test_a_domain_enum_has_the_wire_names_and_numbers(
    domain: type[enum.IntEnum], wire: Any, prefix: str
) -> None:
    assert {m.name: m.value for m in domain} == {
        v.name.removeprefix(prefix): v.number for v in wire.DESCRIPTOR.values
    }


def test_freshness_has_a_token_for_every_wire_value() -> None:
    tokens = enums.tokens(marker_pb2.AdviceFreshness, "ADVICE_FRESHNESS_")
    assert {f.value for f in values.Freshness} == set(tokens.values())
