"""The GCOS export adapter: fixture files in, source records and bad records out; the writer."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.framework import Adapter
from adapters.gcos import GcosExport, write_export
from adapters.gcos.export import HOUSES, PLAN_STATUSES, TARGET_GROUPS
from adapters.records import BadRecord, Person, SourceFormat, SourceRecord
from adapters.state import State
from baken.clock import FixedClock
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2

FIXTURES = Path(__file__).parent / "fixtures" / "gcos"
NOT_DISCUSSED = "overleggen: not discussed in a casusoverleg yet"


def _read(path: Path) -> list[SourceRecord | BadRecord]:
    return list(GcosExport().read(path))


def _records(items: list[SourceRecord | BadRecord]) -> list[SourceRecord]:
    return [item for item in items if isinstance(item, SourceRecord)]


def _bad(items: list[SourceRecord | BadRecord]) -> list[BadRecord]:
    return [item for item in items if isinstance(item, BadRecord)]


def _export(
    tmp_path: Path, persons: str, root: str = '<gcos-export veiligheidshuis="VHZLD">'
) -> Path:
    export = tmp_path / "one.xml"
    text = f'<?xml version="1.0" encoding="UTF-8"?>\n{root}\n{persons}\n</gcos-export>\n'
    export.write_text(text, encoding="utf-8")
    return export


def _person(doelgroep: str = "HG", status: str = "ACT") -> str:
    return (
        f"<persoon><clientnummer>7</clientnummer><doelgroep>{doelgroep}</doelgroep>"
        '<overleggen><overleg datum="2024-01-08"/></overleggen>'
        f"<plan-van-aanpak><status>{status}</status></plan-van-aanpak></persoon>"
    )


def test_is_a_source_format_for_the_gcos_party() -> None:
    export: SourceFormat = GcosExport()
    assert (export.source_system, export.party) == ("gcos", "adapter-gcos")


def test_house_codes_name_exactly_the_gcos_houses() -> None:
    gcos = {h.id for h in load_houses().values() if h.source_system == house_pb2.SOURCE_SYSTEM_GCOS}

    assert sorted(HOUSES.values()) == sorted(gcos)


def test_reads_every_person_in_order_at_the_line_of_its_start_tag() -> None:
    items = _read(FIXTURES / "export.xml")

    assert _bad(items) == []
    assert [(r.record_id, r.where) for r in _records(items)] == [
        ("100234", "export.xml:4"),
        ("100311", "export.xml:25"),
        ("100412", "export.xml:40"),
        ("098877", "export.xml:57"),
        ("100590", "export.xml:73"),
    ]
    assert {r.house_id for r in _records(items)} == {"vh-regio-utrecht-utrecht"}


def test_maps_a_person_field_by_field() -> None:
    jansen = _records(_read(FIXTURES / "export.xml"))[0]

    assert jansen == SourceRecord(
        record_id="100234",
        house_id="vh-regio-utrecht-utrecht",
        # Trailing whitespace trimmed; voorletters are not carried.
        person=Person(bsn="111222333", surname="Jansen", birth_date=dt.date(1994, 3, 12)),
        target_group="veelpleger",
        plan_status="active",
        # Three meetings: known since the first.
        mark_date=dt.date(2024, 2, 5),
        # The indented scenario text, each line trimmed.
        advice="Bij nieuw feit: dagvaarden met vordering ISD-maatregel.\n"
        "Procesregisseur VH bellen (030-0000000).",
        advice_date=dt.date(2024, 9, 17),
        where="export.xml:4",
    )


def test_person_without_bsn_and_with_an_empty_scenario() -> None:
    bakker = _records(_read(FIXTURES / "export.xml"))[1]

    assert bakker.person == Person(bsn=None, surname="Bakker", birth_date=dt.date(1987, 11, 30))
    assert (bakker.target_group, bakker.plan_status) == ("huiselijk_geweld", "in_preparation")
    assert (bakker.mark_date, bakker.advice, bakker.advice_date) == (
        dt.date(2024, 10, 1),
        None,
        None,
    )


def test_tussenvoegsel_goes_before_the_surname() -> None:
    berg = _records(_read(FIXTURES / "export.xml"))[2]

    assert berg.person.surname == "van der Berg"
    assert (berg.target_group, berg.plan_status) == ("hit", "aftercare")
    assert berg.mark_date == dt.date(2023, 5, 22)


def test_old_record_with_dutch_dates_and_meetings_out_of_order() -> None:
    celik = _records(_read(FIXTURES / "export.xml"))[3]

    assert celik.record_id == "098877"
    assert celik.person == Person(bsn="012345672", surname="Çelik", birth_date=dt.date(1979, 8, 9))
    assert (celik.target_group, celik.plan_status) == ("veelpleger", "closed")
    # 11-03-2013 is listed before 14-01-2013; the first meeting is the earlier one.
    assert celik.mark_date == dt.date(2013, 1, 14)
    assert celik.advice_date == dt.date(2013, 3, 11)


def test_lower_case_codes_cdata_entities_and_unread_elements() -> None:
    jeugd = _records(_read(FIXTURES / "export.xml"))[4]

    assert jeugd.record_id == "100590"
    assert jeugd.person == Person(bsn="999999990", surname=None, birth_date=None)
    assert (jeugd.target_group, jeugd.plan_status) == ("jeugd", "active")
    assert jeugd.mark_date == dt.date(2024, 4, 15)
    assert jeugd.advice == (
        "Halt-waardig feit: Halt & Straf.\n"
        "Anders: jeugdreclassering (SAVE) om advies vragen & VH informeren."
    )
    assert jeugd.advice_date == dt.date(2024, 8, 26)


def test_bad_export_reports_every_bad_person_and_reads_on() -> None:
    items = _read(FIXTURES / "bad.xml")

    # Hoëvenaars (200214) is read from an ISO-8859-1 file; 200217 follows the broken element.
    assert [r.record_id for r in _records(items)] == ["200200", "200214", "200215"]
    assert _records(items)[1].person.surname == "Hoëvenaars"
    bad = [(b.where, b.record_id, b.reason) for b in _bad(items)]
    expected = [
        ("bad.xml:18", None, "clientnummer: missing"),
        ("bad.xml:31", None, "clientnummer: missing"),
        ("bad.xml:45", "200203", "doelgroep: missing"),
        ("bad.xml:58", "200204", "doelgroep: not a known code"),
        ("bad.xml:72", "200205", "plan-van-aanpak/status: not a known code"),
        ("bad.xml:85", "200206", "plan-van-aanpak/status: missing"),
        ("bad.xml:95", "200207", "geboortedatum: not a date (no such day)"),
        ("bad.xml:109", "200208", "overleggen/overleg/@datum: not a date (expected YYYY-MM-DD"),
        ("bad.xml:123", "200209", "overleggen/overleg/@datum: missing"),
        ("bad.xml:138", "200210", NOT_DISCUSSED),
        ("bad.xml:150", "200211", NOT_DISCUSSED),
        ("bad.xml:161", "200212", "plan-van-aanpak/scenario-zsm/@datum: not a date (no such day)"),
        ("bad.xml:175", "200213", "bsn: appears 2 times"),
        # Not well-formed from here on: the line where parsing broke, the open person's id.
        ("bad.xml:220", "200216", "XML: mismatched tag at column 23"),
    ]
    assert len(bad) == len(expected)
    for (where, record_id, reason), (want_where, want_id, want_reason) in zip(
        bad, expected, strict=True
    ):
        assert (where, record_id) == (want_where, want_id)
        assert want_reason in reason
    # Only the break makes the export incomplete: a bad person is just that person.
    assert [b.incomplete for b in _bad(items)] == [False] * 13 + [True]


def test_bad_dates_and_names_are_not_repeated_in_the_reason() -> None:
    """A broken birth date is still personal data: the sync report must not print it."""
    reasons = " ".join(b.reason for b in _bad(_read(FIXTURES / "bad.xml")))

    for value in ("30-02-1987", "2024/10/01", "17-13-2024", "Smit", "111222333"):
        assert value not in reasons


def test_bsn_validity_and_future_dates_are_left_to_the_framework() -> None:
    last = _records(_read(FIXTURES / "bad.xml"))[-1]

    assert last.person.bsn == "123456789"  # fails the 11-proef
    assert last.advice_date == dt.date(2099, 1, 1)


def test_a_container_twice_is_a_bad_record(tmp_path: Path) -> None:
    twice = _person().replace("</persoon>", "<plan-van-aanpak/></persoon>")

    [bad] = _read(_export(tmp_path, twice))

    assert bad == BadRecord("one.xml:3", "7", "plan-van-aanpak: appears 2 times")


def test_the_framework_syncs_the_fixtures_and_reports_every_bad_person(
    tmp_path: Path, ring: KeyRing
) -> None:
    """Through the shared framework (a fake registry that accepts everything): what the adapter
    leaves to the framework is caught there, the rest becomes markers of the right houses, and
    an export that breaks off (bad.xml as it is, then a house export cut off) changes nothing."""
    sent: list[marker_pb2.MarkerChange] = []

    def send(
        changes: Sequence[marker_pb2.MarkerChange],
    ) -> registry_service_pb2.SyncMarkersResponse:
        sent.extend(changes)
        return registry_service_pb2.SyncMarkersResponse()

    exports = [tmp_path / "export.xml", tmp_path / "bad.xml"]
    for export in exports:
        export.write_bytes((FIXTURES / export.name).read_bytes())
    state = State(tmp_path / "gcos.state.db")
    adapter = Adapter(
        GcosExport(),
        ring=ring,
        state=state,
        houses=load_houses(),
        clock=FixedClock(dt.datetime(2024, 11, 4, 12, tzinfo=dt.UTC)),
        send=send,
    )
    try:
        broken = adapter.sync(exports)
        # bad.xml without the person whose tags mismatch: well-formed to its end.
        bad = exports[1].read_bytes()
        start = bad.index(b"<persoon>\n    <clientnummer>200216")
        exports[1].write_bytes(bad[:start] + bad[bad.index(b"</persoon>", start) + 12 :])
        first = adapter.sync(exports)
        text = exports[0].read_text(encoding="utf-8")
        second = text.index("<persoon>", text.index("<persoon>") + 1)
        exports[0].write_text(text[:second], encoding="utf-8")
        cut_off = adapter.sync(exports)
    finally:
        state.close()

    assert broken.refused and "bad.xml:220: XML: mismatched tag" in broken.refused
    assert (broken.new, broken.deleted) == (0, 0)
    assert first.summary() == "new 8, changed 0, deleted 0, unchanged 0, rejected 14"
    # Future dates (and the 11-proef) are the framework's.
    [future] = [p for p in first.problems if p.where == "bad.xml:204"]
    assert (future.record_id, future.reason.split(":")[0]) == ("200215", "advice date")
    assert {(c.upsert.house, c.upsert.source_record_id) for c in sent} >= {
        ("houses/vh-breda", "200214"),
        ("houses/vh-regio-utrecht-utrecht", "100590"),
    }
    # Only Jansen is left before the cut; the other four Utrecht persons keep their markers.
    assert cut_off.refused and cut_off.refused.startswith("the export cannot prove it is")
    assert (cut_off.deleted, cut_off.unchanged, cut_off.rejected) == (0, 4, 15)
    assert len(sent) == 8


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE gcos-export [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>',
        '<!DOCTYPE gcos-export SYSTEM "file:///etc/passwd">',
    ],
)
def test_a_doctype_refuses_the_whole_file(tmp_path: Path, doctype: str) -> None:
    export = tmp_path / "doctype.xml"
    export.write_text(
        f'<?xml version="1.0"?>\n{doctype}\n<gcos-export veiligheidshuis="VHUTR">\n'
        f"{_person().replace('HG', '&b;')}\n</gcos-export>\n",
        encoding="utf-8",
    )

    [bad] = _read(export)

    assert bad == BadRecord(
        "doctype.xml:2",
        None,
        "DOCTYPE: not allowed in a GCOS export; nothing in the file is read",
        incomplete=True,
    )


@pytest.mark.parametrize(
    ("root", "reason"),
    [
        ('<gcos-export veiligheidshuis="VHDH">', "veiligheidshuis: not a known code"),
        ('<gcos-export veiligheidshuis=" ">', "veiligheidshuis: missing"),
        ("<gcos-export>", "veiligheidshuis: missing"),
        ('<amazone-export veiligheidshuis="VHUTR">', "root element: not gcos-export"),
    ],
)
def test_a_file_without_a_known_house_is_one_bad_record(
    tmp_path: Path, root: str, reason: str
) -> None:
    [bad] = _read(_export(tmp_path, _person(), root))

    assert (bad.where, bad.record_id, bad.incomplete) == ("one.xml:2", None, True)
    assert reason in bad.reason


@pytest.mark.parametrize(
    ("code", "house_id"), [("VHUTR", "vh-regio-utrecht-utrecht"), (" vhboz ", "vh-markiezaten")]
)
def test_house_code_is_read_case_insensitively(tmp_path: Path, code: str, house_id: str) -> None:
    [record] = _read(_export(tmp_path, _person(), f'<gcos-export veiligheidshuis="{code}">'))

    assert isinstance(record, SourceRecord)
    assert record.house_id == house_id


@pytest.mark.parametrize(("doelgroep", "token"), list(TARGET_GROUPS.items()))
def test_doelgroep_codes_map_to_target_groups(tmp_path: Path, doelgroep: str, token: str) -> None:
    [record] = _read(_export(tmp_path, _person(doelgroep=doelgroep.lower())))

    assert isinstance(record, SourceRecord)
    assert record.target_group == token


@pytest.mark.parametrize(("status", "token"), list(PLAN_STATUSES.items()))
def test_status_codes_map_to_plan_statuses(tmp_path: Path, status: str, token: str) -> None:
    [record] = _read(_export(tmp_path, _person(status=status)))

    assert isinstance(record, SourceRecord)
    assert record.plan_status == token


def test_a_namespace_and_prefixes_are_read_past(tmp_path: Path) -> None:
    text = (FIXTURES / "export.xml").read_text(encoding="utf-8")
    namespaced = tmp_path / "export.xml"
    namespaced.write_text(
        text.replace("<gcos-export ", '<g:gcos-export xmlns:g="urn:gcos:export:2" g:')
        .replace("</gcos-export>", "</g:gcos-export>")
        .replace("<persoon>", "<g:persoon>")
        .replace("</persoon>", "</g:persoon>"),
        encoding="utf-8",
    )

    assert _read(namespaced) == _read(FIXTURES / "export.xml")


@pytest.mark.parametrize("encoding", ["UTF-16", "windows-1252", "ISO-8859-1"])
def test_the_declared_encoding_and_crlf_line_ends_are_honoured(
    tmp_path: Path, encoding: str
) -> None:
    text = (FIXTURES / "export.xml").read_text(encoding="utf-8")
    other = tmp_path / "export.xml"
    other.write_bytes(
        text.replace('encoding="UTF-8"', f'encoding="{encoding}"')
        .replace("\n", "\r\n")
        .encode(encoding)
    )

    assert _read(other) == _read(FIXTURES / "export.xml")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "XML: no element found"),
        (b'<?xml version="1.0" encoding="UTF-7"?>\n<gcos-export/>', "encoding: the declared"),
        (b'<?xml version="1.0" encoding="x-gcos"?>\n<gcos-export/>', "encoding: the declared"),
        (b'<?xml version="1.0" encoding="cp037"?>\n<gcos-export/>', "encoding: the declared"),
        (b'<gcos-export veiligheidshuis="VHZLD">\xff</gcos-export>', "XML: not well-formed"),
    ],
)
def test_an_unreadable_file_is_one_bad_record(tmp_path: Path, content: bytes, reason: str) -> None:
    export = tmp_path / "broken.xml"
    export.write_bytes(content)

    [bad] = _read(export)

    assert (bad.where, bad.record_id, bad.incomplete) == ("broken.xml:1", None, True)
    assert reason in bad.reason


# The writer.

_WORD = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn", "Co", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=8,
)
_LINE = st.lists(_WORD, min_size=1, max_size=4).map(" ".join)
_ADVICE = st.lists(_LINE | st.just(""), min_size=1, max_size=4).map("\n".join)
_RECORD = st.builds(
    SourceRecord,
    record_id=st.from_regex(r"[0-9A-Z][0-9A-Z-]{0,11}", fullmatch=True),
    house_id=st.just("vh-almere"),
    person=st.builds(
        Person,
        bsn=st.none() | st.from_regex(r"[0-9]{9}", fullmatch=True),
        surname=st.none() | _LINE,
        birth_date=st.none() | st.dates(),
    ),
    target_group=st.sampled_from(sorted(set(TARGET_GROUPS.values()))),
    plan_status=st.sampled_from(sorted(PLAN_STATUSES.values())),
    mark_date=st.dates(),
    advice=st.none() | _ADVICE.filter(lambda text: text.strip() == text != ""),
    advice_date=st.none() | st.dates(),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_RECORD, max_size=5))
def test_written_export_reads_back_as_written(tmp_path: Path, records: list[SourceRecord]) -> None:
    export = tmp_path / "vhalm.xml"

    write_export(export, "vh-almere", records, exported=dt.datetime(2024, 11, 4, 6, 0))

    read = _read(export)
    assert [dataclasses.replace(r, where="") for r in _records(read)] == records
    assert _bad(read) == []


def test_writer_produces_the_documented_format(tmp_path: Path) -> None:
    export = tmp_path / "vhbrd.xml"
    bakker = _records(_read(FIXTURES / "export.xml"))[1]

    write_export(export, "vh-breda", [dataclasses.replace(bakker, house_id="vh-breda")])

    assert export.read_text(encoding="utf-8") == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gcos-export veiligheidshuis="VHBRD">\n'
        "  <persoon>\n"
        "    <clientnummer>100311</clientnummer>\n"
        "    <achternaam>Bakker</achternaam>\n"
        "    <geboortedatum>1987-11-30</geboortedatum>\n"
        "    <doelgroep>HG</doelgroep>\n"
        "    <overleggen>\n"
        '      <overleg datum="2024-10-01"/>\n'
        "    </overleggen>\n"
        "    <plan-van-aanpak>\n"
        "      <status>VRB</status>\n"
        "    </plan-van-aanpak>\n"
        "  </persoon>\n"
        "</gcos-export>\n"
    )


@pytest.mark.parametrize(
    ("house_id", "change", "message"),
    [
        ("vh-rotterdam-rijnmond", {}, "does not keep its markers in GCOS"),
        ("vh-breda", {}, "belongs to 'vh-regio-utrecht-utrecht'"),
        ("vh-regio-utrecht-utrecht", {"at_information": {"antecedents": "x"}}, "no A&T"),
        ("vh-regio-utrecht-utrecht", {"target_group": "radicalisering"}, "unknown token"),
        ("vh-regio-utrecht-utrecht", {"advice": "bel\x00"}, "XML 1.0 cannot carry"),
    ],
)
def test_writer_refuses_what_the_format_cannot_hold(
    tmp_path: Path, house_id: str, change: dict[str, object], message: str
) -> None:
    jansen = _records(_read(FIXTURES / "export.xml"))[0]

    with pytest.raises(ValueError, match=message):
        write_export(tmp_path / "x.xml", house_id, [dataclasses.replace(jansen, **change)])


# Anything a house may send.

_TEXT = st.sampled_from(
    ["", " ", "100234", "111222333", "1994-03-12", "12-03-1994", "30-02-2001", "HG", "vp", "act"]
) | st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn")), max_size=12)
_FIELDS = ("clientnummer", "bsn", "achternaam", "tussenvoegsel", "geboortedatum", "doelgroep")
_PERSON = st.fixed_dictionaries(
    {"meetings": st.none() | st.lists(st.none() | _TEXT, max_size=3)},
    optional=dict.fromkeys((*_FIELDS, "status", "scenario", "scenario_datum", "x"), _TEXT),
)


def _render(person: dict[str, object]) -> list[str]:
    lines = ["  <persoon>"]
    lines += [f"    <{n}>{escape(str(person[n]))}</{n}>" for n in _FIELDS if n in person]
    if "x" in person:
        lines.append(f"    <x><clientnummer>{escape(str(person['x']))}</clientnummer></x>")
    meetings = person["meetings"]
    if isinstance(meetings, list):
        lines.append("    <overleggen>")
        for day in meetings:
            lines.append(
                "      <overleg/>" if day is None else f"      <overleg datum={quoteattr(day)}/>"
            )
        lines.append("    </overleggen>")
    lines.append("    <plan-van-aanpak>")
    if "status" in person:
        lines.append(f"      <status>{escape(str(person['status']))}</status>")
    if "scenario" in person:
        datum = person.get("scenario_datum")
        attribute = "" if datum is None else f" datum={quoteattr(str(datum))}"
        lines.append(
            f"      <scenario-zsm{attribute}>{escape(str(person['scenario']))}</scenario-zsm>"
        )
    lines += ["    </plan-van-aanpak>", "  </persoon>"]
    return lines


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(persons=st.lists(_PERSON, max_size=5))
def test_any_person_yields_one_item_at_its_line(
    tmp_path: Path, persons: list[dict[str, object]]
) -> None:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<gcos-export veiligheidshuis="VHMBR">']
    starts = []
    for person in persons:
        starts.append(len(lines) + 1)
        lines += _render(person)
    export = tmp_path / "any.xml"
    export.write_text("\n".join([*lines, "</gcos-export>", ""]), encoding="utf-8")

    items = _read(export)

    assert [item.where for item in items] == [f"any.xml:{n}" for n in starts]


_HEADER = b'<?xml version="1.0" encoding="UTF-8"?>\n<gcos-export veiligheidshuis="VHMBR">\n'


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from([b"", _HEADER, _HEADER + b"<persoon><clientnummer>1"]), raw=st.binary()
)
def test_any_bytes_never_raise(tmp_path: Path, prefix: bytes, raw: bytes) -> None:
    export = tmp_path / "any.xml"
    export.write_bytes(prefix + raw)

    items = _read(export)

    assert all(isinstance(item, SourceRecord | BadRecord) for item in items)
    assert all(item.where.startswith("any.xml:") for item in items)


@pytest.mark.slow
def test_reads_a_100k_person_export_without_holding_it(tmp_path: Path) -> None:
    bakker = _records(_read(FIXTURES / "export.xml"))[1]
    export = tmp_path / "large.xml"
    write_export(
        export,
        bakker.house_id,
        (dataclasses.replace(bakker, record_id=str(n)) for n in range(100_000)),
    )

    tracemalloc.start()
    try:
        count = sum(1 for item in GcosExport().read(export) if isinstance(item, SourceRecord))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 100_000
    assert export.stat().st_size > 30_000_000
    assert peak < 1_000_000
