"""The feedback service's domain values: what its use cases take and give, free of the wire
format. The enumerations the service keeps (its tables store them as numbers) mirror the wire's:
the same names without the prefix, the same numbers, so the boundary converts by number
(tests/test_feedback_values.py holds them equal). How current a house's advice is, which the
service only reads from the registry, is a token, as the registry has it."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import NamedTuple

from baken.clock import AMSTERDAM
from baken.holidays import on_working_day
from baken.houses import House


class DecisionCode(enum.IntEnum):
    """baken.feedback.v1.DecisionCode."""

    UNSPECIFIED = 0
    TECHNISCH_SEPOT_01 = 1
    SEPOT = 2
    VOORWAARDELIJK_SEPOT = 3
    HALT = 4
    REPRIMANDE = 5
    STRAFBESCHIKKING = 6
    TOM_ZITTING = 7
    DAGVAARDING = 8
    VOORGELEIDING = 9
    TRANSACTIE = 10
    OVERDRACHT_BACKOFFICE = 11


class DecisionStage(enum.IntEnum):
    """baken.feedback.v1.DecisionStage."""

    UNSPECIFIED = 0
    ROUTING = 1
    FINAL = 2


# The codes that only route the case (which track it takes, often within hours: voorgeleiding
# when the inverzekeringstelling ends, overdracht aan de OM-backoffice); with stage ROUTING they
# may be recorded while an advice request's term runs. Every other code decides the case.
ROUTING_CODES = frozenset({DecisionCode.VOORGELEIDING, DecisionCode.OVERDRACHT_BACKOFFICE})


class AdviceFollowed(enum.IntEnum):
    """baken.feedback.v1.AdviceFollowed."""

    UNSPECIFIED = 0
    FOLLOWED = 1
    NOT_FOLLOWED = 2
    NO_ADVICE = 3


class TriageCriterion(enum.IntEnum):
    """baken.feedback.v1.TriageCriterion."""

    UNSPECIFIED = 0
    YOUTH = 1
    DOMESTIC_VIOLENCE = 2
    HIGH_IMPACT_CRIME = 3
    REPEAT_OFFENDER = 4


class DeliveryKind(enum.IntEnum):
    """baken.feedback.v1.DeliveryKind."""

    UNSPECIFIED = 0
    DECISION = 1
    SIGNAL = 2
    REFERRAL = 3
    ADVICE_REQUEST = 4
    RETRACTION = 5
    ADVICE_REQUEST_CANCELLED = 6
    MATCH = 7


class AdviceRequestState(enum.IntEnum):
    """baken.feedback.v1.AdviceRequestState."""

    UNSPECIFIED = 0
    OPEN = 1
    ANSWERED = 2
    OVERDUE = 3
    CANCELLED = 4


class SubjectAge(enum.IntEnum):
    """baken.registry.v1.SubjectAge: the age ZSM claims for the person."""

    UNSPECIFIED = 0
    MINOR = 1
    ADULT = 2


class Freshness(enum.Enum):
    """How current a house's advice is, as the registry's lookup tells it."""

    CURRENT = "current"
    AGED = "aged"
    EXPIRED = "expired"
    NO_ADVICE = "no_advice"


class Pseudonym(NamedTuple):
    kind: int  # baken.type.v1.PseudonymKind, passed on to the registry as it came
    key_id: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Triage:
    checked: bool
    matched: tuple[TriageCriterion, ...]


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
    code: DecisionCode
    sepot_code: str
    stage: DecisionStage
    subject_age: SubjectAge
    # One line per house whose advice the desk could see (checked against the registry's
    # markings in services/feedback/decisions.py).
    house_advice: tuple[HouseAdvice, ...]
    probation_report_requested: bool
    triage: Triage
    complex_problems_suspected: bool
    residence_municipality: str
    referral: SealedEnvelope | None
    on_behalf_of: str
    request_key: str

    @property
    def routes_only(self) -> bool:
        """A routing decision (stage ROUTING, a routing code): it does not wait for advice
        asked; a final decision does, while the term runs."""
        return self.stage == DecisionStage.ROUTING and self.code in ROUTING_CODES


@dataclass(frozen=True, slots=True)
class WorkingDayDeadline:
    """A time of day (Europe/Amsterdam) on the n-th working day after the request."""

    time_of_day: dt.time
    working_days: int


@dataclass(frozen=True, slots=True)
class HouseAdvice:
    """Whether ZSM followed one house's advice, and why not. `house_id` "" is the deprecated
    single line (RecordDecisionRequest.advice_followed): the one house whose advice the desk
    could see."""

    house_id: str
    followed: AdviceFollowed
    deviation_reason: str = ""

    @property
    def deviated(self) -> bool:
        return self.followed == AdviceFollowed.NOT_FOLLOWED


@dataclass(frozen=True, slots=True)
class AdviceQuestion:
    """ZSM asks a house that marked the person for advice, to be given within `term` or by
    `deadline` (exactly one of them is set)."""

    case_reference: str
    subject: tuple[Pseudonym, ...]
    house_id: str
    term: dt.timedelta | None
    question: str
    on_behalf_of: str
    subject_age: SubjectAge
    deadline: WorkingDayDeadline | None = None
    # An enrichment (verrijking): no house marks the person, and `house_id` is the house that
    # covers his residence municipality; `person` is sealed to that house, and `enrichment`
    # names the triage criteria for which it is asked. Empty for a request to a marking house.
    person: SealedEnvelope | None = None
    enrichment: tuple[TriageCriterion, ...] = ()

    @property
    def enriches(self) -> bool:
        return self.person is not None

    def due(self, now: dt.datetime) -> dt.datetime:
        """When the advice is due, asked at `now` (UTC)."""
        if self.deadline is not None:
            by = self.deadline
            local = on_working_day(now, by.time_of_day, by.working_days, AMSTERDAM)
            return local.astimezone(dt.UTC)
        assert self.term is not None
        return now + self.term


@dataclass(frozen=True, slots=True)
class SignalIn:
    """A registry signal as the follower took it over."""

    sequence: int
    house_id: str
    source_record_id: str
    case_reference: str
    zsm_location: str
    lookup_time: dt.datetime
    # A matchingsmelding (baken.registry.v1.SIGNAL_KIND_MATCH): another house marks the person,
    # for this target group (its token, e.g. "veelpleger"); None for a flowed-in signal.
    other_house_id: str | None = None
    other_target_group: str = ""


@dataclass(frozen=True, slots=True)
class MatchFeedback:
    """What a MATCH item tells a house of the other house that marks its person: the house
    (with its contact point, from the reference data) and why it marks him. Nothing else."""

    house: House
    target_group: str  # a token, e.g. "veelpleger"; "" when the registry did not say


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
    cancelled_time: dt.datetime | None = None
    # The house's record of the person, to which its cancellation goes too.
    source_record_id: str = ""

    @property
    def name(self) -> str:
        return advice_request_name(self.id)

    def state(self, now: dt.datetime) -> AdviceRequestState:
        if self.answered_time is not None:
            return AdviceRequestState.ANSWERED
        if self.cancelled_time is not None:
            return AdviceRequestState.CANCELLED
        if now >= self.due_time:
            return AdviceRequestState.OVERDUE
        return AdviceRequestState.OPEN


@dataclass(frozen=True, slots=True)
class DecisionFeedback:
    """What an item tells a house of a decision. A field withheld from the house keeps its
    default (services/feedback/routing.py clears it); an absent triage was not told."""

    code: DecisionCode = DecisionCode.UNSPECIFIED
    sepot_code: str = ""
    stage: DecisionStage = DecisionStage.UNSPECIFIED
    subject_age: SubjectAge = SubjectAge.UNSPECIFIED
    advice_followed: AdviceFollowed = AdviceFollowed.UNSPECIFIED
    deviation_reason: str = ""
    probation_report_requested: bool = False
    triage: Triage | None = None
    complex_problems_suspected: bool = False
    # How many other houses were told of the decision (never which).
    other_houses: int = 0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One item for one house, as the house receives it (without the attempt, which the
    stream counts); services/feedback/wire.py makes it the wire's message."""

    house_id: str
    kind: DeliveryKind
    key: str = ""
    case_reference: str = ""
    occurred_time: dt.datetime | None = None
    source_record_id: str = ""
    zsm_location: str = ""
    decision: DecisionFeedback | None = None
    referral: SealedEnvelope | None = None
    due_time: dt.datetime | None = None
    question: str = ""
    # "adviceRequests/{id}".
    advice_request: str = ""
    match: MatchFeedback | None = None
    # ADVICE_REQUEST about a person the house does not know (with `referral`, the person): the
    # triage criteria for which ZSM asks.
    enrichment: tuple[TriageCriterion, ...] = ()
    # The feedback fields the house's covenant withholds.
    withheld: tuple[str, ...] = ()
    # RETRACTION: the key of the item it withdraws.
    retracts: str = ""


@dataclass(frozen=True, slots=True)
class HeldDecision:
    """A decision of the desk's case system that the inflow adapter could not take over
    (RecordDecision wanted what only the desk can say): held on the inflow entry for the
    desk's screen, which records it under `request_key`."""

    code: DecisionCode
    sepot_code: str
    stage: DecisionStage
    request_key: str
    problem: str
    probation_report_requested: bool


@dataclass(frozen=True, slots=True)
class InflowRecord:
    """A suspect in a ZSM desk's inflow, checked (services/feedback/validation.py)."""

    case_reference: str
    subject: tuple[Pseudonym, ...]
    arrest_time: dt.datetime
    subject_age: SubjectAge
    offence_category: str
    # When the registry answered his look-up at intake-en-selectie; None while unchecked.
    checked_time: dt.datetime | None
    known: bool
    held_decision: HeldDecision | None
    on_behalf_of: str


@dataclass(frozen=True, slots=True)
class InflowView:
    """An inflow entry as it is stored; `subject` is empty once erased."""

    id: str
    region: str
    case_reference: str
    subject: tuple[Pseudonym, ...]
    arrest_time: dt.datetime
    minor: bool
    offence_category: str
    checked_time: dt.datetime | None
    known: bool
    held_decision: HeldDecision | None
    decision_id: str | None
    decision_stage: DecisionStage | None
    recorded_by: str
    recorded_time: dt.datetime
