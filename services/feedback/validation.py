"""The one place where feedback requests are checked: every check names the offending field
(AIP-193); nothing here touches the database or the registry."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from baken.errors import FieldViolation, InvalidArgument
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.houses import house_name
from baken.registry.v1 import registry_service_pb2
from baken.type.v1 import pseudonym_pb2
from services.common.checks import Checker, text_fault
from services.common.covenants import Formats
from services.feedback.values import (
    ADVICE_REQUESTS,
    AdviceQuestion,
    Decision,
    Pseudonym,
    SealedEnvelope,
    Triage,
)

_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+\Z")
_SEPOT_CODE = re.compile(r"^(0[2-9]|[1-9][0-9])\Z")
_HOUSE = re.compile(r"^houses/([a-z0-9-]{1,64})\Z")
_ADVICE_REQUEST = re.compile(rf"^{ADVICE_REQUESTS}([a-z0-9-]{{1,32}})\Z")
_AGES = (registry_service_pb2.SUBJECT_AGE_MINOR, registry_service_pb2.SUBJECT_AGE_ADULT)
DEVIATION_REASON = (10, 2000)
QUESTION = (1, 500)
MAX_REQUEST_KEY = 64
MAX_ENVELOPE = 64 * 1024
MAX_FAILURE = 200
MIN_TERM = dt.timedelta(hours=24)
MAX_TERM = dt.timedelta(days=7)


def _age(check: Checker, value: int) -> None:
    if value not in _AGES:
        check.fail("subject_age", "required: MINOR or ADULT")


def _subject(subject: pseudonym_pb2.Subject) -> tuple[Pseudonym, ...]:
    return tuple(Pseudonym(p.kind, p.key_id, p.value) for p in subject.pseudonyms)


def house_id(name: str, field: str = "house") -> str:
    found = _HOUSE.match(name)
    if not found:
        raise InvalidArgument([FieldViolation(field, 'required: "houses/{house}"')])
    return found.group(1)


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
    valid_codes = set(pb.DecisionCode.values()) - {0}
    if request.code not in valid_codes:
        check.fail("code", "required; must be one of the defined values")
    if request.code == pb.DECISION_CODE_SEPOT:
        if not _SEPOT_CODE.match(request.sepot_code):
            check.fail("sepot_code", 'required with SEPOT: "02" to "99" (01 is TECHNISCH_SEPOT_01)')
    elif request.sepot_code:
        check.fail("sepot_code", "only with code SEPOT")
    if request.stage not in (pb.DECISION_STAGE_ROUTING, pb.DECISION_STAGE_FINAL):
        check.fail("stage", "required: ROUTING or FINAL")
    _age(check, request.subject_age)
    if request.advice_followed not in pb.AdviceFollowed.values():
        check.fail("advice_followed", "must be one of the defined values")
    low, high = DEVIATION_REASON
    reason = request.deviation_reason.strip()
    if request.advice_followed == pb.ADVICE_FOLLOWED_NOT_FOLLOWED:
        if not low <= len(reason) <= high:
            check.fail(
                "deviation_reason",
                f"required when the advice was not followed: the substantive reason, "
                f"{low} to {high} characters",
            )
        elif fault := text_fault(reason, lines=True):
            check.fail("deviation_reason", fault)
    elif reason:
        check.fail("deviation_reason", "only when advice_followed is NOT_FOLLOWED")
    matched = list(request.triage.matched)
    for i, criterion in enumerate(matched):
        if criterion not in set(pb.TriageCriterion.values()) - {0}:
            check.fail(f"triage.matched[{i}]", "must be one of the defined criteria")
    if matched and not request.triage.checked:
        check.fail("triage.checked", "criteria matched, so they were checked: set checked")
    if len(set(matched)) != len(matched):
        check.fail("triage.matched", "names a criterion twice")
    check.text("residence_municipality", request.residence_municipality, required=False, limit=100)
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
    if request.request_key and (
        len(request.request_key) > MAX_REQUEST_KEY or not _PRINTABLE.match(request.request_key)
    ):
        check.fail("request_key", f"at most {MAX_REQUEST_KEY} printable characters")
    elif fault := text_fault(request.request_key):
        check.fail("request_key", fault)
    check.raise_if_failed()
    envelope = request.referral
    return Decision(
        case_reference=request.case_reference,
        subject=_subject(request.subject),
        code=request.code,
        sepot_code=request.sepot_code,
        stage=request.stage,
        subject_age=request.subject_age,
        advice_followed=request.advice_followed,
        deviation_reason=request.deviation_reason,
        probation_report_requested=request.probation_report_requested,
        triage=Triage(request.triage.checked, tuple(request.triage.matched)),
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
    if not envelope.key_id or len(envelope.key_id) > 32:
        check.fail("referral.key_id", "required: the house key's id")
    if len(envelope.ephemeral_public_key) != 32:
        check.fail("referral.ephemeral_public_key", "must be 32 bytes (X25519)")
    if not 28 < len(envelope.ciphertext) <= MAX_ENVELOPE:
        check.fail(
            "referral.ciphertext", f"nonce, ciphertext and tag: at most {MAX_ENVELOPE} bytes"
        )


def request_advice(request: pb.RequestAdviceRequest, formats: Formats) -> AdviceQuestion:
    """The question, once checked; the case reference and user id in the formats of the
    caller's party."""
    check = Checker()
    check.case_reference("case_reference", request.case_reference, formats, required=True)
    check.subject("subject", request.subject)
    found = _HOUSE.match(request.house)
    if not found:
        check.fail("house", 'required: "houses/{house}", a house that marked the suspect')
    try:
        term = request.term.ToTimedelta()
    except (ValueError, OverflowError):
        term = dt.timedelta(0)  # out of every range a duration has: fails below
    if not MIN_TERM <= term <= MAX_TERM:
        check.fail("term", "required: 24 hours to 7 days")
    low, high = QUESTION
    if not low <= len(request.question.strip()) <= high:
        check.fail("question", f"required: {low} to {high} characters, no personal data")
    elif fault := text_fault(request.question, lines=True):
        check.fail("question", fault)
    check.user("on_behalf_of", request.on_behalf_of, formats)
    _age(check, request.subject_age)
    check.raise_if_failed()
    assert found is not None
    return AdviceQuestion(
        case_reference=request.case_reference,
        subject=_subject(request.subject),
        house_id=found.group(1),
        term=term,
        question=request.question,
        on_behalf_of=request.on_behalf_of,
        subject_age=request.subject_age,
    )


def advice_request_id(name: str) -> str:
    """The id in an advice request's name, "adviceRequests/{id}"."""
    found = _ADVICE_REQUEST.match(name)
    if not found:
        raise InvalidArgument([FieldViolation("name", 'required: "adviceRequests/{id}"')])
    return found.group(1)


DEAD_LETTERS = "deadLetters/"


def key(value: str, field: str = "key") -> str:
    """A delivery key as the service issued it: printable, without control characters."""
    if not 0 < len(value) <= 128 or not _PRINTABLE.match(value):
        raise InvalidArgument([FieldViolation(field, "required: 1 to 128 printable characters")])
    return value


def dead_letter_key(name: str) -> str:
    """The delivery key in a dead letter's name, "deadLetters/{key}"."""
    if not name.startswith(DEAD_LETTERS):
        raise InvalidArgument([FieldViolation("name", 'required: "deadLetters/{key}"')])
    return key(name.removeprefix(DEAD_LETTERS), "name")


def failure(value: str) -> str | None:
    if not value:
        return None
    if len(value) > MAX_FAILURE or not _PRINTABLE.match(value):
        raise InvalidArgument(
            [FieldViolation("failure", f"at most {MAX_FAILURE} printable characters")]
        )
    if fault := text_fault(value):
        raise InvalidArgument([FieldViolation("failure", fault)])
    return value
