"""baken.feedback.v1.Delivery -> adapters.records.Delivery: the conversion table per kind and
decision code, withheld fields as None (never False), the referral opened with the house key,
and failures that name the field and never a value."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from adapters.amazone.deliver import COLUMNS, mutation_row
from adapters.deliveries import decision_code, referral_reason, to_delivery
from adapters.gcos.deliver import render
from adapters.pga.deliver import beslisrecord
from adapters.receive import failure_text
from adapters.records import Delivery, OtherHouse, Person, check_delivery
from baken import sealed
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2

OCCURRED = dt.datetime(2026, 11, 28, 11, 0, tzinfo=dt.UTC)
CASE = "10-123456-26"
BSN = "111222333"


def _stamp(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def message(kind: int = pb.DELIVERY_KIND_DECISION, **fields: Any) -> pb.Delivery:
    values: dict[str, Any] = {
        "key": "dec-0001-00",
        "house": "houses/vh-rotterdam-rijnmond",
        "kind": kind,
        "case_reference": CASE,
        "occurred_time": _stamp(OCCURRED),
        "source_record_id": "AT-2024-000101",
        "zsm_location": "ZSM Rotterdam-Rijnmond",
        "attempt": 1,
        **fields,
    }
    return pb.Delivery(**values)


def decision(**fields: Any) -> pb.DecisionFeedback:
    values: dict[str, Any] = {
        "code": pb.DECISION_CODE_DAGVAARDING,
        "stage": pb.DECISION_STAGE_FINAL,
        "subject_age": registry_service_pb2.SUBJECT_AGE_ADULT,
        "advice_followed": pb.ADVICE_FOLLOWED_NOT_FOLLOWED,
        "deviation_reason": "Nieuw feit met geweld; ISD-plaats niet beschikbaar.",
        "probation_report_requested": True,
        "other_houses": 1,
        **fields,
    }
    return pb.DecisionFeedback(**values)


@pytest.mark.parametrize(
    ("code", "sepot_code", "expected"),
    [
        (pb.DECISION_CODE_DAGVAARDING, "", "dagvaarding"),
        (pb.DECISION_CODE_STRAFBESCHIKKING, "", "strafbeschikking"),
        (pb.DECISION_CODE_HALT, "", "halt"),
        (pb.DECISION_CODE_REPRIMANDE, "", "reprimande"),
        (pb.DECISION_CODE_VOORWAARDELIJK_SEPOT, "", "voorwaardelijk-sepot"),
        (pb.DECISION_CODE_TOM_ZITTING, "", "tom-zitting"),
        (pb.DECISION_CODE_VOORGELEIDING, "", "voorgeleiding"),
        (pb.DECISION_CODE_TRANSACTIE, "", "transactie"),
        (pb.DECISION_CODE_OVERDRACHT_BACKOFFICE, "", "overdracht-backoffice"),
        (pb.DECISION_CODE_SEPOT, "02", "sepot-02"),
        (pb.DECISION_CODE_SEPOT, "99", "sepot-99"),
        (pb.DECISION_CODE_UNSPECIFIED, "", None),
    ],
)
def test_every_decision_code_has_its_write_back_name(
    code: int, sepot_code: str, expected: str | None
) -> None:
    assert decision_code(code, sepot_code) == expected


def test_every_code_of_the_enum_is_in_the_table() -> None:
    named = {v.number for v in pb.DecisionCode.DESCRIPTOR.values}
    for number in named - {pb.DECISION_CODE_SEPOT, pb.DECISION_CODE_UNSPECIFIED}:
        code = decision_code(number, "")
        assert code is not None and code == code.lower() and "_" not in code


@pytest.mark.parametrize("sepot_code", ["", "2", "x2", "002"])
def test_a_sepot_without_its_two_digit_code_names_the_field(sepot_code: str) -> None:
    with pytest.raises(ValueError, match=r"^decision\.sepot_code: "):
        decision_code(pb.DECISION_CODE_SEPOT, sepot_code)


def test_technisch_sepot_01_is_refused_by_the_shared_check() -> None:
    delivery = to_delivery(message(decision=decision(code=pb.DECISION_CODE_TECHNISCH_SEPOT_01)))
    with pytest.raises(ValueError, match=r"^decision: technisch sepot 01"):
        check_delivery(delivery)


def test_a_decision_carries_every_field_the_house_may_know() -> None:
    delivery = to_delivery(message(decision=decision()))

    assert delivery == Delivery(
        key="dec-0001-00",
        house_id="vh-rotterdam-rijnmond",
        kind="decision",
        case_reference=CASE,
        occurred=OCCURRED,
        source_record_id="AT-2024-000101",
        zsm_location="ZSM Rotterdam-Rijnmond",
        decision="dagvaarding",
        final=True,
        advice_followed=False,
        deviation_reason="Nieuw feit met geweld; ISD-plaats niet beschikbaar.",
        other_houses=1,
        probation_report_requested=True,
        minor=False,
    )
    assert delivery.occurred.tzinfo is dt.UTC
    check_delivery(delivery)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"stage": pb.DECISION_STAGE_ROUTING}, {"final": False}),
        ({"stage": pb.DECISION_STAGE_UNSPECIFIED}, {"final": None}),
        ({"subject_age": registry_service_pb2.SUBJECT_AGE_MINOR}, {"minor": True}),
        ({"subject_age": registry_service_pb2.SUBJECT_AGE_UNSPECIFIED}, {"minor": None}),
        (
            {"advice_followed": pb.ADVICE_FOLLOWED_FOLLOWED, "deviation_reason": ""},
            {"advice_followed": True, "deviation_reason": None},
        ),
        (
            {"advice_followed": pb.ADVICE_FOLLOWED_NO_ADVICE, "deviation_reason": ""},
            {"advice_followed": None, "deviation_reason": None},
        ),
        (
            {"advice_followed": pb.ADVICE_FOLLOWED_UNSPECIFIED, "deviation_reason": ""},
            {"advice_followed": None, "deviation_reason": None},
        ),
        ({"probation_report_requested": False}, {"probation_report_requested": False}),
        ({"other_houses": 0}, {"other_houses": 0}),  # this house alone marks him
        ({"other_houses": 3}, {"other_houses": 3}),
    ],
)
def test_decision_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    delivery = to_delivery(message(decision=decision(**fields)))
    assert {name: getattr(delivery, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("withheld", "none"),
    [
        (["feedback.deviation_reason"], ["advice_followed", "deviation_reason"]),
        (["feedback.probation_report"], ["probation_report_requested"]),
        (["feedback.triage"], []),
        (["feedback.decision"], ["decision", "final", "minor", "other_houses"]),
        (
            ["feedback.deviation_reason", "feedback.probation_report"],
            ["advice_followed", "deviation_reason", "probation_report_requested"],
        ),
    ],
)
def test_a_withheld_field_is_none_never_false(withheld: list[str], none: list[str]) -> None:
    # As the service sends it: the fields cleared (proto3 defaults: False, 0, "") and named.
    d = decision()
    if "feedback.deviation_reason" in withheld:
        d.ClearField("advice_followed")
        d.ClearField("deviation_reason")
    if "feedback.probation_report" in withheld:
        d.ClearField("probation_report_requested")
    if "feedback.decision" in withheld:
        for name in ("code", "sepot_code", "stage", "subject_age", "other_houses"):
            d.ClearField(name)
    delivery = to_delivery(message(decision=d, withheld=withheld))

    full = to_delivery(message(decision=decision()))
    for name in none:
        assert getattr(delivery, name) is None, name
    kept = {"advice_followed", "probation_report_requested", "final", "minor", "other_houses"}
    for name in kept - set(none):
        assert getattr(delivery, name) == getattr(full, name), name


def test_a_sepot_says_only_that_the_person_was_dismissed() -> None:
    delivery = to_delivery(
        message(decision=pb.DecisionFeedback(code=pb.DECISION_CODE_SEPOT, sepot_code="02"))
    )

    assert delivery.decision == "sepot-02"
    assert delivery.final is None
    assert delivery.advice_followed is None
    assert delivery.deviation_reason is None
    assert delivery.probation_report_requested is None
    assert delivery.minor is None
    assert delivery.other_houses is None
    check_delivery(delivery)


def test_a_signal_carries_no_decision() -> None:
    delivery = to_delivery(message(pb.DELIVERY_KIND_SIGNAL, key="sig-1"))

    assert delivery.kind == "signal"
    assert delivery.source_record_id == "AT-2024-000101"
    assert (delivery.decision, delivery.final, delivery.advice_followed) == (None, None, None)
    assert (delivery.probation_report_requested, delivery.minor) == (None, None)
    check_delivery(delivery)


def test_an_advice_request_carries_its_term_and_question() -> None:
    due = OCCURRED + dt.timedelta(hours=48)
    delivery = to_delivery(
        message(
            pb.DELIVERY_KIND_ADVICE_REQUEST,
            key="adv-1",
            due_time=_stamp(due),
            question="Is er een plan van aanpak met meldplicht?",
            advice_request="adviceRequests/1",
        )
    )

    assert delivery.kind == "advice-request"
    assert delivery.due == due and delivery.due.tzinfo is dt.UTC
    assert delivery.question == "Is er een plan van aanpak met meldplicht?"
    assert delivery.advice_request == "adviceRequests/1"  # what the adapter answers by
    check_delivery(delivery)


def test_an_advice_request_without_its_term_is_refused_by_the_shared_check() -> None:
    delivery = to_delivery(message(pb.DELIVERY_KIND_ADVICE_REQUEST, key="adv-1"))
    assert delivery.due is None
    with pytest.raises(ValueError, match=r"^due: "):
        check_delivery(delivery)


def _referral(keys: Path, house: str = "vh-rotterdam-rijnmond", **fields: Any) -> pb.Delivery:
    envelope = sealed.seal_person(
        sealed.load_public(keys, house),
        sealed.ReferredPerson(BSN, "van der Berg", dt.date(1990, 4, 1), "Rotterdam"),
        case_reference=CASE,
    )
    values: dict[str, Any] = {
        "key": "ref-1",
        "house": f"houses/{house}",
        "source_record_id": "",
        "referral": envelope,
        "decision": decision(
            advice_followed=pb.ADVICE_FOLLOWED_UNSPECIFIED,
            deviation_reason="",
            complex_problems_suspected=True,
            triage=pb.TriageCheck(
                checked=True,
                matched=[
                    pb.TRIAGE_CRITERION_DOMESTIC_VIOLENCE,
                    pb.TRIAGE_CRITERION_REPEAT_OFFENDER,
                ],
            ),
        ),
        **fields,
    }
    return message(pb.DELIVERY_KIND_REFERRAL, **values)


def test_a_referral_is_opened_with_the_house_key(house_keys_dir: Path) -> None:
    key = sealed.load_private(house_keys_dir, "vh-rotterdam-rijnmond")
    delivery = to_delivery(_referral(house_keys_dir), key)

    assert delivery.kind == "referral"
    assert delivery.source_record_id is None
    assert delivery.person == Person(BSN, "van der Berg", dt.date(1990, 4, 1))
    assert delivery.referral_reason == (
        "complexe problematiek vermoed; triagecriteria: huiselijk geweld, veelpleger"
    )
    assert delivery.minor is False
    assert delivery.decision is None  # a referral is not a decision about a marked person
    check_delivery(delivery)


def test_a_referral_with_the_triage_withheld_gives_only_the_suspicion(
    house_keys_dir: Path,
) -> None:
    item = _referral(house_keys_dir, withheld=["feedback.triage"])
    item.decision.ClearField("triage")
    item.decision.ClearField("complex_problems_suspected")

    assert referral_reason(item) == "complexe problematiek vermoed"


@pytest.mark.parametrize(
    "tamper",
    ["another house's key", "another case", "altered", "no key", "no envelope"],
)
def test_a_referral_that_does_not_open_names_the_field_only(
    house_keys_dir: Path, tamper: str
) -> None:
    item = _referral(house_keys_dir)
    key: sealed.HouseKey | None = sealed.load_private(house_keys_dir, "vh-rotterdam-rijnmond")
    if tamper == "another house's key":
        key = sealed.load_private(house_keys_dir, "vh-zuid-holland-zuid")
    elif tamper == "another case":
        item.case_reference = "10-999999-26"
    elif tamper == "altered":
        item.referral.ciphertext = item.referral.ciphertext[:-1] + b"\0"
    elif tamper == "no key":
        key = None
    else:
        item.ClearField("referral")

    with pytest.raises(ValueError, match=r"^referral: ") as raised:
        to_delivery(item, key)
    text = failure_text(raised.value)
    assert text.startswith("referral: ")
    for secret in (BSN, "Berg", "1990", "vh-zuid-holland-zuid"):
        assert secret not in text


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"house": "vh-rotterdam-rijnmond"}, "house"),
        ({"house": "houses/"}, "house"),
        ({"kind": pb.DELIVERY_KIND_UNSPECIFIED}, "kind"),
        ({"occurred_time": None}, "occurred_time"),
    ],
)
def test_an_item_that_cannot_be_converted_names_the_field(
    fields: dict[str, Any], field: str
) -> None:
    item = message(decision=decision())
    for name, value in fields.items():
        if value is None:
            item.ClearField(name)
        else:
            setattr(item, name, value)
    with pytest.raises(ValueError, match=rf"^{field}: "):
        to_delivery(item)


def test_a_failure_repeats_no_quoted_value_and_fits_the_field() -> None:
    error = ValueError("house_id: 'vh-nergens' is not a PGA house")
    assert failure_text(error) == "house_id: … is not a PGA house"
    assert len(failure_text(ValueError("x: " + "y" * 500))) == 200
    assert "\n" not in failure_text(ValueError("a: b\nc"))


def test_a_signal_of_an_intake_lookup_without_case_is_written_by_every_source() -> None:
    """At intake a lookup may have no case yet: the feedback service signals it per lookup,
    with an empty case reference, and every source takes it."""
    pga = to_delivery(message(pb.DELIVERY_KIND_SIGNAL, key="sig-1", case_reference=""))
    check_delivery(pga)
    assert beslisrecord(pga)["zsm_zaak"] is None
    gcos = replace(pga, house_id="vh-regio-utrecht-utrecht", source_record_id="100234")
    assert b"<zaak>" not in render(gcos)
    amazone = replace(pga, house_id="vh-twente", source_record_id="AMZ-2024-000311")
    assert mutation_row(amazone)[COLUMNS.index("Zaaknummer")] == ""
    with pytest.raises(ValueError, match=r"^case_reference: "):
        check_delivery(replace(pga, kind="decision", decision="dagvaarding"))


def _match(**fields: Any) -> pb.Delivery:
    """A matchingsmelding as the feedback service streams it: no case, no desk."""
    other = pb.Match(
        house="houses/vh-regio-utrecht-utrecht",
        house_display_name="Veiligheidshuis Regio Utrecht",
        contact=house_pb2.ContactPoint(
            role="Procesregisseur ZSM-contact",
            email="zsm@vhu.example",
            phone="+31 30 999 0101",
            after_hours_phone="+31 30 999 0199",
        ),
        target_group=marker_pb2.TARGET_GROUP_HUISELIJK_GEWELD,
    )
    values: dict[str, Any] = {"key": "mat-1", "case_reference": "", "zsm_location": "", **fields}
    return message(pb.DELIVERY_KIND_MATCH, match=other, **values)


def test_a_match_carries_the_other_house_its_contact_and_target_group_only() -> None:
    delivery = to_delivery(_match())

    assert delivery.kind == "match"
    assert delivery.source_record_id == "AT-2024-000101"
    assert (delivery.case_reference, delivery.zsm_location) == ("", None)
    assert delivery.other_house == OtherHouse(
        house_id="vh-regio-utrecht-utrecht",
        display_name="Veiligheidshuis Regio Utrecht",
        target_group="huiselijk_geweld",
        contact_role="Procesregisseur ZSM-contact",
        email="zsm@vhu.example",
        phone="+31 30 999 0101",
        after_hours_phone="+31 30 999 0199",
    )
    assert (delivery.decision, delivery.minor, delivery.person, delivery.due) == (
        None,
        None,
        None,
        None,
    )
    check_delivery(delivery)
    # Every source takes it; only a match names another house.
    assert beslisrecord(delivery)["soort"] == "matching"
    gcos = replace(delivery, house_id="vh-twente", source_record_id="AMZ-2024-000311")
    assert mutation_row(gcos)[COLUMNS.index("Soort mutatie")] == "Matchingsmelding"
    utrecht = replace(delivery, house_id="vh-regio-utrecht-utrecht", source_record_id="100234")
    with pytest.raises(ValueError, match=r"^other_house.house_id: "):
        render(utrecht)  # Utrecht is no match of itself
    assert b"<soort>matching</soort>" in render(replace(utrecht, house_id="vh-breda"))
    with pytest.raises(ValueError, match=r"^other_house: "):
        check_delivery(replace(delivery, kind="signal"))


def test_a_match_without_a_target_group_says_none() -> None:
    item = _match()
    item.match.target_group = marker_pb2.TARGET_GROUP_UNSPECIFIED
    delivery = to_delivery(item)
    assert delivery.other_house is not None and delivery.other_house.target_group is None
    check_delivery(delivery)


@pytest.mark.parametrize(
    ("tamper", "field"),
    [
        ("no match", "match"),
        ("no house", "match.house"),
        ("not a house name", "match.house"),
        ("no display name", "other_house.display_name"),
        ("no contact", "other_house.phone"),
        ("a case", "case_reference"),
        ("no record", "source_record_id"),
    ],
)
def test_a_malformed_match_is_refused_naming_the_field(tamper: str, field: str) -> None:
    item = _match()
    if tamper == "no match":
        item.ClearField("match")
    elif tamper == "no house":
        item.match.house = ""
    elif tamper == "not a house name":
        item.match.house = "vh-regio-utrecht-utrecht"
    elif tamper == "no display name":
        item.match.house_display_name = ""
    elif tamper == "no contact":
        item.match.ClearField("contact")
    elif tamper == "a case":
        item.case_reference = CASE
    else:
        item.source_record_id = ""
    with pytest.raises(ValueError, match=rf"^{field}: "):
        check_delivery(to_delivery(item))


def test_the_adapters_know_every_kind_the_contract_delivers() -> None:
    """One word per DeliveryKind of the wire, and the write-back takes every one of them."""
    from adapters.deliveries import KINDS
    from adapters.records import DELIVERY_KINDS

    assert sorted(KINDS.values()) == sorted(DELIVERY_KINDS)
