"""The ZSM suspects monitor: bytes in, inflow rows and bad records (by file:line and column)
out; a cut-off export yields its whole rows and says it is incomplete."""

from __future__ import annotations

import datetime as dt

from adapters.records import BadRecord, Person
from adapters.zsm.export import Decision, InflowRow, read_text
from adapters.zsm.write import cells, export_bytes, shift

START = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
HEADER_LINES = 1


def _row(**changes: str) -> list[str]:
    """One intake row as cells, with columns changed by name."""
    from adapters.zsm.export import COLUMNS

    base = InflowRow(
        where="",
        location="ZSM Midden-Nederland",
        case_reference="10-123456-26",
        arrest_time=START,
        person=Person("111222333", "Jansen", dt.date(1990, 5, 17)),
        minor=False,
        offence_category="winkeldiefstal",
        decision=None,
    )
    values = cells(base)
    for name, value in changes.items():
        values[COLUMNS.index(name.replace("_", " ").replace("ZSM locatie", "ZSM-locatie"))] = value
    return values


def _read(data: bytes) -> tuple[list[InflowRow], list[BadRecord]]:
    items = list(read_text("monitor.csv", data))
    return (
        [i for i in items if isinstance(i, InflowRow)],
        [i for i in items if isinstance(i, BadRecord)],
    )


def test_a_shift_round_trips_with_its_decisions_in_amsterdam_time() -> None:
    rows = shift(seed=3, start=START, count=20)
    read, bad = _read(export_bytes(rows))
    assert bad == []
    assert [(r.case_reference, r.person, r.minor, r.decision) for r in read] == [
        (r.case_reference, r.person, r.minor, r.decision) for r in rows
    ]
    assert [r.arrest_time for r in read] == [r.arrest_time for r in rows]
    assert read[0].where == "monitor.csv:2"


def test_a_decision_row_reads_code_stage_and_the_advice_line() -> None:
    data = export_bytes(
        [
            _row(
                Beslissing="Sepot",
                Sepotcode="02",
                Fase="Afdoening",
                **{"Advies opgevolgd": "nee", "Reden afwijking": "Geen bewijs voor de meldplicht."},
            ),
            _row(Beslissing="Technisch sepot", Fase="Afdoening"),
            _row(Beslissing="OM-strafbeschikking", Fase="routering"),
        ]
    )
    read, bad = _read(data)
    assert bad == []
    assert [r.decision for r in read] == [
        Decision("sepot", "02", "final", "not-followed", "Geen bewijs voor de meldplicht.", False),
        Decision("technisch-sepot-01", "", "final", None, None, False),
        Decision("strafbeschikking", "", "routing", None, None, False),
    ]


def test_bad_rows_are_named_by_line_and_column_and_never_by_their_value() -> None:
    data = export_bytes(
        [
            _row(),
            _row(Zaaknummer="111222333"),  # a BSN where the case number goes
            _row(Geboortedatum="31-02-1990"),
            _row(Leeftijd="volwassen"),
            _row(Beslissing="vrijspraak", Fase="Afdoening"),
            _row(Beslissing="Sepot", Fase="Afdoening"),
            _row(Fase="Afdoening"),
            _row(Feitcategorie="diefstal \x1b[2J"),
        ]
    )
    read, bad = _read(data)
    assert len(read) == 1
    assert [(b.where, b.record_id, b.reason) for b in bad] == [
        ("monitor.csv:3", None, "Zaaknummer: looks like a BSN (nine digits passing the "
         "11-proef): no personal data here"),
        ("monitor.csv:4", "10-123456-26", "Geboortedatum: not a date (no such day)"),
        ("monitor.csv:5", "10-123456-26", "Leeftijd: not meerderjarig or minderjarig"),
        ("monitor.csv:6", "10-123456-26", "Beslissing: not a known decision"),
        ("monitor.csv:7", "10-123456-26", "Sepotcode: a sepot needs its code, 02 to 99"),
        ("monitor.csv:8", "10-123456-26", "Fase: given without a Beslissing"),
        ("monitor.csv:9", "10-123456-26", "Feitcategorie: holds a control character (U+001B)"),
    ]  # fmt: skip
    assert not any("111222333" in b.reason or "1990" in b.reason for b in bad)


def test_a_cut_off_export_yields_its_whole_rows_and_says_it_is_incomplete() -> None:
    data = export_bytes(shift(seed=3, start=START, count=6, decided=0))
    cut = data[: data.index(b"ZSM-MN-030004") + 5]  # mid-way the fourth suspect's row
    read, bad = _read(cut)
    assert [r.case_reference for r in read] == ["ZSM-MN-030001", "ZSM-MN-030002", "ZSM-MN-030003"]
    assert [(b.where, b.incomplete) for b in bad] == [("monitor.csv:5", True)]
    assert "cut off" in bad[0].reason


def test_without_footer_or_with_a_wrong_count_the_rows_are_read_and_the_export_incomplete() -> None:
    rows = shift(seed=3, start=START, count=3, decided=0)
    read, bad = _read(export_bytes(rows, footer=False))
    assert len(read) == 3
    assert [b.reason for b in bad] == ["footer: missing 'Einde export;N' (is the export cut off?)"]
    wrong = export_bytes(rows).replace(b"Einde export;3", b"Einde export;4")
    read, bad = _read(wrong)
    assert len(read) == 3
    assert [b.reason for b in bad] == ["footer: says 4 rows, the export holds 3"]


def test_a_file_that_is_no_monitor_and_an_empty_one_read_nothing() -> None:
    read, bad = _read(b"registratie_id;bsn\r\nAT-1;111222333\r\n")
    assert read == []
    assert [(b.where, b.incomplete) for b in bad] == [("monitor.csv:1", True)]
    assert "not a ZSM suspects monitor" in bad[0].reason
    read, bad = _read(b"")
    assert read == []
    assert [b.reason for b in bad] == [
        "header: missing (the export is empty); nothing in it is read"
    ]


def test_rows_after_the_footer_are_not_read() -> None:
    data = export_bytes([_row()]) + export_bytes([_row(Zaaknummer="10-999999-26")])
    read, bad = _read(data)
    assert [r.case_reference for r in read] == ["10-123456-26"]
    assert bad[0].incomplete and bad[0].reason.startswith("after the footer")
