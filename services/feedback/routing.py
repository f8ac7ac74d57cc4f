"""Who hears what: a ZSM decision, hit signal or advice request becomes delivery items, one per
receiving house, each carrying only the feedback fields that house's covenant allows for
terugkoppeling. The routing rules of docs/PROCESS.md §3 step 3; no database, no network."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from baken.clock import AMSTERDAM
from baken.errors import PermissionDenied
from baken.houses import House
from baken.purposes import TERUGKOPPELING
from services.common.access import AccessPolicy, Withhold
from services.feedback.values import (
    AdviceFollowed,
    Decision,
    DecisionCode,
    DecisionFeedback,
    DecisionStage,
    Delivery,
    DeliveryKind,
    Freshness,
    MatchFeedback,
    Pseudonym,
    SealedEnvelope,
    SubjectAge,
    TriageCriterion,
    advice_request_name,
)

FLOWED_IN = "feedback.flowed_in"
DECISION = "feedback.decision"
DEVIATION = "feedback.deviation_reason"
PROBATION = "feedback.probation_report"
TRIAGE = "feedback.triage"
REFERRAL = "feedback.referral"
ADVICE_REQUEST = "feedback.advice_request"
MATCH = "feedback.match"
# An enrichment request: the house is told that a person it does not know is a suspect, and
# who he is. Granted per triage criterion (docs/PROCESS.md §5): the covenants name the target
# groups for which ZSM may ask a house about a person it does not know.
ENRICHMENT_REQUEST = {
    TriageCriterion.YOUTH: "feedback.enrichment_request.youth",
    TriageCriterion.DOMESTIC_VIOLENCE: "feedback.enrichment_request.domestic_violence",
    TriageCriterion.HIGH_IMPACT_CRIME: "feedback.enrichment_request.high_impact_crime",
    TriageCriterion.REPEAT_OFFENDER: "feedback.enrichment_request.repeat_offender",
}

# What each kind of item carries, and (first) what it cannot go without.
_DECISION_FIELDS = (FLOWED_IN, DECISION, DEVIATION, PROBATION, TRIAGE)
# Other sepot codes: only THAT the person flowed in and was dismissed.
_SEPOT_FIELDS = (FLOWED_IN, DECISION)
_SIGNAL_FIELDS = (FLOWED_IN,)
_REFERRAL_FIELDS = (FLOWED_IN, REFERRAL, DECISION, TRIAGE)
_ADVICE_REQUEST_FIELDS = (FLOWED_IN, ADVICE_REQUEST)
# A matchingsmelding: nothing flowed in; only which other house marks the person.
_MATCH_FIELDS = (MATCH,)
_REQUIRED: dict[DeliveryKind, tuple[str, ...]] = {
    DeliveryKind.DECISION: (FLOWED_IN, DECISION),
    DeliveryKind.SIGNAL: (FLOWED_IN,),
    DeliveryKind.REFERRAL: (FLOWED_IN, REFERRAL),
    DeliveryKind.ADVICE_REQUEST: (FLOWED_IN, ADVICE_REQUEST),
    DeliveryKind.ADVICE_REQUEST_CANCELLED: (FLOWED_IN, ADVICE_REQUEST),
    DeliveryKind.MATCH: (MATCH,),
}
_SHOWS_ADVICE = (Freshness.CURRENT, Freshness.AGED)


@dataclass(frozen=True, slots=True)
class Asked:
    """A person the registry is asked about, in his case."""

    subject: Sequence[Pseudonym]
    case_reference: str
    subject_age: SubjectAge


@dataclass(frozen=True, slots=True)
class Marking:
    """A house that marked the person: its record of him and how current its advice is."""

    house_id: str
    source_record_id: str
    # None: the registry told none the service knows.
    freshness: Freshness | None

    @property
    def advice_counts(self) -> bool:
        """A CURRENT or AGED advice: ZSM must say whether it followed it."""
        return self.freshness in _SHOWS_ADVICE


@dataclass(frozen=True, slots=True)
class Item:
    """One delivery item before it is stored: the house, the order key, what the house gets."""

    key: str
    house_id: str
    person_key: str
    delivery: Delivery
    withheld: tuple[str, ...]
    # Field -> "{covenant}/{grant}" that allowed it, for the access log.
    sent: Mapping[str, str]

    @property
    def kind(self) -> DeliveryKind:
        return self.delivery.kind


@dataclass(frozen=True, slots=True)
class NotRouted:
    house_id: str
    reason: str
    # The feedback field the item could not go without, when that was why.
    field: str = ""


@dataclass(frozen=True, slots=True)
class Routing:
    items: tuple[Item, ...]
    not_routed: tuple[NotRouted, ...]


def _day(moment: dt.datetime) -> dt.date:
    """The calendar date in the Netherlands: the day a covenant is in force or not."""
    return moment.astimezone(AMSTERDAM).date()


def record_person(source_record_id: str) -> str:
    return f"record:{source_record_id}"


def digest_key(prefix: str, *parts: str) -> str:
    """A short idempotency key that the same parts always give (file-name safe)."""
    joined = "\0".join(parts).encode("utf-8", "surrogatepass")
    return f"{prefix}-{hashlib.sha256(joined).hexdigest()[:32]}"


class Recipients:
    """Which feedback fields each house may receive, from the covenants: a house receives
    through its region's process director (vh-process-director) for purpose terugkoppeling."""

    def __init__(self, policy: AccessPolicy, houses: Mapping[str, House]) -> None:
        self._policy = policy
        self._houses = houses

    def address(
        self,
        house_id: str,
        fields: Sequence[str],
        today: dt.date,
        delivery: Delivery,
        *,
        required: Sequence[str] | None = None,
    ) -> Item | NotRouted:
        """`delivery` for `house_id` with the fields its covenant withholds cleared, or why
        the house gets nothing: a field of `required` (by default what its kind cannot go
        without) withheld. Takes the key and person key from the caller afterwards."""
        needed = _REQUIRED[delivery.kind] if required is None else required
        house = self._houses[house_id]
        recipient = self._policy.recipient_of(house)
        if recipient is None:
            return NotRouted(house_id, Withhold.NO_COVENANT.value)
        try:
            scope = self._policy.authorise(recipient, TERUGKOPPELING, today)
        except PermissionDenied as denied:
            return NotRouted(house_id, denied.reason)
        sent: dict[str, str] = {}
        withheld: list[str] = []
        for name in fields:
            decision = scope.decide(house_id, name)
            if decision.disclosed:
                sent[name] = f"{decision.covenant}/{decision.grant}"
            elif name in needed:
                assert decision.reason is not None
                return NotRouted(house_id, decision.reason.value, name)
            else:
                withheld.append(name)
        shown = delivery
        for name in withheld:
            shown = _cleared(shown, name)
        shown = replace(shown, withheld=tuple(withheld))
        return Item("", house_id, "", shown, tuple(withheld), sent)


def _cleared(delivery: Delivery, name: str) -> Delivery:
    """The delivery without the field `name`; a decision left with nothing to tell goes."""
    d = delivery.decision
    if d is not None:
        if name == DECISION:
            d = replace(
                d,
                code=DecisionCode.UNSPECIFIED,
                sepot_code="",
                stage=DecisionStage.UNSPECIFIED,
                subject_age=SubjectAge.UNSPECIFIED,
                other_houses=0,
            )
        elif name == DEVIATION:
            d = replace(d, advice_followed=AdviceFollowed.UNSPECIFIED, deviation_reason="")
        elif name == PROBATION:
            d = replace(d, probation_report_requested=False)
        elif name == TRIAGE:
            d = replace(d, triage=None, complex_problems_suspected=False)
        delivery = replace(delivery, decision=None if d == DecisionFeedback() else d)
    if name == REFERRAL:
        delivery = replace(delivery, referral=None)
    elif name == ADVICE_REQUEST:
        delivery = replace(delivery, due_time=None, question="", advice_request="")
    return delivery


def _keyed(item: Item | NotRouted, key: str, person_key: str) -> Item | NotRouted:
    if isinstance(item, NotRouted):
        return item
    delivery = replace(item.delivery, key=key)
    return Item(key, item.house_id, person_key, delivery, item.withheld, item.sent)


def _split(results: Sequence[Item | NotRouted]) -> Routing:
    return Routing(
        tuple(r for r in results if isinstance(r, Item)),
        tuple(r for r in results if isinstance(r, NotRouted)),
    )


def route_decision(
    decision: Decision,
    markings: Sequence[Marking],
    recipients: Recipients,
    *,
    decision_id: str,
    referral_house: str | None,
    zsm_location: str,
    now: dt.datetime,
) -> Routing:
    """The items a decision produces: one per marking (every house that marked the person,
    nationwide), or an aanmelding to `referral_house` for a not-known person with suspected
    complex problems. Technisch sepot 01 produces nothing."""
    if decision.code == DecisionCode.TECHNISCH_SEPOT_01:
        return Routing((), ())
    sepot = decision.code == DecisionCode.SEPOT
    if sepot:
        told = DecisionFeedback(code=decision.code, sepot_code=decision.sepot_code)
    else:
        told = DecisionFeedback(
            code=decision.code,
            stage=decision.stage,
            subject_age=decision.subject_age,
            probation_report_requested=decision.probation_report_requested,
            triage=decision.triage,
            complex_problems_suspected=decision.complex_problems_suspected,
        )
    today = _day(now)
    results: list[Item | NotRouted] = []
    if markings:
        fields = _SEPOT_FIELDS if sepot else _DECISION_FIELDS
        lines = {line.house_id: line for line in decision.house_advice}
        houses = {m.house_id for m in markings}
        for n, marking in enumerate(markings):
            own = told
            if not sepot:
                # Each house hears its own line only, and how many others were told.
                line = lines.get(marking.house_id)
                own = replace(
                    told,
                    advice_followed=line.followed if line else AdviceFollowed.UNSPECIFIED,
                    deviation_reason=line.deviation_reason if line else "",
                    other_houses=len(houses) - 1,
                )
            delivery = Delivery(
                marking.house_id,
                DeliveryKind.DECISION,
                case_reference=decision.case_reference,
                occurred_time=now,
                source_record_id=marking.source_record_id,
                zsm_location=zsm_location,
                decision=own,
            )
            addressed = recipients.address(marking.house_id, fields, today, delivery)
            key = f"dec-{decision_id}-{n:02d}"
            results.append(_keyed(addressed, key, record_person(marking.source_record_id)))
    elif decision.complex_problems_suspected and referral_house is not None:
        delivery = Delivery(
            referral_house,
            DeliveryKind.REFERRAL,
            case_reference=decision.case_reference,
            occurred_time=now,
            zsm_location=zsm_location,
            decision=told,
            referral=decision.referral,
        )
        addressed = recipients.address(referral_house, _REFERRAL_FIELDS, today, delivery)
        person = f"case:{decision.case_reference}"
        results.append(_keyed(addressed, f"ref-{decision_id}", person))
    return _split(results)


def route_signal(
    recipients: Recipients,
    *,
    house_id: str,
    source_record_id: str,
    case_reference: str,
    zsm_location: str,
    lookup_time: dt.datetime,
    sequence: int,
) -> Item | NotRouted:
    """A lookup hit the house's marker: one signal per house, record and case (a case looked
    up twice signals once; a lookup without a case signals per lookup)."""
    delivery = Delivery(
        house_id,
        DeliveryKind.SIGNAL,
        case_reference=case_reference,
        occurred_time=lookup_time,
        source_record_id=source_record_id,
        zsm_location=zsm_location,
    )
    addressed = recipients.address(house_id, _SIGNAL_FIELDS, _day(lookup_time), delivery)
    occasion = case_reference or f"#{sequence}"
    key = digest_key("sig", house_id, source_record_id, occasion)
    return _keyed(addressed, key, record_person(source_record_id))


def route_advice_request(
    recipients: Recipients,
    *,
    request_id: str,
    marking: Marking,
    case_reference: str,
    question: str,
    zsm_location: str,
    now: dt.datetime,
    due: dt.datetime,
) -> Item | NotRouted:
    delivery = Delivery(
        marking.house_id,
        DeliveryKind.ADVICE_REQUEST,
        case_reference=case_reference,
        occurred_time=now,
        source_record_id=marking.source_record_id,
        zsm_location=zsm_location,
        due_time=due,
        question=question,
        advice_request=advice_request_name(request_id),
    )
    addressed = recipients.address(marking.house_id, _ADVICE_REQUEST_FIELDS, _day(now), delivery)
    return _keyed(addressed, f"adv-{request_id}", record_person(marking.source_record_id))


def route_enrichment_request(
    recipients: Recipients,
    *,
    request_id: str,
    house_id: str,
    person: SealedEnvelope,
    criteria: Sequence[TriageCriterion],
    case_reference: str,
    question: str,
    zsm_location: str,
    now: dt.datetime,
    due: dt.datetime,
) -> Item | NotRouted:
    """An advice request about a person no house marks, to the house of his residence
    municipality (verrijking): the person sealed to that house, as an aanmelding carries him,
    and the criteria for which it is asked; no record of the house. It goes only when the
    house's covenant grants the flowed-in signal, the advice request and an enrichment request
    for every criterion; nothing of it is withheld. Ordered as the case's person, like an
    aanmelding, so a cancellation follows it."""
    delivery = Delivery(
        house_id,
        DeliveryKind.ADVICE_REQUEST,
        case_reference=case_reference,
        occurred_time=now,
        zsm_location=zsm_location,
        referral=person,
        due_time=due,
        question=question,
        advice_request=advice_request_name(request_id),
        enrichment=tuple(criteria),
    )
    fields = (*_ADVICE_REQUEST_FIELDS, *(ENRICHMENT_REQUEST[c] for c in criteria))
    addressed = recipients.address(house_id, fields, _day(now), delivery, required=fields)
    return _keyed(addressed, f"adv-{request_id}", f"case:{case_reference}")


def route_retraction(
    *, house_id: str, person_key: str, retracted_key: str, now: dt.datetime
) -> Item:
    """A technisch sepot 01 withdraws an item the house may already have (`retracted_key`).
    It goes whatever the covenant says today (the house holds the item; only its removal is
    told) and carries no personal data: not the case, the record or the person, only the key
    of what to remove. It keeps the retracted item's person key, so it follows that person's
    earlier items at the house."""
    delivery = Delivery(
        house_id,
        DeliveryKind.RETRACTION,
        key=digest_key("ret", retracted_key),
        occurred_time=now,
        retracts=retracted_key,
    )
    return Item(delivery.key, house_id, person_key, delivery, (), {})


def route_advice_cancellation(
    recipients: Recipients,
    *,
    request_id: str,
    house_id: str,
    source_record_id: str,
    case_reference: str,
    zsm_location: str,
    now: dt.datetime,
) -> Item | NotRouted:
    """ZSM withdrew its advice request: the house hears which one (its name), for the same
    record and case, and nothing more. Ordered after the request itself (the same person)."""
    delivery = Delivery(
        house_id,
        DeliveryKind.ADVICE_REQUEST_CANCELLED,
        case_reference=case_reference,
        occurred_time=now,
        source_record_id=source_record_id,
        zsm_location=zsm_location,
        advice_request=advice_request_name(request_id),
    )
    addressed = recipients.address(house_id, _ADVICE_REQUEST_FIELDS, _day(now), delivery)
    person = record_person(source_record_id) if source_record_id else f"case:{case_reference}"
    return _keyed(addressed, f"cnc-{request_id}", person)


def route_match(
    recipients: Recipients,
    *,
    house_id: str,
    source_record_id: str,
    other: House,
    other_target_group: str,
    matched_time: dt.datetime,
    sequence: int,
) -> Item | NotRouted:
    """Another house marks the house's person (matchingsmelding): one item naming that house,
    its contact point and target group, to the house's own record. The registry signals each
    pair once per house (again only after a marker ended and returned), and the signal's
    sequence is never reused: the key makes a signal taken over twice one item."""
    delivery = Delivery(
        house_id,
        DeliveryKind.MATCH,
        occurred_time=matched_time,
        source_record_id=source_record_id,
        match=MatchFeedback(other, other_target_group),
    )
    addressed = recipients.address(house_id, _MATCH_FIELDS, _day(matched_time), delivery)
    key = digest_key("mat", house_id, source_record_id, other.id, str(sequence))
    return _keyed(addressed, key, record_person(source_record_id))
