"""Write-back into PGA/A&T: feedback items in, A&T beslisrecords (JSON Lines) out, each once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from adapters.pga.deliver import beslisrecord, deliver
from adapters.records import Delivery, OtherHouse, Person

CET = dt.timezone(dt.timedelta(hours=1))
BSN = "123456782"
UTRECHT = OtherHouse(
    house_id="vh-regio-utrecht-utrecht",
    display_name="Veiligheidshuis Regio Utrecht",
    target_group="jeugd",
    contact_role="Procesregisseur ZSM-contact",
    email="zsm@vhu.example",
    phone="+31 30 999 0101",
    after_hours_phone="+31 30 999 0199",
)


def _delivery(kind: str = "decision", **changes: Any) -> Delivery:
    base = Delivery(
        key="fb-0001",
        house_id="vh-rotterdam-rijnmond",
        kind=kind,
        case_reference="ZSM-RR-2024-4711",
        occurred=dt.datetime(2024, 11, 4, 14, 32, tzinfo=CET),
        source_record_id="AT-2024-000101",
        zsm_location="ZSM Rotterdam",
        minor=False,
    )
    return dataclasses.replace(base, **changes)


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_decision_is_written_with_code_reasons_and_no_person(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    delivery = _delivery(
        decision="dagvaarding",
        decision_text="Dagvaarden politierechter, vordering ISD.",
        final=True,
        advice_followed=False,
        deviation_reason="Nieuw feit met geweld; ISD niet haalbaar.",
        other_houses=1,
        probation_report_requested=True,
        person=Person(BSN, "Jansen", dt.date(1994, 3, 12)),
    )

    assert deliver(path, delivery) is True

    assert _lines(path) == [
        {
            "kenmerk": "fb-0001",
            "registratie_id": "AT-2024-000101",
            "veiligheidshuis": "VHRR",
            "soort": "beslissing",
            "zsm_zaak": "ZSM-RR-2024-4711",
            "tijdstip": "2024-11-04T14:32:00+01:00",
            "zsm_locatie": "ZSM Rotterdam",
            "minderjarig": False,
            "beslissing": "dagvaarding",
            "toelichting": "Dagvaarden politierechter, vordering ISD.",
            "afdoening": True,
            "advies_gevolgd": False,
            "reden_afwijking": "Nieuw feit met geweld; ISD niet haalbaar.",
            "andere_veiligheidshuizen": 1,
            "reclasseringsadvies_gevraagd": True,
        }
    ]


def test_signal_carries_the_house_record_and_the_zsm_case_only(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"

    assert deliver(path, _delivery("signal", house_id="vh-zuid-holland-zuid", minor=True))

    (record,) = _lines(path)
    assert record == {
        "kenmerk": "fb-0001",
        "registratie_id": "AT-2024-000101",
        "veiligheidshuis": "VHZHZ",
        "soort": "signaal",
        "zsm_zaak": "ZSM-RR-2024-4711",
        "tijdstip": "2024-11-04T14:32:00+01:00",
        "zsm_locatie": "ZSM Rotterdam",
        "minderjarig": True,
    }


def _match(**changes: Any) -> Delivery:
    match = {"key": "mat-0001", "case_reference": "", "zsm_location": None, "minor": None}
    return _delivery("match", **(match | {"other_house": UTRECHT} | changes))


def test_match_names_the_other_house_whom_to_call_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"

    assert deliver(path, _match(person=Person(BSN, "Jansen", dt.date(1994, 3, 12))))
    assert not deliver(path, _match())  # once per kenmerk

    (record,) = _lines(path)
    assert record == {
        "kenmerk": "mat-0001",
        "registratie_id": "AT-2024-000101",
        "veiligheidshuis": "VHRR",
        "soort": "matching",
        "zsm_zaak": None,
        "tijdstip": "2024-11-04T14:32:00+01:00",
        "zsm_locatie": None,
        "minderjarig": None,
        "ander_veiligheidshuis": "vh-regio-utrecht-utrecht",
        "ander_veiligheidshuis_naam": "Veiligheidshuis Regio Utrecht",
        "ander_doelgroep": "Jeugd",
        "contact_functie": "Procesregisseur ZSM-contact",
        "contact_telefoon": "+31 30 999 0101",
        "contact_telefoon_piket": "+31 30 999 0199",
        "contact_email": "zsm@vhu.example",
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"other_house": None}, "other_house"),
        ({"other_house": dataclasses.replace(UTRECHT, house_id="")}, "other_house.house_id"),
        (
            {"other_house": dataclasses.replace(UTRECHT, house_id="vh-rotterdam-rijnmond")},
            "other_house.house_id",
        ),
        (
            {"other_house": dataclasses.replace(UTRECHT, display_name=" ")},
            "other_house.display_name",
        ),
        (
            {
                "other_house": dataclasses.replace(
                    UTRECHT, phone="", after_hours_phone=None, email=None
                )
            },
            "other_house.phone",
        ),
        (
            {"other_house": dataclasses.replace(UTRECHT, target_group="onbekend")},
            "other_house.target_group",
        ),
        ({"case_reference": "ZSM-RR-2024-4711"}, "case_reference"),
        ({"source_record_id": None}, "source_record_id"),
    ],
)
def test_a_malformed_match_is_refused_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    with pytest.raises(ValueError, match=rf"^{field}: "):
        deliver(path, _match(**changes))
    assert not path.exists()


def test_referral_carries_the_person_and_the_reason_but_no_house_record(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    delivery = _delivery(
        "referral",
        source_record_id=None,
        person=Person(BSN, "van der Berg", dt.date(2006, 7, 4)),
        referral_reason="Derde winkeldiefstal dit jaar, dakloos, verslaafd.",
    )

    assert deliver(path, delivery)

    (record,) = _lines(path)
    assert record["soort"] == "aanmelding"
    assert record["registratie_id"] is None
    assert (record["bsn"], record["achternaam"], record["geboortedatum"]) == (
        BSN,
        "van der Berg",
        "2006-07-04",
    )
    assert record["reden_aanmelding"] == "Derde winkeldiefstal dit jaar, dakloos, verslaafd."
    assert "beslissing" not in record


def test_referral_without_bsn_is_written_with_surname_and_birth_date(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    person = Person(None, "Bakker", dt.date(1987, 11, 30))

    assert deliver(path, _delivery("referral", source_record_id=None, person=person))

    (record,) = _lines(path)
    assert (record["bsn"], record["achternaam"], record["geboortedatum"]) == (
        None,
        "Bakker",
        "1987-11-30",
    )


def test_advice_request_carries_the_term(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    due = dt.datetime(2024, 11, 5, 14, 32, tzinfo=CET)

    assert deliver(path, _delivery("advice-request", due=due))

    (record,) = _lines(path)
    assert record["soort"] == "adviesaanvraag"
    assert record["registratie_id"] == "AT-2024-000101"
    assert record["termijn"] == "2024-11-05T14:32:00+01:00"
    assert "beslissing" not in record


def test_redelivery_of_an_item_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    first = _delivery(decision="halt", minor=True)
    second = _delivery(key="fb-0002", decision="sepot-02")

    assert deliver(path, first) is True
    assert deliver(path, second) is True
    before = path.read_bytes()

    assert deliver(path, first) is False
    assert deliver(path, dataclasses.replace(second, decision="dagvaarding")) is False

    assert path.read_bytes() == before
    assert [record["kenmerk"] for record in _lines(path)] == ["fb-0001", "fb-0002"]


def test_an_item_another_writer_appended_meanwhile_is_not_written_again(tmp_path: Path) -> None:
    # A delivery reads only the lines added since the last one: those of another writer too.
    path = tmp_path / "beslisrecords.jsonl"
    deliver(path, _delivery(decision="halt"))
    theirs = _delivery(key="fb-0002", decision="sepot-02")
    with path.open("ab") as other:
        other.write((json.dumps(beslisrecord(theirs)) + "\n").encode())

    assert deliver(path, theirs) is False
    assert deliver(path, _delivery(key="fb-0003", decision="dagvaarding")) is True
    assert [record["kenmerk"] for record in _lines(path)] == ["fb-0001", "fb-0002", "fb-0003"]


def test_a_file_replaced_by_the_import_is_read_anew(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    first = _delivery(decision="halt")
    deliver(path, first)
    deliver(path, _delivery(key="fb-0002", decision="sepot-02"))
    # The A&T import took the file and left a new, longer one with lines of its own.
    kept = [_delivery(key=f"fb-000{n}", decision="dagvaarding") for n in (5, 6, 7)]
    fresh = tmp_path / "fresh.jsonl"
    fresh.write_text("".join(json.dumps(beslisrecord(d)) + "\n" for d in kept), encoding="utf-8")
    fresh.replace(path)

    assert [deliver(path, d) for d in kept] == [False, False, False]
    assert deliver(path, first) is True
    keys = [record["kenmerk"] for record in _lines(path)]
    assert keys == ["fb-0005", "fb-0006", "fb-0007", "fb-0001"]


def test_line_cut_off_by_a_crash_is_dropped_and_the_item_written_once(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    earlier = _delivery(key="fb-0000", decision="strafbeschikking")
    item = _delivery(decision="dagvaarding")
    deliver(path, earlier)
    whole = path.read_bytes()
    deliver(path, item)
    # A crash during the append: only the start of the item's line reached the disk.
    path.write_bytes(path.read_bytes()[: len(whole) + 40])

    assert deliver(path, item) is True
    assert deliver(path, item) is False

    records = _lines(path)
    assert [record["kenmerk"] for record in records] == ["fb-0000", "fb-0001"]
    assert records[1]["beslissing"] == "dagvaarding"


def test_cut_off_line_of_another_item_is_dropped_too(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    path.write_bytes(b'{"kenmerk": "fb-0009", "soort": "besl')

    assert deliver(path, _delivery(decision="halt"))

    assert [record["kenmerk"] for record in _lines(path)] == ["fb-0001"]


def test_file_with_a_bom_and_foreign_lines_is_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"kenmerk": "fb-0001"}\n[1, 2]\nnot json\n')

    assert deliver(path, _delivery(decision="halt")) is False
    assert deliver(path, _delivery(key="fb-0002", decision="halt")) is True

    assert path.read_bytes().endswith(b'"reclasseringsadvies_gevraagd": null}\n')


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"house_id": "vh-regio-utrecht"}, "house_id"),
        ({"kind": "feedback"}, "kind"),
        ({"key": " "}, "key"),
        ({"case_reference": ""}, "case_reference"),
        ({"decision": None}, "decision"),
        ({"decision": "  "}, "decision"),
        ({"decision": "sepot-01"}, "decision"),
        ({"decision": "Technisch sepot 01"}, "decision"),
        ({"decision": "halt", "source_record_id": None}, "source_record_id"),
        ({"decision": "halt", "occurred": dt.datetime(2024, 11, 4, 14, 32)}, "occurred"),
        ({"kind": "signal", "source_record_id": None}, "source_record_id"),
        ({"kind": "referral", "source_record_id": None}, "person"),
        (
            {"kind": "referral", "source_record_id": None, "person": Person(None, "Jansen", None)},
            "person",
        ),
        ({"kind": "referral", "person": Person(BSN, None, None)}, "source_record_id"),
        ({"kind": "advice-request"}, "due"),
        (
            {"kind": "advice-request", "due": dt.datetime(2024, 11, 5, 14, 32)},
            "due",
        ),
    ],
)
def test_delivery_pga_cannot_take_is_refused_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    path.write_bytes(b'{"kenmerk": "fb-0000"}\n{"kenmerk": "fb-00')

    with pytest.raises(ValueError, match=rf"^{field}: "):
        deliver(path, _delivery(**changes))

    assert path.read_bytes() == b'{"kenmerk": "fb-0000"}\n{"kenmerk": "fb-00'


def test_refusal_does_not_repeat_the_person(tmp_path: Path) -> None:
    delivery = _delivery("referral", source_record_id=None, person=Person(None, "Jansen", None))

    with pytest.raises(ValueError, match="person") as refused:
        deliver(tmp_path / "beslisrecords.jsonl", delivery)

    assert "Jansen" not in str(refused.value)
    assert not (tmp_path / "beslisrecords.jsonl").exists()


@pytest.mark.parametrize("kind", ["decision", "signal", "advice-request"])
def test_bsn_and_name_are_written_only_for_a_referral(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "beslisrecords.jsonl"
    delivery = _delivery(
        kind,
        decision="halt",
        due=dt.datetime(2024, 11, 5, 14, 32, tzinfo=CET),
        person=Person(BSN, "Jansen", dt.date(1994, 3, 12)),
        referral_reason="Meer dan 10 antecedenten.",
    )

    deliver(path, delivery)

    text = path.read_text(encoding="utf-8")
    assert BSN not in text
    assert "Jansen" not in text
    assert "1994-03-12" not in text
    (record,) = _lines(path)
    assert not {"bsn", "achternaam", "geboortedatum", "reden_aanmelding"} & record.keys()


def test_a_withdrawn_advice_request_names_the_request(tmp_path: Path) -> None:
    path = tmp_path / "beslis.jsonl"
    withdrawn = _delivery("advice-request-cancelled", advice_request="adviceRequests/abc123")
    assert deliver(path, withdrawn)
    [line] = _lines(path)
    assert line["soort"] == "adviesaanvraag-ingetrokken"
    assert line["adviesaanvraag"] == "adviceRequests/abc123"
    assert line["registratie_id"] == "AT-2024-000101"
    assert "termijn" not in line and "vraag" not in line


def test_an_enrichment_request_carries_the_person_and_why_but_no_house_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "beslis.jsonl"
    due = dt.datetime(2024, 11, 5, 14, 32, tzinfo=CET)
    enrichment = _delivery(
        "advice-request",
        source_record_id=None,
        due=due,
        question="Is het gezin bij jullie in beeld?",
        person=Person(BSN, "Jansen", dt.date(1994, 3, 12)),
        referral_reason="verrijkingsverzoek; triagecriteria: huiselijk geweld",
    )
    assert deliver(path, enrichment)
    [line] = _lines(path)
    assert (line["soort"], line["registratie_id"]) == ("adviesaanvraag", None)
    assert (line["bsn"], line["achternaam"], line["geboortedatum"]) == (
        BSN,
        "Jansen",
        "1994-03-12",
    )
    assert line["reden_aanmelding"] == "verrijkingsverzoek; triagecriteria: huiselijk geweld"
    assert line["termijn"] == "2024-11-05T14:32:00+01:00"
    # Without the person, or without why, an advice request without a record is refused.
    for missing, field in (
        ({"person": None}, "person"),
        ({"referral_reason": None}, "referral_reason"),
    ):
        with pytest.raises(ValueError, match=rf"^{field}: "):
            deliver(
                tmp_path / "other.jsonl", dataclasses.replace(enrichment, key="fb-9", **missing)
            )
    assert not (tmp_path / "other.jsonl").exists()


def test_the_withdrawal_of_an_enrichment_request_names_only_the_request(tmp_path: Path) -> None:
    path = tmp_path / "beslis.jsonl"
    withdrawn = _delivery(
        "advice-request-cancelled", source_record_id=None, advice_request="adviceRequests/abc"
    )
    assert deliver(path, withdrawn)
    [line] = _lines(path)
    assert (line["soort"], line["registratie_id"]) == ("adviesaanvraag-ingetrokken", None)
    assert line["adviesaanvraag"] == "adviceRequests/abc"
