"""What the feedback service checks of a request beyond the contract's field rules (presence,
lengths, patterns, ranges and enum sets are declared in the .proto and held before a servicer
runs): rules across fields, the formats of the caller's party, free text; every check names the
offending field (AIP-193). Nothing here touches the database or the registry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from baken.errors import FieldViolation, InvalidArgument
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.houses import house_id_of, house_name
from baken.type.v1 import pseudonym_pb2
from services.common.checks import PRINTABLE, Checker, text_fault
from services.common.covenants import Formats
from services.feedback.values import (
    ADVICE_REQUESTS,
    AdviceFollowed,
    AdviceQuestion,
    Decision,
    DecisionCode,
    DecisionStage,
    HeldDecision,
    HouseAdvice,
    InflowRecord,
    Pseudonym,
    SealedEnvelope,
    SubjectAge,
    Triage,
    TriageCriterion,
    WorkingDayDeadline,
)

DEVIATION_REASON = (10, 2000)
QUESTION = (1, 500)


def _subject(subject: pseudonym_pb2.Subject) -> tuple[Pseudonym, ...]:
    return tuple(Pseudonym(p.kind, p.key_id, p.value) for p in subject.pseudonyms)


def record_decision(
    request: pb.RecordDecisionRequest,
    referral_house: Callable[[str], str | None],
    formats: Formats,
) -> Decision:
    """The decision, once the request as it stands is checked, its case reference and user id
    in the formats of the caller's party; whether the advice had to be weighed needs the
    registry and is checked after the routing lookup."""
    check = Checker()
    check.case_reference("case_reference", request.case_reference, formats, required=True)
    check.subject("subject", request.subject)
    if request.code == pb.DECISION_CODE_SEPOT:
        if not request.sepot_code:
            check.fail("sepot_code", 'required with SEPOT: "02" to "99" (01 is TECHNISCH_SEPOT_01)')
    elif request.sepot_code:
        check.fail("sepot_code", "only with code SEPOT")
    house_advice = _house_advice(check, request)
    if request.triage.matched and not request.triage.checked:
        check.fail("triage.checked", "criteria matched, so they were checked: set checked")
    if fault := text_fault(request.residence_municipality):
        check.fail("residence_municipality", fault)
    if request.complex_problems_suspected:
        municipality = request.residence_municipality.strip()
        if not municipality:
            check.fail(
                "residence_municipality",
                "required with complex_problems_suspected: the aanmelding goes to its house",
            )
        _envelope(check, request.referral, referral_house(municipality) if municipality else None)
    elif request.HasField("referral"):
        check.fail("referral", "only with complex_problems_suspected")
    check.user("on_behalf_of", request.on_behalf_of, formats)
    if request.request_key and not PRINTABLE.match(request.request_key):
        check.fail("request_key", "printable characters only")
    elif fault := text_fault(request.request_key):
        check.fail("request_key", fault)
    check.raise_if_failed()
    envelope = request.referral
    return Decision(
        case_reference=request.case_reference,
        subject=_subject(request.subject),
        code=DecisionCode(request.code),
        sepot_code=request.sepot_code,
        stage=DecisionStage(request.stage),
        subject_age=SubjectAge(request.subject_age),
        house_advice=house_advice,
        probation_report_requested=request.probation_report_requested,
        triage=Triage(
            request.triage.checked, tuple(TriageCriterion(m) for m in request.triage.matched)
        ),
        complex_problems_suspected=request.complex_problems_suspected,
        residence_municipality=request.residence_municipality,
        referral=SealedEnvelope(
            envelope.house, envelope.key_id, envelope.ephemeral_public_key, envelope.ciphertext
        )
        if request.HasField("referral")
        else None,
        on_behalf_of=request.on_behalf_of,
        request_key=request.request_key,
    )


def _house_advice(check: Checker, request: pb.RecordDecisionRequest) -> tuple[HouseAdvice, ...]:
    """The per-house lines, or the deprecated single line as a line of house "" (the one
    house whose advice the desk could see; decisions.py finds it)."""
    lines: list[HouseAdvice] = []
    seen: set[str] = set()
    for i, line in enumerate(request.house_advice):
        at = f"house_advice[{i}]"
        house_id = house_id_of(line.house)
        if house_id in seen:
            check.fail(f"{at}.house", "a second line for this house")
        seen.add(house_id)
        followed = AdviceFollowed(line.advice_followed)
        _deviation(check, at + ".", followed, line.deviation_reason)
        lines.append(HouseAdvice(house_id, followed, line.deviation_reason.strip()))
    legacy = AdviceFollowed(request.advice_followed)
    if lines and (legacy != AdviceFollowed.UNSPECIFIED or request.deviation_reason):
        check.fail("advice_followed", "deprecated: give house_advice only")
    elif legacy in (AdviceFollowed.FOLLOWED, AdviceFollowed.NOT_FOLLOWED):
        _deviation(check, "", legacy, request.deviation_reason)
        lines.append(HouseAdvice("", legacy, request.deviation_reason.strip()))
    elif request.deviation_reason:
        check.fail("deviation_reason", "only when advice_followed is NOT_FOLLOWED")
    return tuple(lines)


def _deviation(check: Checker, prefix: str, followed: AdviceFollowed, reason: str) -> None:
    low, high = DEVIATION_REASON
    reason = reason.strip()
    if followed == AdviceFollowed.NOT_FOLLOWED:
        if not low <= len(reason) <= high:
            check.fail(
                f"{prefix}deviation_reason",
                f"required when the advice was not followed: the substantive reason, "
                f"{low} to {high} characters",
            )
        elif fault := text_fault(reason, lines=True):
            check.fail(f"{prefix}deviation_reason", fault)
    elif reason:
        check.fail(f"{prefix}deviation_reason", "only when the advice was NOT_FOLLOWED")


def _envelope(check: Checker, envelope: pb.SealedEnvelope, covering: str | None) -> None:
    if not envelope.ciphertext:
        check.fail(
            "referral",
            "required with complex_problems_suspected: the person's data sealed to the house "
            "of the residence municipality",
        )
        return
    if covering is not None and envelope.house != house_name(covering):
        check.fail(
            "referral.house",
            f"the residence municipality is covered by houses/{covering}: seal to its key",
        )


def request_advice(
    request: pb.RequestAdviceRequest,
    covering_house: Callable[[str], str | None],
    formats: Formats,
) -> AdviceQuestion:
    """The question, once checked; the case reference and user id in the formats of the
    caller's party. For an enrichment (residence_municipality instead of house) the house is
    the one that covers the municipality in the reference data (`covering_house`)."""
    check = Checker()
    check.case_reference("case_reference", request.case_reference, formats, required=True)
    check.subject("subject", request.subject)
    low, high = QUESTION
    if not low <= len(request.question.strip()) <= high:
        check.fail("question", f"required: {low} to {high} characters, no personal data")
    elif fault := text_fault(request.question, lines=True):
        check.fail("question", fault)
    check.user("on_behalf_of", request.on_behalf_of, formats)
    deadline = _deadline(check, request)
    house_id = _asked_house(check, request, covering_house)
    check.raise_if_failed()
    envelope = request.person
    return AdviceQuestion(
        case_reference=request.case_reference,
        subject=_subject(request.subject),
        house_id=house_id,
        term=request.term.ToTimedelta() if request.HasField("term") else None,
        question=request.question,
        on_behalf_of=request.on_behalf_of,
        subject_age=SubjectAge(request.subject_age),
        deadline=deadline,
        person=SealedEnvelope(
            envelope.house, envelope.key_id, envelope.ephemeral_public_key, envelope.ciphertext
        )
        if request.residence_municipality
        else None,
        enrichment=tuple(TriageCriterion(c) for c in request.enrichment_criteria),
    )


def _asked_house(
    check: Checker,
    request: pb.RequestAdviceRequest,
    covering_house: Callable[[str], str | None],
) -> str:
    """The house asked: the marking house named, or for an enrichment the house that covers
    the residence municipality (exactly one of the two), with the person sealed to it and the
    criteria for which it is asked."""
    municipality = request.residence_municipality
    if request.house and municipality:
        check.fail(
            "residence_municipality",
            "only one of house (a house that marked the suspect) and residence_municipality "
            "(an enrichment request to the house of his municipality)",
        )
        return ""
    if not request.house and not municipality:
        check.fail(
            "house",
            "required: a house that marked the suspect, or residence_municipality for an "
            "enrichment request",
        )
        return ""
    if request.house:
        if request.HasField("person"):
            check.fail("person", "only with residence_municipality")
        if request.enrichment_criteria:
            check.fail("enrichment_criteria", "only with residence_municipality")
        return house_id_of(request.house)
    if fault := text_fault(municipality):
        check.fail("residence_municipality", fault)
        return ""
    covering = covering_house(municipality)
    if covering is None:
        check.fail(
            "residence_municipality",
            "no house covers this municipality in the reference data (baken/municipalities.toml)",
        )
    if not request.enrichment_criteria:
        check.fail(
            "enrichment_criteria",
            "required with residence_municipality: the triage criteria for which the house is "
            "asked about a person it does not know",
        )
    if not request.person.ciphertext:
        check.fail(
            "person",
            "required with residence_municipality: the person's data sealed to the house of "
            "the residence municipality",
        )
    elif covering is not None and request.person.house != house_name(covering):
        check.fail(
            "person.house",
            f"the residence municipality is covered by houses/{covering}: seal to its key",
        )
    return covering or ""


def _deadline(check: Checker, request: pb.RequestAdviceRequest) -> WorkingDayDeadline | None:
    """Exactly one of term and deadline; a deadline's time of day in hours and minutes."""
    has_term, has_deadline = request.HasField("term"), request.HasField("deadline")
    if has_term and has_deadline:
        check.fail("deadline", "only one of term and deadline")
        return None
    if not has_term and not has_deadline:
        check.fail("term", "required: a term, or a deadline on a working day")
        return None
    if not has_deadline:
        return None
    t = request.deadline.time_of_day
    if not (0 <= t.hours <= 23 and 0 <= t.minutes <= 59) or t.seconds or t.nanos:
        check.fail("deadline.time_of_day", "hours 0 to 23 and minutes 0 to 59, nothing more")
        return None
    return WorkingDayDeadline(dt.time(t.hours, t.minutes), request.deadline.working_days)


# An arrest this far ahead of the service's clock is a wrong clock or a typing error.
ARREST_CLOCK_SKEW = dt.timedelta(minutes=5)


def record_inflow(
    request: pb.RecordInflowRequest, formats: Formats, now: dt.datetime
) -> InflowRecord:
    """The inflow entry as the desk states it, once checked: case reference and user id in the
    formats of the caller's party, an arrest and a check that do not lie ahead, free text
    without control characters or personal data."""
    check = Checker()
    check.case_reference("case_reference", request.case_reference, formats, required=True)
    check.subject("subject", request.subject)
    check.user("on_behalf_of", request.on_behalf_of, formats)
    arrest_time = request.arrest_time.ToDatetime(dt.UTC)
    if arrest_time > now + ARREST_CLOCK_SKEW:
        check.fail("arrest_time", "lies in the future")
    checked_time = None
    if request.HasField("checked_time"):
        checked_time = request.checked_time.ToDatetime(dt.UTC)
        if checked_time > now + ARREST_CLOCK_SKEW:
            check.fail("checked_time", "lies in the future")
    elif request.known:
        check.fail("known", "only with checked_time: a suspect not checked is not known")
    offence = request.offence_category.strip()
    if request.offence_category:
        check.text("offence_category", request.offence_category)
    held = None
    if request.HasField("held_decision"):
        h = request.held_decision
        if h.code == pb.DECISION_CODE_SEPOT and not h.sepot_code:
            check.fail("held_decision.sepot_code", 'required with SEPOT: "02" to "99"')
        elif h.code != pb.DECISION_CODE_SEPOT and h.sepot_code:
            check.fail("held_decision.sepot_code", "only with code SEPOT")
        if h.code == pb.DECISION_CODE_TECHNISCH_SEPOT_01:
            check.fail("held_decision.code", "a technisch sepot 01 needs nothing from the desk")
        check.text("held_decision.request_key", h.request_key)
        if h.problem:
            check.text("held_decision.problem", h.problem)
        held = HeldDecision(
            code=DecisionCode(h.code),
            sepot_code=h.sepot_code,
            stage=DecisionStage(h.stage),
            request_key=h.request_key,
            problem=h.problem,
            probation_report_requested=h.probation_report_requested,
        )
    check.raise_if_failed()
    return InflowRecord(
        case_reference=request.case_reference,
        subject=_subject(request.subject),
        arrest_time=arrest_time,
        subject_age=SubjectAge(request.subject_age),
        offence_category=offence,
        checked_time=checked_time,
        known=request.known,
        held_decision=held,
        on_behalf_of=request.on_behalf_of,
    )


def list_inflow(request: pb.ListInflowRequest, formats: Formats) -> None:
    check = Checker()
    check.user("on_behalf_of", request.on_behalf_of, formats)
    check.raise_if_failed()


def advice_request_id(name: str) -> str:
    """The id in an advice request's name, "adviceRequests/{id}" (the contract's pattern)."""
    return name.removeprefix(ADVICE_REQUESTS)


DEAD_LETTERS = "deadLetters/"


def key(value: str, field: str = "key") -> str:
    """A delivery key as the service issued it: printable, without control characters."""
    if not PRINTABLE.match(value):
        raise InvalidArgument([FieldViolation(field, "printable characters only")])
    return value


def dead_letter_key(name: str) -> str:
    """The delivery key in a dead letter's name, "deadLetters/{key}" (the contract's prefix)."""
    return key(name.removeprefix(DEAD_LETTERS), "name")


def failure(value: str) -> str | None:
    if not value:
        return None
    if not PRINTABLE.match(value):
        raise InvalidArgument([FieldViolation("failure", "printable characters only")])
    if fault := text_fault(value):
        raise InvalidArgument([FieldViolation("failure", fault)])
    return value
