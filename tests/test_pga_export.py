"""The PGA/A&T export adapter: fixture files in, source records and bad records out."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.pga import PgaExport
from adapters.pga.export import AT_FIELDS
from adapters.pga.write import seal
from adapters.records import BadRecord, Person, SourceFormat, SourceRecord

FIXTURES = Path(__file__).parent / "fixtures" / "pga"


def _read(path: Path) -> list[SourceRecord | BadRecord]:
    return list(PgaExport().read(path))


def _records(items: list[SourceRecord | BadRecord]) -> list[SourceRecord]:
    return [item for item in items if isinstance(item, SourceRecord)]


def _bad(items: list[SourceRecord | BadRecord]) -> list[BadRecord]:
    return [item for item in items if isinstance(item, BadRecord)]


def test_is_a_source_format_for_the_pga_party() -> None:
    export: SourceFormat = PgaExport()
    assert (export.source_system, export.party) == ("pga", "adapter-pga")


def test_export_with_bom_crlf_and_blank_lines_reads_every_registration_in_order() -> None:
    items = _read(FIXTURES / "export.jsonl")

    assert _bad(items) == []
    assert [(r.record_id, r.where) for r in _records(items)] == [
        ("AT-2024-000101", "export.jsonl:1"),
        ("AT-2024-000102", "export.jsonl:3"),
        ("AT-2024-000117", "export.jsonl:4"),
        ("AT-2023-004711", "export.jsonl:6"),
        ("4812", "export.jsonl:7"),
    ]


def test_maps_a_registration_field_by_field() -> None:
    jansen = _records(_read(FIXTURES / "export.jsonl"))[0]

    assert jansen == SourceRecord(
        record_id="AT-2024-000101",
        house_id="vh-rotterdam-rijnmond",
        # Trailing whitespace is trimmed; voornamen and woonplaats are not carried.
        person=Person(bsn="111222333", surname="Jansen", birth_date=dt.date(1994, 3, 12)),
        target_group="veelpleger",
        plan_status="active",
        mark_date=dt.date(2024, 2, 5),
        advice="Bij nieuw feit: dagvaarden met vordering ISD-maatregel; procesregisseur VH bellen.",
        advice_date=dt.date(2024, 9, 17),
        # openstaande_zaken has a supplier but empty text: absent.
        at_information={
            "detention_history": "3x kort detentie 2021-2023 (PI Rotterdam)",
            "antecedents": "14 winkeldiefstallen, 2 inbraken auto",
        },
        where="export.jsonl:1",
    )


def test_person_without_bsn_and_without_advice() -> None:
    bakker = _records(_read(FIXTURES / "export.jsonl"))[1]

    assert bakker.house_id == "vh-zuid-holland-zuid"
    assert bakker.person == Person(bsn=None, surname="Bakker", birth_date=dt.date(1987, 11, 30))
    assert (bakker.target_group, bakker.plan_status) == ("huiselijk_geweld", "in_preparation")
    assert (bakker.advice, bakker.advice_date) == (None, None)
    assert bakker.at_information == {"administrative_measures": "Huisverbod 10 dagen (sept. 2024)"}


def test_tussenvoegsel_goes_before_the_surname_and_all_seven_at_fields_map() -> None:
    van_der_berg = _records(_read(FIXTURES / "export.jsonl"))[2]

    assert van_der_berg.person.surname == "van der Berg"
    assert (van_der_berg.target_group, van_der_berg.plan_status) == ("hit", "aftercare")
    assert van_der_berg.at_information == {
        "detention_history": "JJI Den Hey-Acker 2023, 4 maanden",
        "antecedents": "2 straatroven, 1 overval",
        "open_cases": "Zaak straatroof 2024 ligt bij OvJ",
        "compulsory_education": "Voortijdig schoolverlater, RMC-traject",
        "administrative_measures": "Gebiedsverbod Rotterdam-Zuid",
        "care_deployed": "Jongerenwerker, schuldhulp",
        "supervisions": "Jeugdreclassering WSG loopt tot 2025",
    }


def test_missing_bsn_key_null_at_item_and_rvdk_supervision() -> None:
    yildiz = _records(_read(FIXTURES / "export.jsonl"))[3]

    assert yildiz.person.bsn is None
    assert yildiz.person.surname == "Yıldız"
    assert (yildiz.target_group, yildiz.plan_status) == ("jeugd", "closed")
    assert yildiz.at_information == {
        "compulsory_education": "Verzuim gemeld bij leerplichtambtenaar",
        "supervisions": "OTS afgesloten 2022",
    }


def test_numeric_id_and_bsn_lower_case_code_and_top600() -> None:
    de_vries = _records(_read(FIXTURES / "export.jsonl"))[4]

    assert de_vries.record_id == "4812"
    # A BSN exported as a JSON number lost its leading zero.
    assert de_vries.person.bsn == "012345672"
    assert de_vries.person.surname == "de Vries"
    assert de_vries.house_id == "vh-rotterdam-rijnmond"
    assert (de_vries.target_group, de_vries.plan_status) == ("top_x", "active")
    assert de_vries.at_information == {}


def test_bad_export_reports_every_bad_line_and_reads_on() -> None:
    items = _read(FIXTURES / "bad.jsonl")

    assert [r.record_id for r in _records(items)] == [
        "AT-2024-000200",
        "AT-2024-000209",
        "AT-2024-000219",
    ]
    bad = [(b.where, b.record_id, b.reason) for b in _bad(items)]
    expected = [
        ("bad.jsonl:2", "AT-2024-000201", "invalid JSON"),
        ("bad.jsonl:3", None, "not a JSON object: the line holds a JSON array"),
        ("bad.jsonl:4", "AT-2024-000203", "datum_aanmelding: missing"),
        ("bad.jsonl:5", None, "registratie_id: missing"),
        ("bad.jsonl:6", "AT-2024-000205", "veiligheidshuis: not a known value"),
        ("bad.jsonl:8", "AT-2024-000207", "doelgroep: not a known value"),
        ("bad.jsonl:9", "AT-2024-000208", "status_pva: not a known value"),
        ("bad.jsonl:11", "AT-2024-000210", "datum_aanmelding: not a date (expected YYYY-MM-DD)"),
        ("bad.jsonl:12", "AT-2024-000211", "geboortedatum: not a date (no such day)"),
        ("bad.jsonl:13", "AT-2024-000212", "advies_datum: not a date"),
        ("bad.jsonl:14", "AT-2024-000214", "encoding: not UTF-8 (0xc7 at byte 94 of the line)"),
        ("bad.jsonl:15", "AT-2024-000215", "achternaam: expected a string"),
        (
            "bad.jsonl:16",
            "AT-2024-000216",
            "wat_informatie.detentieverleden.leverancier: not a supplier of this field",
        ),
        ("bad.jsonl:17", "AT-2024-000217", "wat_informatie.antecedenten.leverancier: missing"),
        ("bad.jsonl:18", "AT-2024-000218", "wat_informatie.schuldhulp: not an A&T field"),
        ("bad.jsonl:20", None, "not a JSON object: the line holds a JSON null"),
    ]
    assert len(bad) == len(expected)
    for (where, record_id, reason), (want_where, want_id, want_reason) in zip(
        bad, expected, strict=True
    ):
        assert (where, record_id) == (want_where, want_id)
        assert want_reason in reason


def test_bad_dates_are_not_repeated_in_the_reason() -> None:
    """A broken birth date is still personal data: the sync report must not print it."""
    reasons = " ".join(b.reason for b in _bad(_read(FIXTURES / "bad.jsonl")))

    assert "1987-02-30" not in reasons
    assert "01-10-2024" not in reasons
    assert "elik" not in reasons


def test_bsn_validity_and_future_dates_are_left_to_the_framework() -> None:
    last = _records(_read(FIXTURES / "bad.jsonl"))[-1]

    assert last.person.bsn == "123456789"  # fails the 11-proef
    assert last.advice_date == dt.date(2099, 1, 1)


@pytest.mark.slow
def test_reads_a_100k_line_export_without_holding_it(tmp_path: Path) -> None:
    line = (FIXTURES / "export.jsonl").read_bytes().splitlines()[2]  # Bakker, no BOM
    export = tmp_path / "large.jsonl"
    with export.open("wb") as out:
        for n in range(100_000):
            out.write(line.replace(b"AT-2024-000102", b"AT-%d" % n) + b"\r\n")

    tracemalloc.start()
    try:
        count = sum(1 for item in PgaExport().read(export) if isinstance(item, SourceRecord))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 100_000
    assert export.stat().st_size > 40_000_000
    assert peak < 1_000_000


_FIELD_NAMES = [
    "registratie_id",
    "veiligheidshuis",
    "bsn",
    "achternaam",
    "tussenvoegsel",
    "geboortedatum",
    "doelgroep",
    "status_pva",
    "datum_aanmelding",
    "advies",
    "advies_datum",
    "wat_informatie",
    "tekst",
    "leverancier",
    *AT_FIELDS,
]
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(["VHRR", "Jeugd", "Actief", "2024-02-29", "DJI", "Gemeente", "RvdK"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(), children, max_size=8)
    ),
    max_leaves=20,
)
_LINE = st.one_of(
    st.text(),
    _JSON.map(json.dumps),
    _JSON.map(lambda value: json.dumps(value, ensure_ascii=False)[:-1]),
).filter(lambda text: "\n" not in text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINE, max_size=6), crlf=st.booleans())
def test_any_text_yields_one_item_per_non_blank_line_and_no_trailer_is_incomplete(
    tmp_path: Path, lines: list[str], crlf: bool
) -> None:
    export = tmp_path / "any.jsonl"
    # A BOM and an object first (a PGA export), so the generated lines are read as generated.
    end = "\r\n" if crlf else "\n"
    export.write_bytes(("\ufeff{}" + end + "".join(line + end for line in lines)).encode())

    *items, last = _read(export)

    # Blank as the reader counts it: ASCII white space only (a no-break space is text).
    non_blank = [n for n, line in enumerate(lines, start=2) if line.encode().strip()]
    assert [item.where for item in items] == [f"any.jsonl:{n}" for n in [1, *non_blank]]
    assert isinstance(last, BadRecord) and last.incomplete
    assert last.reason.startswith("trailer: missing")


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary().filter(lambda data: b"\n" not in data), newline=st.booleans())
def test_any_bytes_never_raise(tmp_path: Path, raw: bytes, newline: bool) -> None:
    export = tmp_path / "any.jsonl"
    export.write_bytes(b"\xef\xbb\xbf" + raw + (b"\n" if newline else b""))

    items = _read(export)

    assert isinstance(items[-1], BadRecord) and items[-1].incomplete


@pytest.mark.parametrize(
    ("doelgroep", "token"),
    [
        ("Veelpleger", "veelpleger"),
        ("ZAVP", "veelpleger"),
        ("HIC", "hit"),
        ("high  impact crime", "hit"),
        ("Huiselijk geweld", "huiselijk_geweld"),
        ("Jeugd", "jeugd"),
        ("Top X", "top_x"),
        ("Top600", "top_x"),
        ("Overig", "other"),
    ],
)
def test_doelgroep_spellings_map_to_target_groups(
    tmp_path: Path, doelgroep: str, token: str
) -> None:
    export = tmp_path / "one.jsonl"
    registration = {
        "registratie_id": "AT-1",
        "veiligheidshuis": "VHZHZ",
        "doelgroep": doelgroep,
        "status_pva": "Afgesloten",
        "datum_aanmelding": "2020-01-01",
    }
    export.write_text(json.dumps(registration) + "\n", encoding="utf-8")
    seal(export)

    [record] = _read(export)

    assert isinstance(record, SourceRecord)
    assert record.target_group == token
    assert record.person == Person(bsn=None, surname=None, birth_date=None)


def _sealed(tmp_path: Path, *registrations: dict[str, object]) -> Path:
    export = tmp_path / "sealed.jsonl"
    export.write_text("".join(json.dumps(r) + "\n" for r in registrations), encoding="utf-8")
    seal(export)
    return export


_ONE = {
    "registratie_id": "AT-1",
    "veiligheidshuis": "VHRR",
    "bsn": "111222333",
    "doelgroep": "Jeugd",
    "status_pva": "Actief",
    "datum_aanmelding": "2020-01-01",
}


def _incomplete(items: list[SourceRecord | BadRecord]) -> list[tuple[str, str]]:
    return [(b.where, b.reason) for b in _bad(items) if b.incomplete]


def test_an_export_with_its_trailer_proves_complete(tmp_path: Path) -> None:
    export = _sealed(tmp_path, _ONE, {**_ONE, "registratie_id": "AT-2"})

    items = _read(export)

    assert [r.record_id for r in _records(items)] == ["AT-1", "AT-2"]
    assert _bad(items) == []
    assert export.read_text().splitlines()[-1].startswith('{"einde_export": {"aantal_records": 2')


def test_an_empty_export_is_incomplete(tmp_path: Path) -> None:
    export = tmp_path / "empty.jsonl"
    export.write_bytes(b"")

    assert _incomplete(_read(export)) == [
        ("empty.jsonl:1", "trailer: missing '{\"einde_export\": ...}' (the export is empty)")
    ]


def test_an_export_cut_off_mid_line_is_incomplete(tmp_path: Path) -> None:
    data = _sealed(tmp_path, _ONE, {**_ONE, "registratie_id": "AT-2"}).read_bytes()
    export = tmp_path / "cut.jsonl"
    export.write_bytes(data[: data.index(b"AT-2") + 20])  # in the second registration

    items = _read(export)

    assert [r.record_id for r in _records(items)] == ["AT-1"]
    assert _incomplete(items) == [
        ("cut.jsonl:2", "line end: missing on the last line (the export is cut off)")
    ]


def test_an_export_cut_off_at_a_line_end_misses_its_trailer(tmp_path: Path) -> None:
    data = _sealed(tmp_path, _ONE, {**_ONE, "registratie_id": "AT-2"}).read_bytes()
    export = tmp_path / "cut.jsonl"
    export.write_bytes(data[: data.index(b"\n") + 1])

    assert _incomplete(_read(export)) == [
        ("cut.jsonl:2", "trailer: missing '{\"einde_export\": ...}' (is the export cut off?)")
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.replace(b'"aantal_records": 2', b'"aantal_records": 3'), "says 3 records"),
        (lambda d: d.replace(b"AT-2", b"AT-3"), "sha256 does not match"),
        (lambda d: d.replace(b'"sha256": "', b'"sha256": "x'), "64 lowercase hexadecimal"),
        (lambda d: d.replace(b'"einde_export": {', b'"einde_export": ["x"], "x": {'), "not {"),
        (lambda d: d + b'{"registratie_id": "AT-4"}\n', "after the trailer"),
        (lambda d: d[: d.rindex(b"\n")], "line end: missing"),  # the trailer's line end
    ],
    ids=["count", "checksum", "checksum-form", "form", "after-trailer", "trailer-cut"],
)
def test_a_trailer_that_does_not_prove_the_export_complete_makes_it_incomplete(
    tmp_path: Path, change: Callable[[bytes], bytes], reason: str
) -> None:
    export = _sealed(tmp_path, _ONE, {**_ONE, "registratie_id": "AT-2"})
    export.write_bytes(change(export.read_bytes()))

    incomplete = _incomplete(_read(export))

    assert len(incomplete) == 1 and reason in incomplete[0][1], incomplete


def test_an_amazone_csv_is_refused_as_a_whole(tmp_path: Path) -> None:
    export = tmp_path / "amazone.csv"
    export.write_bytes((FIXTURES.parent / "amazone" / "export.csv").read_bytes())

    items = _read(export)

    assert [(b.where, b.incomplete) for b in _bad(items)] == [("amazone.csv:1", True)]
    assert _bad(items)[0].reason.startswith("not a PGA export")
    assert _records(items) == []


@pytest.mark.parametrize(
    ("line", "record_id", "key"),
    [
        ('{"registratie_id": "AT-1", "advies": "a", "advies": "b"}', "AT-1", "'advies'"),
        ('{"registratie_id": "AT-1", "registratie_id": "AT-2"}', None, "'registratie_id'"),
        (
            '{"registratie_id": "AT-1", "wat_informatie": {"antecedenten":'
            ' {"tekst": "a", "tekst": "b"}}}',
            "AT-1",
            "'tekst'",
        ),
        ('{"registratie_id": "AT-1", "111222333": 1, "111222333": 2}', "AT-1", "not a field"),
    ],
    ids=["field", "id", "nested", "odd-key"],
)
def test_a_registration_with_a_key_twice_is_refused_naming_line_and_key(
    tmp_path: Path, line: str, record_id: str | None, key: str
) -> None:
    export = tmp_path / "twice.jsonl"
    export.write_text(json.dumps(_ONE) + "\n" + line + "\n", encoding="utf-8")
    seal(export)

    items = _read(export)

    [bad] = _bad(items)
    assert (bad.where, bad.record_id, bad.incomplete) == ("twice.jsonl:2", record_id, False)
    assert bad.reason.startswith("duplicate key:") and key in bad.reason
    assert "111222333" not in bad.reason
    assert [r.record_id for r in _records(items)] == ["AT-1"]
