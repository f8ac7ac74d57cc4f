"""GCOS write-back: one terugkoppeling XML file per delivered item, exactly once, never half."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.gcos import GcosExport
from adapters.gcos.deliver import PARTIAL, deliver, file_name
from adapters.records import Delivery, OtherHouse, Person

CET = dt.timezone(dt.timedelta(hours=1))
OCCURRED = dt.datetime(2024, 11, 4, 14, 32, 10, tzinfo=CET)
BSN = "123456782"
PERSON = Person(bsn=BSN, surname="van der Berg", birth_date=dt.date(2006, 7, 4))

ROTTERDAM = OtherHouse(
    house_id="vh-rotterdam-rijnmond",
    display_name="Veiligheidshuis Rotterdam-Rijnmond",
    target_group="huiselijk_geweld",
    contact_role="Procesregisseur ZSM-contact",
    email="zsm@vhrr.example",
    phone="+31 10 999 0101",
    after_hours_phone="+31 10 999 0199",
)


def _delivery(kind: str = "decision", **changes: object) -> Delivery:
    base = Delivery(
        key="01JC2W6V0G4Y8N3QK5T7R9M2XB",
        house_id="vh-regio-utrecht-utrecht",
        kind=kind,
        case_reference="ZSM-2024-118822",
        occurred=OCCURRED,
        source_record_id=None if kind == "referral" else "100234",
        zsm_location="ZSM Midden-Nederland (Utrecht)",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _root(path: Path | None) -> ET.Element:
    assert path is not None
    return ET.parse(path).getroot()  # noqa: S314 (our own file, just written)


def _files(directory: Path) -> list[str]:
    """What the import sees, and what a crash left: everything but `.partial/` itself."""
    return sorted(name for name in os.listdir(directory) if name != PARTIAL)


def _assert_header(root: ET.Element, soort: str) -> None:
    assert root.tag == "gcos-terugkoppeling"
    assert root.get("veiligheidshuis") == "VHUTR"
    assert root.get("kenmerk") == "01JC2W6V0G4Y8N3QK5T7R9M2XB"
    assert root.get("aangemaakt") == "2024-11-04T14:32:10+01:00"
    assert root.findtext("soort") == soort
    assert root.findtext("zsm/locatie") == "ZSM Midden-Nederland (Utrecht)"
    assert root.findtext("zsm/zaak") == "ZSM-2024-118822"
    assert root.findtext("zsm/datum") == "2024-11-04"


def test_decision_writes_beslissing_with_advice_and_probation(tmp_path: Path) -> None:
    delivery = _delivery(
        decision="dagvaarding",
        decision_text="Dagvaarding",
        final=True,
        advice_followed=False,
        deviation_reason="Feit te ernstig voor ISD-traject & eerst <voorlopige> hechtenis.",
        probation_report_requested=True,
        minor=False,
        other_houses=1,
    )
    path = deliver(tmp_path, delivery)

    assert path == tmp_path / "terugkoppeling-01JC2W6V0G4Y8N3QK5T7R9M2XB.xml"
    assert path.read_bytes().startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = _root(path)
    _assert_header(root, "beslissing")
    assert root.findtext("clientnummer") == "100234"
    beslissing = root.find("beslissing")
    assert beslissing is not None
    assert beslissing.get("code") == "DAGVAARDING"
    assert beslissing.get("soort") == "AFDOENING"
    assert beslissing.text == "Dagvaarding"
    assert root.findtext("minderjarig") == "nee"
    assert root.findtext("advies/gevolgd") == "nee"
    assert root.findtext("advies/reden-afwijking") == (
        "Feit te ernstig voor ISD-traject & eerst <voorlopige> hechtenis."
    )
    assert root.findtext("andere-veiligheidshuizen") == "1"
    assert root.findtext("reclasseringsrapportage-gevraagd") == "ja"
    assert root.find("persoon") is None


def test_routing_decision_about_a_minor_without_text(tmp_path: Path) -> None:
    root = _root(deliver(tmp_path, _delivery(decision="halt", final=False, minor=True)))

    _assert_header(root, "beslissing")
    beslissing = root.find("beslissing")
    assert beslissing is not None
    assert beslissing.attrib == {"code": "HALT", "soort": "ROUTERING"}
    assert not beslissing.text
    assert root.findtext("minderjarig") == "ja"
    assert root.find("advies") is None
    assert root.find("reclasseringsrapportage-gevraagd") is None
    assert root.find("andere-veiligheidshuizen") is None  # not said


def test_a_decision_says_how_many_other_houses_heard_it_never_which(tmp_path: Path) -> None:
    alone = _root(deliver(tmp_path, _delivery(decision="halt", other_houses=0)))
    assert alone.findtext("andere-veiligheidshuizen") == "0"
    with pytest.raises(ValueError, match="other_houses"):
        deliver(
            tmp_path, _delivery(decision="halt", key="01JC2W6V0G4Y8N3QK5T7R9M2XC", other_houses=-1)
        )
    with pytest.raises(ValueError, match="other_houses"):
        deliver(tmp_path, _delivery("signal", key="01JC2W6V0G4Y8N3QK5T7R9M2XD", other_houses=1))


def test_sepot_02_feeds_back_only_that_the_person_was_dismissed(tmp_path: Path) -> None:
    delivery = _delivery(
        decision="sepot-02",
        decision_text="Sepot: onvoldoende bewijs",
        final=True,
        advice_followed=True,
        probation_report_requested=False,
        minor=False,
    )
    root = _root(deliver(tmp_path, delivery))

    _assert_header(root, "sepot")
    assert root.findtext("clientnummer") == "100234"
    assert [child.tag for child in root] == ["soort", "clientnummer", "zsm"]


def test_signal_names_the_houses_record(tmp_path: Path) -> None:
    root = _root(deliver(tmp_path, _delivery("signal")))

    _assert_header(root, "signaal")
    assert [child.tag for child in root] == ["soort", "clientnummer", "zsm"]
    assert root.findtext("clientnummer") == "100234"


def test_referral_carries_the_person_and_no_clientnummer(tmp_path: Path) -> None:
    delivery = _delivery(
        "referral",
        person=PERSON,
        referral_reason="Vermoeden van complexe problematiek: LVB, schulden.",
    )
    root = _root(deliver(tmp_path, delivery))

    _assert_header(root, "aanmelding")
    assert root.find("clientnummer") is None
    assert root.findtext("persoon/bsn") == BSN
    assert root.findtext("persoon/achternaam") == "van der Berg"
    assert root.findtext("persoon/geboortedatum") == "2006-07-04"
    assert root.findtext("reden") == "Vermoeden van complexe problematiek: LVB, schulden."


def test_advice_request_carries_the_term(tmp_path: Path) -> None:
    due = dt.datetime(2024, 11, 5, 14, 32, 10, tzinfo=CET)
    root = _root(deliver(tmp_path, _delivery("advice-request", due=due)))

    _assert_header(root, "adviesaanvraag")
    assert root.findtext("clientnummer") == "100234"
    termijn = root.find("termijn")
    assert termijn is not None
    assert termijn.get("tot") == "2024-11-05T14:32:10+01:00"


def test_a_withdrawn_advice_request_names_the_request(tmp_path: Path) -> None:
    withdrawn = _delivery("advice-request-cancelled", advice_request="adviceRequests/abc123")
    root = _root(deliver(tmp_path, withdrawn))

    _assert_header(root, "adviesaanvraag-ingetrokken")
    assert root.findtext("clientnummer") == "100234"
    assert root.findtext("adviesaanvraag") == "adviceRequests/abc123"
    assert root.find("termijn") is None and root.find("vraag") is None


def _match(**changes: object) -> Delivery:
    match = {"key": "mat-5f1c", "case_reference": "", "zsm_location": None}
    return _delivery("match", **(match | {"other_house": ROTTERDAM} | changes))


def test_match_names_the_other_house_whom_to_call_and_nothing_else(tmp_path: Path) -> None:
    path = deliver(tmp_path, _match(person=PERSON))
    root = _root(path)

    assert root.get("kenmerk") == "mat-5f1c"
    assert root.findtext("soort") == "matching"
    assert [child.tag for child in root] == ["soort", "clientnummer", "matching"]
    assert root.findtext("clientnummer") == "100234"
    matching = root.find("matching")
    assert matching is not None and matching.get("datum") == "2024-11-04"
    assert [child.tag for child in matching] == ["veiligheidshuis", "doelgroep", "contact"]
    house = matching.find("veiligheidshuis")
    assert house is not None and house.get("id") == "vh-rotterdam-rijnmond"
    assert house.text == "Veiligheidshuis Rotterdam-Rijnmond"
    assert matching.findtext("doelgroep") == "HG"  # the export's code
    assert {c.tag: c.text for c in matching.iterfind("contact/*")} == {
        "functie": "Procesregisseur ZSM-contact",
        "telefoon": "+31 10 999 0101",
        "telefoon-piket": "+31 10 999 0199",
        "email": "zsm@vhrr.example",
    }
    assert path is not None and BSN not in path.read_text(encoding="utf-8")
    # Once per key.
    assert deliver(tmp_path, _match()) is None
    assert _files(tmp_path) == ["terugkoppeling-mat-5f1c.xml"]


def test_a_match_without_target_group_leaves_it_out(tmp_path: Path) -> None:
    other = dataclasses.replace(ROTTERDAM, target_group=None, email=None)
    root = _root(deliver(tmp_path, _match(other_house=other)))
    assert root.find("matching/doelgroep") is None
    assert root.find("matching/contact/email") is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"other_house": None}, "other_house"),
        ({"other_house": dataclasses.replace(ROTTERDAM, house_id=" ")}, "other_house.house_id"),
        (
            {"other_house": dataclasses.replace(ROTTERDAM, display_name="")},
            "other_house.display_name",
        ),
        (
            {
                "other_house": dataclasses.replace(
                    ROTTERDAM, phone=None, after_hours_phone=None, email=None
                )
            },
            "other_house.phone",
        ),
        (
            {"other_house": dataclasses.replace(ROTTERDAM, target_group="onbekend")},
            "other_house.target_group",
        ),
        (
            {"other_house": dataclasses.replace(ROTTERDAM, display_name="VH\x00")},
            "other_house.display_name",
        ),
        ({"case_reference": "ZSM-2024-118822"}, "case_reference"),
        ({"source_record_id": None}, "source_record_id"),
    ],
)
def test_a_malformed_match_is_refused_naming_the_field(
    tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        deliver(tmp_path, _match(**changes))
    assert _files(tmp_path) == []


def test_only_a_match_names_another_house(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^other_house:"):
        deliver(tmp_path, _delivery("signal", other_house=ROTTERDAM))


@pytest.mark.parametrize("kind", ["decision", "signal", "advice-request"])
def test_no_bsn_or_person_data_outside_a_referral(tmp_path: Path, kind: str) -> None:
    delivery = _delivery(
        kind,
        person=PERSON,
        decision="strafbeschikking",
        due=OCCURRED + dt.timedelta(days=1),
    )
    path = deliver(tmp_path, delivery)

    assert path is not None
    content = path.read_text(encoding="utf-8")
    assert BSN not in content
    assert "Berg" not in content
    assert "2006-07-04" not in content
    assert _root(path).find("persoon") is None


def test_second_delivery_of_the_same_key_writes_nothing(tmp_path: Path) -> None:
    first = deliver(tmp_path, _delivery("signal"))
    assert first is not None
    written = first.read_bytes()

    assert deliver(tmp_path, _delivery("signal")) is None
    assert deliver(tmp_path, _delivery("signal", case_reference="other")) is None
    assert _files(tmp_path) == [first.name]
    assert first.read_bytes() == written


def test_different_keys_give_different_files(tmp_path: Path) -> None:
    deliver(tmp_path, _delivery("signal", key="a"))
    deliver(tmp_path, _delivery("signal", key="b"))

    assert _files(tmp_path) == ["terugkoppeling-a.xml", "terugkoppeling-b.xml"]


def test_leftover_temporary_file_of_a_crash_is_removed_and_the_item_written_once(
    tmp_path: Path,
) -> None:
    name = file_name("01JC2W6V0G4Y8N3QK5T7R9M2XB")
    partial = tmp_path / PARTIAL
    partial.mkdir()
    (partial / f"{name}.0123456789abcdef.tmp").write_bytes(b"<?xml version")
    other_key = partial / f"{file_name('other')}.0123456789abcdef.tmp"
    other_key.write_bytes(b"<?xml")

    path = deliver(tmp_path, _delivery("signal"))

    assert path is not None
    assert _files(tmp_path) == [name]
    # The other key's delivery may still be under way: its file is left alone.
    assert _files(partial) == [other_key.name]
    _assert_header(_root(path), "signaal")
    assert deliver(tmp_path, _delivery("signal")) is None
    assert _files(tmp_path) == [name]


def test_failed_rename_leaves_no_file_and_redelivery_writes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object) -> None:
        raise OSError("disk gone")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="disk gone"):
            deliver(tmp_path, _delivery("signal"))
    assert _files(tmp_path) == []

    path = deliver(tmp_path, _delivery("signal"))
    assert path is not None
    assert _files(tmp_path) == [path.name]


def test_file_is_synced_before_rename_and_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "fsync")
        real_fsync(descriptor)

    def replace(source: str, target: str) -> None:
        events.append("replace")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    deliver(tmp_path, _delivery("signal"))

    assert events == ["fsync", "replace", "fsync-dir"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"house_id": "vh-rotterdam-rijnmond"}, "house_id"),
        ({"kind": "sepot"}, "kind"),
        ({"decision": None}, "decision"),
        ({"decision": "  "}, "decision"),
        ({"decision": "sepot-01"}, "decision"),
        ({"decision": "dagvaarding", "source_record_id": None}, "source_record_id"),
        ({"decision": "dagvaarding", "occurred": OCCURRED.replace(tzinfo=None)}, "occurred"),
        ({"decision": "dagvaarding", "decision_text": "bel\x00"}, "decision_text"),
        ({"decision": "dagvaarding", "key": ""}, "key"),
        ({"kind": "referral", "person": None}, "person"),
        ({"kind": "referral", "person": PERSON, "source_record_id": "100234"}, "source_record_id"),
        ({"kind": "referral", "person": Person(None, None, None)}, "person"),
        ({"kind": "advice-request", "due": None}, "due"),
        ({"decision": "dagvaarding", "case_reference": ""}, "case_reference"),
    ],
)
def test_refuses_what_gcos_cannot_take(
    tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        deliver(tmp_path, _delivery(**changes))  # type: ignore[arg-type]
    assert _files(tmp_path) == []


def test_technisch_sepot_01_is_refused_before_any_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^decision:"):
        deliver(tmp_path, _delivery(decision="SEPOT-01 "))
    assert _files(tmp_path) == []


def test_unsafe_key_is_sanitised_with_a_hash_and_kept_whole_in_the_file(tmp_path: Path) -> None:
    key = "../etc/passwd & <x>"
    path = deliver(tmp_path, _delivery("signal", key=key))

    assert path is not None
    assert path.parent == tmp_path
    assert re.fullmatch(r"terugkoppeling-___etc_passwd____x_\.[0-9a-f]{16}\.xml", path.name)
    assert _root(path).get("kenmerk") == key
    assert deliver(tmp_path, _delivery("signal", key=key)) is None


def test_file_is_not_read_as_an_export(tmp_path: Path) -> None:
    """GcosExport refuses the terugkoppeling root, so a mixed-up folder never turns it into
    markers."""
    path = deliver(tmp_path, _delivery("signal"))
    assert path is not None
    items = list(GcosExport().read(path))
    assert len(items) == 1
    assert getattr(items[0], "incomplete", False)


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_file_names_are_safe_and_unique_per_key(first: str, second: str) -> None:
    names = {file_name(first), file_name(second)}
    assert len(names) == (1 if first == second else 2)
    for name in names:
        assert re.fullmatch(r"terugkoppeling-[A-Za-z0-9_-]{1,64}(\.[0-9a-f]{16})?\.xml", name)


def test_an_enrichment_request_carries_the_person_instead_of_a_clientnummer(
    tmp_path: Path,
) -> None:
    enrichment = _delivery(
        "advice-request",
        source_record_id=None,
        due=OCCURRED + dt.timedelta(days=2),
        question="Is het gezin bij jullie in beeld?",
        person=PERSON,
        referral_reason="verrijkingsverzoek; triagecriteria: huiselijk geweld",
    )
    root = _root(deliver(tmp_path, enrichment))
    _assert_header(root, "adviesaanvraag")
    assert root.find("clientnummer") is None
    assert (root.findtext("persoon/bsn"), root.findtext("persoon/achternaam")) == (
        BSN,
        "van der Berg",
    )
    assert root.findtext("reden") == "verrijkingsverzoek; triagecriteria: huiselijk geweld"
    assert root.findtext("vraag") == "Is het gezin bij jullie in beeld?"
    with pytest.raises(ValueError, match=r"^person: "):
        deliver(tmp_path / "other", dataclasses.replace(enrichment, key="k2", person=None))
