"""The routing rules of terugkoppeling (docs/PROCESS.md §3 step 3), each against a real
feedback service in front of a real registry with the shipped covenants."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import grpc
import pytest
from builders import Marking, Person, problem, subject
from feedback_harness import KPC_ROTTERDAM, KPC_UTRECHT, RunningFeedback, decision_request
from google.type import date_pb2

from baken import sealed
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.registry.v1 import registry_service_pb2

TRAVELLER = Person(bsn="111222333", surname="Jansen", birth_date=dt.date(1990, 5, 17))
STRANGER = Person(bsn="123456782", surname="de Vries", birth_date=dt.date(1988, 2, 3))
ROTTERDAM = "vh-rotterdam-rijnmond"  # PGA
UTRECHT = "vh-regio-utrecht-utrecht"  # GCOS
BREDA = "vh-breda"  # GCOS, Zeeland-West-Brabant: its covenant does not send triage
REASON = "De verdachte is inmiddels opgenomen in een kliniek; een dagvaarding past beter."


def mark(feedback: RunningFeedback, person: Person, *houses: str, **fields: object) -> None:
    """Each house marks the person, under record "{house}-{bsn or surname}"."""
    feedback.registry.sync(
        *(
            Marking(
                person, f"{house}-{person.bsn or person.surname}", house=house, **fields
            ).upsert(  # type: ignore[arg-type]
                feedback.ring
            )
            for house in houses
        )
    )


def items_of(feedback: RunningFeedback) -> list[dict[str, object]]:
    """The items but the houses' matchingsmelding (tests/test_matching.py), which a purge's
    take-over of signals brings along and which no case's purge touches."""
    return [row for row in feedback.tables()["deliveries"] if row["kind"] != pb.DELIVERY_KIND_MATCH]


def payloads(feedback: RunningFeedback) -> dict[str, pb.Delivery]:
    return {row["house_id"]: feedback.stored(row) for row in items_of(feedback)}


def refused(call: object) -> tuple[grpc.StatusCode, str | None, list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    found = problem(caught.value)
    return found.code, found.reason, found.fields


def test_known_person_every_marking_house_nationwide_hears_the_decision(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, ROTTERDAM, UTRECHT)
    response = feedback.decide(
        TRAVELLER,
        KPC_UTRECHT,
        # The Midden-Nederland desk sees Utrecht's advice, not Rotterdam's (another region).
        house_advice=[
            pb.HouseAdvice(
                house=f"houses/{UTRECHT}",
                advice_followed=pb.ADVICE_FOLLOWED_NOT_FOLLOWED,
                deviation_reason=REASON,
            ),
        ],
        probation_report_requested=True,
    )
    assert sorted(i.house for i in response.items) == [f"houses/{UTRECHT}", f"houses/{ROTTERDAM}"]
    assert all(i.kind == pb.DELIVERY_KIND_DECISION and not i.withheld for i in response.items)
    sent = payloads(feedback)
    for house in (ROTTERDAM, UTRECHT):
        item = sent[house]
        assert item.source_record_id == f"{house}-{TRAVELLER.bsn}"
        assert item.case_reference == "10-123456-26"
        assert item.zsm_location == "ZSM Midden-Nederland"
        assert item.decision.code == pb.DECISION_CODE_DAGVAARDING
        assert item.decision.stage == pb.DECISION_STAGE_FINAL
        assert item.decision.probation_report_requested
        # Each house hears its own line, and that one other house was told.
        assert item.decision.other_houses == 1
    assert sent[UTRECHT].decision.advice_followed == pb.ADVICE_FOLLOWED_NOT_FOLLOWED
    assert sent[UTRECHT].decision.deviation_reason == REASON
    assert sent[ROTTERDAM].decision.advice_followed == pb.ADVICE_FOLLOWED_UNSPECIFIED
    assert sent[ROTTERDAM].decision.deviation_reason == ""


def test_current_advice_requires_saying_whether_it_was_followed(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, UTRECHT)  # advice of 2026-09-01: CURRENT on 2026-11-28
    code, _, fields = refused(lambda: feedback.decide(TRAVELLER, KPC_UTRECHT))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["house_advice"])
    code, _, fields = refused(
        lambda: feedback.decide(
            TRAVELLER, KPC_UTRECHT, advice_followed=pb.ADVICE_FOLLOWED_NOT_FOLLOWED
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["deviation_reason"])
    assert items_of(feedback) == [] and feedback.tables()["decisions"] == []


def test_aged_advice_counts_and_expired_advice_does_not(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT, advice_date=dt.date(2026, 3, 1))  # AGED
    code, _, fields = refused(lambda: feedback.decide(TRAVELLER, KPC_UTRECHT))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["house_advice"])
    mark(feedback, STRANGER, UTRECHT, advice_date=dt.date(2025, 1, 1))  # EXPIRED
    assert len(feedback.decide(STRANGER, KPC_UTRECHT).items) == 1


def test_technisch_sepot_01_sends_nothing_and_purges_the_case(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, ROTTERDAM, UTRECHT)
    routing = feedback.decide(
        TRAVELLER,
        stage=pb.DECISION_STAGE_ROUTING,
        code=pb.DECISION_CODE_OVERDRACHT_BACKOFFICE,
        advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED,
    )
    assert len(routing.items) == 2
    other_case = feedback.decide(
        TRAVELLER, case_reference="10-999999-26", advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED
    )
    purge = feedback.decide(TRAVELLER, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01)
    assert (purge.name, list(purge.items), purge.purged_items) == ("", [], 2)
    tables = feedback.tables()
    assert {row["key"] for row in items_of(feedback)} == {i.key for i in other_case.items}
    assert [d["case_reference"] for d in tables["decisions"]] == ["10-999999-26"]
    # Nothing queued for the case reaches a house.
    got = feedback.receive(UTRECHT, count=5, party="adapter-gcos", timeout=1.5)
    assert [d.case_reference for d in got] == ["10-999999-26"]
    # The purge is in the access log, by whom and how much, without the case.
    last = json.loads(tables["access_log"][-1]["body"])
    assert last["outcome"] == "purged"
    assert last["party_id"] == KPC_ROTTERDAM
    assert last["purged"] == {"items": 2, "advice_requests": 0, "decisions": 1, "inflow": 0}
    assert "10-123456-26" not in tables["access_log"][-1]["body"]
    assert "data_subject" not in last


def test_other_sepot_codes_only_say_that_he_flowed_in_and_was_dismissed(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    feedback.decide(
        TRAVELLER,
        code=pb.DECISION_CODE_SEPOT,
        sepot_code="02",
        advice_followed=pb.ADVICE_FOLLOWED_NOT_FOLLOWED,
        deviation_reason=REASON,
        probation_report_requested=True,
        triage=pb.TriageCheck(checked=True, matched=[pb.TRIAGE_CRITERION_REPEAT_OFFENDER]),
    )
    item = payloads(feedback)[UTRECHT]
    assert item.decision == pb.DecisionFeedback(code=pb.DECISION_CODE_SEPOT, sepot_code="02")
    assert item.case_reference and item.zsm_location and item.source_record_id


@pytest.mark.parametrize("code", [pb.DECISION_CODE_HALT, pb.DECISION_CODE_REPRIMANDE])
def test_halt_or_reprimande_about_a_known_minor_is_fed_back(
    feedback: RunningFeedback, code: int
) -> None:
    minor = Person(bsn="111222333", surname="Bakker", birth_date=dt.date(2010, 4, 1))
    change = Marking(minor, f"{UTRECHT}-{minor.bsn}", house=UTRECHT).upsert(feedback.ring)
    change.upsert.minor_until.CopyFrom(date_pb2.Date(year=2028, month=5, day=1))
    feedback.registry.sync(change)
    # At intake the desk sees nothing of the house, even claiming he is an adult ...
    at_intake = feedback.registry.lookup(subject(feedback.ring, minor))
    assert at_intake.outcome == registry_service_pb2.LOOKUP_OUTCOME_MINOR_AT_INTAKE
    # ... and the house still hears of the Halt or reprimande.
    response = feedback.decide(
        minor,
        code=code,
        subject_age=registry_service_pb2.SUBJECT_AGE_MINOR,
        advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED,
    )
    assert [i.house for i in response.items] == [f"houses/{UTRECHT}"]
    item = payloads(feedback)[UTRECHT]
    assert item.decision.code == code
    assert item.decision.subject_age == registry_service_pb2.SUBJECT_AGE_MINOR


def test_not_known_without_complex_problems_goes_nowhere(feedback: RunningFeedback) -> None:
    response = feedback.decide(STRANGER)
    assert list(response.items) == [] and items_of(feedback) == []
    assert feedback.tables()["decisions"][0]["known"] in (False, 0)


def referral_envelope(
    keys: Path, house: str, person: Person, case: str = "10-123456-26"
) -> pb.SealedEnvelope:
    return sealed.seal_person(
        sealed.load_public(keys, house),
        sealed.ReferredPerson(person.bsn, person.surname, person.birth_date, "Nieuwegein"),
        case_reference=case,
    )


def test_not_known_with_complex_problems_is_referred_sealed_to_the_municipalitys_house(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    response = feedback.decide(
        STRANGER,
        complex_problems_suspected=True,
        residence_municipality="Nieuwegein",
        referral=referral_envelope(house_keys_dir, UTRECHT, STRANGER),
        triage=pb.TriageCheck(checked=True, matched=[pb.TRIAGE_CRITERION_DOMESTIC_VIOLENCE]),
    )
    assert [(i.house, i.kind) for i in response.items] == [
        (f"houses/{UTRECHT}", pb.DELIVERY_KIND_REFERRAL)
    ]
    # The service holds ciphertext only: no BSN or name anywhere in its database.
    dumped = repr(feedback.tables()).encode()
    for clear in (b"123456782", b"de Vries", b"Vries", b"1988-02-03"):
        assert clear not in dumped
    # The house opens it with its own key, and only for this case.
    item = payloads(feedback)[UTRECHT]
    key = sealed.load_private(house_keys_dir, UTRECHT)
    opened = sealed.open_person(key, item.referral, case_reference=item.case_reference)
    assert (opened.bsn, opened.surname, opened.birth_date) == (
        STRANGER.bsn,
        STRANGER.surname,
        STRANGER.birth_date,
    )
    with pytest.raises(sealed.SealError):
        sealed.open_person(key, item.referral, case_reference="10-000000-26")
    with pytest.raises(sealed.SealError):
        sealed.open_person(
            sealed.load_private(house_keys_dir, BREDA), item.referral, case_reference="x"
        )
    assert list(item.decision.triage.matched) == [pb.TRIAGE_CRITERION_DOMESTIC_VIOLENCE]


def test_a_referral_sealed_to_another_house_than_the_municipalitys_is_refused(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    code, _, fields = refused(
        lambda: feedback.decide(
            STRANGER,
            complex_problems_suspected=True,
            residence_municipality="Nieuwegein",
            referral=referral_envelope(house_keys_dir, BREDA, STRANGER),
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["referral.house"])
    code, _, fields = refused(lambda: feedback.decide(STRANGER, complex_problems_suspected=True))
    assert set(fields) == {"residence_municipality", "referral"}


def test_a_known_persons_sealed_referral_is_discarded_unread(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    mark(feedback, STRANGER, ROTTERDAM)
    response = feedback.decide(
        STRANGER,
        complex_problems_suspected=True,
        residence_municipality="Nieuwegein",
        referral=referral_envelope(house_keys_dir, UTRECHT, STRANGER),
        advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED,
    )
    assert [(i.house, i.kind) for i in response.items] == [
        (f"houses/{ROTTERDAM}", pb.DELIVERY_KIND_DECISION)
    ]
    assert not payloads(feedback)[ROTTERDAM].HasField("referral")


def test_what_the_houses_covenant_does_not_allow_is_not_sent(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, BREDA, UTRECHT)
    triage = pb.TriageCheck(checked=True, matched=[pb.TRIAGE_CRITERION_HIGH_IMPACT_CRIME])
    response = feedback.decide(
        TRAVELLER,
        advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED,
        triage=triage,
        complex_problems_suspected=True,
        residence_municipality="Breda",
        referral=pb.SealedEnvelope(
            house="houses/vh-breda",
            key_id="x",
            ephemeral_public_key=bytes(32),
            ciphertext=bytes(40),
        ),
    )
    withheld = {i.house: list(i.withheld) for i in response.items}
    assert withheld == {f"houses/{BREDA}": ["feedback.triage"], f"houses/{UTRECHT}": []}
    sent = payloads(feedback)
    assert not sent[BREDA].decision.HasField("triage")
    assert not sent[BREDA].decision.complex_problems_suspected
    assert list(sent[BREDA].withheld) == ["feedback.triage"]
    assert sent[UTRECHT].decision.triage == triage


def test_a_retry_with_the_same_request_key_records_nothing_new(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, ROTTERDAM)
    first = feedback.decide(
        TRAVELLER, request_key="retry-1", advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED
    )
    again = feedback.decide(
        TRAVELLER, request_key="retry-1", advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED
    )
    assert again.name == first.name
    assert [i.key for i in again.items] == [i.key for i in first.items]
    assert len(items_of(feedback)) == 1 and len(feedback.tables()["decisions"]) == 1


def test_only_a_desk_with_terugkoppeling_may_record_decisions(feedback: RunningFeedback) -> None:
    for party in ("zsm-rotterdam-rijnmond-politie", "adapter-pga", "privacy-auditor"):
        code, _, _ = refused(lambda p=party: feedback.decide(TRAVELLER, party=p))  # type: ignore[misc]
        assert code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"case_reference": ""}, "case_reference"),
        ({"code": 0}, "code"),
        ({"code": 99}, "code"),
        ({"code": pb.DECISION_CODE_SEPOT}, "sepot_code"),
        ({"code": pb.DECISION_CODE_SEPOT, "sepot_code": "01"}, "sepot_code"),
        ({"sepot_code": "02"}, "sepot_code"),
        ({"stage": 0}, "stage"),
        ({"subject_age": 0}, "subject_age"),
        ({"deviation_reason": REASON}, "deviation_reason"),
        ({"triage": pb.TriageCheck(matched=[pb.TRIAGE_CRITERION_YOUTH])}, "triage.checked"),
        ({"on_behalf_of": ""}, "on_behalf_of"),
        ({"request_key": "x" * 65}, "request_key"),
    ],
)
def test_bad_decisions_name_the_field_and_change_nothing(
    feedback: RunningFeedback, fields: dict[str, object], bad: str
) -> None:
    stub = feedback.stub_for(KPC_ROTTERDAM)
    request = decision_request(feedback.ring, TRAVELLER, **fields)
    code, _, named = refused(lambda: stub.RecordDecision(request, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and bad in named
    assert feedback.tables()["decisions"] == []


def test_signals_of_a_purged_case_still_waiting_in_the_registry_never_arrive(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, ROTTERDAM, UTRECHT)
    feedback.registry.lookup(
        subject(feedback.ring, TRAVELLER), party=KPC_ROTTERDAM, case_reference="10-123456-26"
    )
    waiting = [s for s in feedback.registry.tables()["signals"] if s["kind"] == 1]
    assert len(waiting) == 2  # not yet taken over (besides the houses' matchingsmelding)
    feedback.decide(TRAVELLER, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01)
    assert feedback.server.follower.follow_once() == 0
    assert items_of(feedback) == []


def test_the_deviation_reason_is_sealed_at_rest(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    feedback.decide(
        TRAVELLER,
        KPC_UTRECHT,
        advice_followed=pb.ADVICE_FOLLOWED_NOT_FOLLOWED,
        deviation_reason=REASON,
    )
    assert REASON.encode() not in repr(feedback.tables()).encode()
    files = feedback.settings.data_dir.parent.glob("feedback-db/feedback.db*")
    assert all(REASON.encode()[:30] not in path.read_bytes() for path in files)
    assert payloads(feedback)[UTRECHT].decision.deviation_reason == REASON
