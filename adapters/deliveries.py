"""A feedback item from the wire (feedback.v1 Delivery) as the adapters write it into a source:
a `Delivery` (adapters/records.py) with words instead of enum numbers, and the person of an
aanmelding opened with the house's key."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from google.protobuf import timestamp_pb2

from adapters.records import DELIVERY_KINDS, Delivery, OtherHouse, Person
from baken import enums, sealed
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.registry.v1 import marker_pb2, registry_service_pb2

# Delivery.withheld names (the covenant's feedback fields; services/feedback/routing.py).
WITHHELD_DECISION = "feedback.decision"
WITHHELD_DEVIATION = "feedback.deviation_reason"
WITHHELD_PROBATION = "feedback.probation_report"
WITHHELD_TRIAGE = "feedback.triage"

# DeliveryKind number -> the kind as adapters/records.py spells it ("advice-request").
KINDS: Mapping[int, str] = enums.tokens(pb.DeliveryKind, "DELIVERY_KIND_", "-")
# TargetGroup number -> token ("veelpleger", "huiselijk_geweld"), as adapters/records.py has it.
_TARGET_GROUPS = enums.tokens(marker_pb2.TargetGroup, "TARGET_GROUP_")
_STAGES: Mapping[int, bool] = {pb.DECISION_STAGE_FINAL: True, pb.DECISION_STAGE_ROUTING: False}
_FOLLOWED: Mapping[int, bool] = {
    pb.ADVICE_FOLLOWED_FOLLOWED: True,
    pb.ADVICE_FOLLOWED_NOT_FOLLOWED: False,
}
_AGES: Mapping[int, bool] = {
    registry_service_pb2.SUBJECT_AGE_MINOR: True,
    registry_service_pb2.SUBJECT_AGE_ADULT: False,
}
# The triage criteria as the houses name them, for the reason of an aanmelding.
TRIAGE_CRITERIA: Mapping[int, str] = {
    pb.TRIAGE_CRITERION_YOUTH: "jeugd",
    pb.TRIAGE_CRITERION_DOMESTIC_VIOLENCE: "huiselijk geweld",
    pb.TRIAGE_CRITERION_HIGH_IMPACT_CRIME: "high impact crime",
    pb.TRIAGE_CRITERION_REPEAT_OFFENDER: "veelpleger",
}
REFERRAL_REASON = "complexe problematiek vermoed"
# Why ZSM asks a house about a person it does not know (verrijking), before the criteria.
ENRICHMENT_REASON = "verrijkingsverzoek"
_SEPOT_CODE = re.compile(r"[0-9]{2}")


def decision_code(code: int, sepot_code: str) -> str | None:
    """The decision as the write-back names it: "dagvaarding", "voorwaardelijk-sepot",
    "sepot-02", ...; None for none. Raises ValueError naming the field."""
    if code == pb.DECISION_CODE_UNSPECIFIED:
        return None
    if code == pb.DECISION_CODE_SEPOT:
        if not _SEPOT_CODE.fullmatch(sepot_code):
            raise ValueError("decision.sepot_code: a sepot needs its two-digit code")
        return f"sepot-{sepot_code}"
    try:
        return enums.token(pb.DecisionCode, code, "DECISION_CODE_", "-")
    except ValueError:
        raise ValueError("decision.code: not a code this adapter knows") from None


def to_delivery(message: pb.Delivery, house_key: sealed.HouseKey | None = None) -> Delivery:
    """The opened, source-neutral form of a delivery item. A field named in `withheld` (the
    house's covenant does not allow it) or not said is None, never False. A referral's person
    is opened with `house_key`. Raises ValueError naming the field, never a value, for an item
    that cannot be opened or converted; the source's own checks come when it is written."""
    house = message.house
    if not house.startswith("houses/") or len(house) == len("houses/"):
        raise ValueError("house: not a house name (houses/{id})")
    kind = KINDS.get(message.kind)
    if kind is None:
        raise ValueError(f"kind: not one of {', '.join(DELIVERY_KINDS)}")
    if not message.HasField("occurred_time"):
        raise ValueError("occurred_time: required")
    if kind == "retraction":
        # Only what to withdraw, whatever else the message holds.
        return Delivery(
            key=message.key,
            house_id=house.removeprefix("houses/"),
            kind=kind,
            case_reference="",
            occurred=_moment(message.occurred_time),
            retracts=message.retracts,
        )
    withheld = set(message.withheld)
    d = message.decision
    decided = message.HasField("decision") and WITHHELD_DECISION not in withheld
    # A sepot (02 and up) tells only THAT the person flowed in and was dismissed. (A decision
    # whose code is withheld is never a sepot: it would not have been routed.)
    detailed = message.HasField("decision") and d.code != pb.DECISION_CODE_SEPOT
    deviation = detailed and WITHHELD_DEVIATION not in withheld
    is_decision = kind == "decision"
    # An advice request about a person the house does not know carries him sealed, as a
    # referral does (an enrichment request).
    enrichment = kind == "advice-request" and message.HasField("referral")
    carries_person = kind == "referral" or enrichment
    return Delivery(
        key=message.key,
        house_id=house.removeprefix("houses/"),
        kind=kind,
        case_reference=message.case_reference,
        occurred=_moment(message.occurred_time),
        source_record_id=message.source_record_id or None,
        zsm_location=message.zsm_location or None,
        decision=decision_code(d.code, d.sepot_code) if is_decision and decided else None,
        final=_STAGES.get(d.stage) if is_decision and decided else None,
        advice_followed=_FOLLOWED.get(d.advice_followed) if is_decision and deviation else None,
        deviation_reason=(d.deviation_reason or None) if is_decision and deviation else None,
        other_houses=d.other_houses if is_decision and decided and detailed else None,
        probation_report_requested=(
            d.probation_report_requested
            if is_decision and detailed and WITHHELD_PROBATION not in withheld
            else None
        ),
        minor=_AGES.get(d.subject_age) if decided else None,
        person=_open_person(message, house_key) if carries_person else None,
        referral_reason=(
            referral_reason(message)
            if kind == "referral"
            else enrichment_reason(message)
            if enrichment
            else None
        ),
        due=(
            _moment(message.due_time)
            if kind == "advice-request" and message.HasField("due_time")
            else None
        ),
        question=(message.question.strip() or None) if kind == "advice-request" else None,
        advice_request=(
            (message.advice_request or None)
            if kind in ("advice-request", "advice-request-cancelled")
            else None
        ),
        other_house=_other_house(message) if kind == "match" else None,
    )


def _other_house(message: pb.Delivery) -> OtherHouse:
    """A match's other house: its id, name, contact point and target group; nothing else."""
    if not message.HasField("match"):
        raise ValueError("match: the other house is missing")
    match = message.match
    if not match.house.startswith("houses/") or len(match.house) == len("houses/"):
        raise ValueError("match.house: not a house name (houses/{id})")
    contact = match.contact
    return OtherHouse(
        house_id=match.house.removeprefix("houses/"),
        display_name=match.house_display_name,
        target_group=_TARGET_GROUPS.get(match.target_group),
        contact_role=contact.role or None,
        email=contact.email or None,
        phone=contact.phone or None,
        after_hours_phone=contact.after_hours_phone or None,
    )


def referral_reason(message: pb.Delivery) -> str:
    """Why ZSM refers the person: suspected complex problems, and the triage criteria that
    matched when the house may know them."""
    criteria: list[str] = []
    if WITHHELD_TRIAGE not in message.withheld and message.HasField("decision"):
        matched = message.decision.triage.matched
        criteria = [TRIAGE_CRITERIA[c] for c in matched if c in TRIAGE_CRITERIA]
    if criteria:
        return f"{REFERRAL_REASON}; triagecriteria: {', '.join(criteria)}"
    return REFERRAL_REASON


def enrichment_reason(message: pb.Delivery) -> str:
    """Why ZSM asks the house about a person it does not know: the criteria it asks for."""
    criteria = [TRIAGE_CRITERIA[c] for c in message.enrichment_criteria if c in TRIAGE_CRITERIA]
    if not criteria:
        raise ValueError("enrichment_criteria: an enrichment request names its criteria")
    return f"{ENRICHMENT_REASON}; triagecriteria: {', '.join(criteria)}"


def _open_person(message: pb.Delivery, house_key: sealed.HouseKey | None) -> Person:
    if not message.HasField("referral"):
        raise ValueError("referral: the sealed person is missing")
    if house_key is None:
        raise ValueError("referral: this adapter has no key of the house to open it")
    try:
        person = sealed.open_person(
            house_key, message.referral, case_reference=message.case_reference
        )
    except sealed.SealError:
        raise ValueError(
            "referral: does not open with the house's key (another house, key or case, or altered)"
        ) from None
    return Person(person.bsn or None, person.surname or None, person.birth_date)


def _moment(stamp: timestamp_pb2.Timestamp) -> dt.datetime:
    return stamp.ToDatetime(tzinfo=dt.UTC)
