"""Who hears what: a ZSM decision, hit signal or advice request becomes delivery items, one per
receiving house, each carrying only the feedback fields that house's covenant allows for
terugkoppeling. The routing rules of docs/PROCESS.md §3 step 3; no database, no network."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from baken.clock import AMSTERDAM
from baken.errors import PermissionDenied
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.houses import House, house_name
from baken.purposes import TERUGKOPPELING
from baken.registry.v1 import marker_pb2
from services.common.access import AccessPolicy, Withhold
from services.feedback.values import Decision, SealedEnvelope, advice_request_name

FLOWED_IN = "feedback.flowed_in"
DECISION = "feedback.decision"
DEVIATION = "feedback.deviation_reason"
PROBATION = "feedback.probation_report"
TRIAGE = "feedback.triage"
REFERRAL = "feedback.referral"
ADVICE_REQUEST = "feedback.advice_request"

# What each kind of item carries, and (first) what it cannot go without.
_DECISION_FIELDS = (FLOWED_IN, DECISION, DEVIATION, PROBATION, TRIAGE)
# Other sepot codes: only THAT the person flowed in and was dismissed.
_SEPOT_FIELDS = (FLOWED_IN, DECISION)
_SIGNAL_FIELDS = (FLOWED_IN,)
_REFERRAL_FIELDS = (FLOWED_IN, REFERRAL, DECISION, TRIAGE)
_ADVICE_REQUEST_FIELDS = (FLOWED_IN, ADVICE_REQUEST)
_REQUIRED: dict[int, tuple[str, ...]] = {
    pb.DELIVERY_KIND_DECISION: (FLOWED_IN, DECISION),
    pb.DELIVERY_KIND_SIGNAL: (FLOWED_IN,),
    pb.DELIVERY_KIND_REFERRAL: (FLOWED_IN, REFERRAL),
    pb.DELIVERY_KIND_ADVICE_REQUEST: (FLOWED_IN, ADVICE_REQUEST),
}
_SHOWS_ADVICE = (marker_pb2.ADVICE_FRESHNESS_CURRENT, marker_pb2.ADVICE_FRESHNESS_AGED)


@dataclass(frozen=True, slots=True)
class Marking:
    """A house that marked the person: its record of him and how current its advice is."""

    house_id: str
    source_record_id: str
    freshness: int  # marker_pb2.AdviceFreshness

    @property
    def advice_counts(self) -> bool:
        """A CURRENT or AGED advice: ZSM must say whether it followed it."""
        return self.freshness in _SHOWS_ADVICE


@dataclass(frozen=True, slots=True)
class Item:
    """One delivery item before it is stored: the house, the order key, the message."""

    key: str
    house_id: str
    person_key: str
    delivery: pb.Delivery
    withheld: tuple[str, ...]
    # Field -> "{covenant}/{grant}" that allowed it, for the access log.
    sent: Mapping[str, str]

    @property
    def kind(self) -> int:
        return self.delivery.kind


@dataclass(frozen=True, slots=True)
class NotRouted:
    house_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Routing:
    items: tuple[Item, ...]
    not_routed: tuple[NotRouted, ...]


def _day(moment: dt.datetime) -> dt.date:
    """The calendar date in the Netherlands: the day a covenant is in force or not."""
    return moment.astimezone(AMSTERDAM).date()


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(dt.UTC))
    return stamp


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
        self, house_id: str, kind: int, fields: Sequence[str], today: dt.date, delivery: pb.Delivery
    ) -> Item | NotRouted:
        """`delivery` for `house_id` with the fields its covenant withholds cleared, or why
        the house gets nothing. Takes the key and person key from the caller afterwards."""
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
            elif name in _REQUIRED[kind]:
                assert decision.reason is not None
                return NotRouted(house_id, decision.reason.value)
            else:
                withheld.append(name)
        shown = pb.Delivery()
        shown.CopyFrom(delivery)
        for name in withheld:
            _clear(shown, name)
        del shown.withheld[:]
        shown.withheld.extend(withheld)
        return Item("", house_id, "", shown, tuple(withheld), sent)


def _clear(delivery: pb.Delivery, name: str) -> None:
    d = delivery.decision
    if name == DECISION:
        for field in ("code", "sepot_code", "stage", "subject_age"):
            d.ClearField(field)
    elif name == DEVIATION:
        d.ClearField("advice_followed")
        d.ClearField("deviation_reason")
    elif name == PROBATION:
        d.ClearField("probation_report_requested")
    elif name == TRIAGE:
        d.ClearField("triage")
        d.ClearField("complex_problems_suspected")
    elif name == REFERRAL:
        delivery.ClearField("referral")
    elif name == ADVICE_REQUEST:
        delivery.ClearField("due_time")
        delivery.ClearField("question")
        delivery.ClearField("advice_request")
    if not delivery.decision.ListFields():
        delivery.ClearField("decision")


def _keyed(item: Item | NotRouted, key: str, person_key: str) -> Item | NotRouted:
    if isinstance(item, NotRouted):
        return item
    item.delivery.key = key
    return Item(key, item.house_id, person_key, item.delivery, item.withheld, item.sent)


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
    if decision.code == pb.DECISION_CODE_TECHNISCH_SEPOT_01:
        return Routing((), ())
    base = pb.Delivery(
        house="",
        case_reference=decision.case_reference,
        occurred_time=timestamp(now),
        zsm_location=zsm_location,
    )
    sepot = decision.code == pb.DECISION_CODE_SEPOT
    if sepot:
        base.decision.CopyFrom(
            pb.DecisionFeedback(code=decision.code, sepot_code=decision.sepot_code)
        )
    else:
        base.decision.CopyFrom(
            pb.DecisionFeedback(
                code=decision.code,
                stage=decision.stage,
                subject_age=decision.subject_age,
                advice_followed=decision.advice_followed,
                deviation_reason=decision.deviation_reason,
                probation_report_requested=decision.probation_report_requested,
                triage=pb.TriageCheck(
                    checked=decision.triage.checked, matched=decision.triage.matched
                ),
                complex_problems_suspected=decision.complex_problems_suspected,
            )
        )
    today = _day(now)
    results: list[Item | NotRouted] = []
    if markings:
        fields = _SEPOT_FIELDS if sepot else _DECISION_FIELDS
        for n, marking in enumerate(markings):
            delivery = pb.Delivery()
            delivery.CopyFrom(base)
            delivery.house = house_name(marking.house_id)
            delivery.kind = pb.DELIVERY_KIND_DECISION
            delivery.source_record_id = marking.source_record_id
            addressed = recipients.address(
                marking.house_id, pb.DELIVERY_KIND_DECISION, fields, today, delivery
            )
            key = f"dec-{decision_id}-{n:02d}"
            results.append(_keyed(addressed, key, record_person(marking.source_record_id)))
    elif decision.complex_problems_suspected and referral_house is not None:
        delivery = pb.Delivery()
        delivery.CopyFrom(base)
        delivery.house = house_name(referral_house)
        delivery.kind = pb.DELIVERY_KIND_REFERRAL
        if decision.referral is not None:
            delivery.referral.CopyFrom(_envelope(decision.referral))
        addressed = recipients.address(
            referral_house, pb.DELIVERY_KIND_REFERRAL, _REFERRAL_FIELDS, today, delivery
        )
        person = f"case:{decision.case_reference}"
        results.append(_keyed(addressed, f"ref-{decision_id}", person))
    return _split(results)


def _envelope(envelope: SealedEnvelope) -> pb.SealedEnvelope:
    return pb.SealedEnvelope(
        house=envelope.house,
        key_id=envelope.key_id,
        ephemeral_public_key=envelope.ephemeral_public_key,
        ciphertext=envelope.ciphertext,
    )


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
    delivery = pb.Delivery(
        house=house_name(house_id),
        kind=pb.DELIVERY_KIND_SIGNAL,
        case_reference=case_reference,
        occurred_time=timestamp(lookup_time),
        source_record_id=source_record_id,
        zsm_location=zsm_location,
    )
    addressed = recipients.address(
        house_id, pb.DELIVERY_KIND_SIGNAL, _SIGNAL_FIELDS, _day(lookup_time), delivery
    )
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
    delivery = pb.Delivery(
        house=house_name(marking.house_id),
        kind=pb.DELIVERY_KIND_ADVICE_REQUEST,
        case_reference=case_reference,
        occurred_time=timestamp(now),
        source_record_id=marking.source_record_id,
        zsm_location=zsm_location,
        due_time=timestamp(due),
        question=question,
        advice_request=advice_request_name(request_id),
    )
    addressed = recipients.address(
        marking.house_id,
        pb.DELIVERY_KIND_ADVICE_REQUEST,
        _ADVICE_REQUEST_FIELDS,
        _day(now),
        delivery,
    )
    return _keyed(addressed, f"adv-{request_id}", record_person(marking.source_record_id))
