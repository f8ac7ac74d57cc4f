"""Surnames as Dutch registers spell them: abbreviated ("v.d. Berg", "vd Berg", "i.t. Veld") and
sorted ("Berg, v.d.") tussenvoegsels give the key of the full form, in every adapter and at the
ZSM desk; full-form spellings keep the key they had; different surnames stay apart."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from builders import NOW, TODAY, Person, subject
from harness import RunningRegistry
from hypothesis import assume, given
from hypothesis import strategies as st
from test_source_round_trips import sync_args

from adapters.amazone import AmazoneExport
from adapters.amazone.export import COLUMNS
from adapters.gcos import GcosExport
from adapters.pga import PgaExport
from adapters.pga.write import seal
from adapters.records import SourceFormat, SourceRecord
from baken.client import RegistryClient
from baken.clock import FixedClock
from baken.keyring import KeyRing
from baken.pseudonym import (
    TUSSENVOEGSELS,
    name_birth_date_pseudonyms,
    normalise_surname,
)
from baken.registry.v1 import registry_service_pb2 as pb
from baken.type.v1 import pseudonym_pb2
from cli.main import main

BORN = dt.date(2006, 7, 4)


# --- the key as it was made before abbreviations were read --------------------------------------

_BEFORE_UNDECOMPOSABLE = str.maketrans(
    {"ı": "i", "ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ŧ": "t"}
    | {"æ": "ae", "œ": "oe", "þ": "th"}
)


def _words(surname: str) -> list[str]:
    decomposed = unicodedata.normalize("NFKD", surname)
    ascii_letters = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return re.findall(r"[a-z]+", ascii_letters.replace("ß", "ss").translate(_BEFORE_UNDECOMPOSABLE))


def _key_before(surname: str) -> str:
    """normalise_surname as deployed before this change (with the same particle list)."""
    words = _words(surname)
    return "".join([w for w in words if w not in TUSSENVOEGSELS] or words)


def _abbreviated(surname: str) -> bool:
    """Whether `surname` holds an abbreviated particle: "v.", "vd", "i.t.", "i.d.", "v.h."..."""
    words = _words(surname)
    pairs = set(itertools.pairwise(words))
    abbreviated_pairs = {("v", "h")} | {
        ("i", a) for a in ("t", "het", "h", "d", "de", "den", "der")
    }
    return bool({"v", "vd"} & set(words)) or bool(pairs & abbreviated_pairs)


_NAME_WORDS = ["Berg", "Broek", "Veld", "Vries", "Bilt", "Hondt", "Ancona", "Os", "Jansen", "Çelik"]
_OTHER_PARTICLES = [*sorted(TUSSENVOEGSELS), "'t", "'s", "d'", "l'"]


@given(
    st.lists(
        st.sampled_from(_NAME_WORDS + _OTHER_PARTICLES + ["h", "i", "vdb", "vanderbilt"])
        | st.from_regex(r"\A[A-Za-z]{1,8}\Z"),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.sampled_from([" ", ", ", "-", ".", "/", "'", ". "]), min_size=5, max_size=5),
    st.booleans(),
)
def test_a_surname_without_an_abbreviated_particle_keeps_the_key_it_had(
    words: list[str], separators: list[str], upper: bool
) -> None:
    written = "".join(w + s for w, s in zip(words, separators, strict=False)).strip()
    written = written.upper() if upper else written
    assume(_words(written) and not _abbreviated(written))
    assert normalise_surname(written) == _key_before(written)


@pytest.mark.parametrize("text", ["van der Berg", "Vanderbilt", "d'Ancona", "in 't Veld", "Van"])
def test_the_reference_is_the_key_as_pinned(text: str) -> None:
    # The reference above is what test_pseudonyms pins the deployed pseudonyms of.
    assert _key_before(text) == normalise_surname(text)


# --- abbreviated and sorted spellings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "full"),
    [
        # "v.d." and its variants: van der, van den or van de; the key does not say which.
        ("v.d. Berg", "van der Berg"),
        ("v.d. Berg", "van den Berg"),
        ("v.d. Berg", "van de Berg"),
        ("V.D. Berg", "van der Berg"),
        ("v.d.Berg", "van der Berg"),
        ("v. d. Berg", "van der Berg"),
        ("vd Berg", "van der Berg"),
        ("Vd. Berg", "van der Berg"),
        ("v/d Berg", "van der Berg"),
        ("V/D BERG", "van der Berg"),
        ("v.den Berg", "van den Berg"),
        ("v. der Berg", "van der Berg"),
        ("v. Dijk", "van Dijk"),
        ("V Dijk", "van Dijk"),
        ("v.h. Hof", "van het Hof"),
        ("v. 't Hof", "van 't Hof"),
        ("'t Hart", "het Hart"),
        ("i.t. Veld", "in 't Veld"),
        ("i.t. Veld", "in het Veld"),
        ("I.T. VELD", "in 't Veld"),
        ("i.h. Veld", "in het Veld"),
        ("i.d. Betou", "in de Betou"),
        # The sorted form of registers: surname first, particles after a comma, or after it.
        ("Broek, v.d.", "van den Broek"),
        ("Broek, van den", "van den Broek"),
        ("Broek van den", "van den Broek"),
        ("Broek v/d", "van den Broek"),
        ("Veld, i.t.", "in 't Veld"),
        # Capitals and spacing.
        ("Van Der Broek", "van der Broek"),
        ("van  der   Broek", "van der Broek"),
        ("v.d.Broek", "van den Broek"),
        # Double names: each part loses its particles.
        ("Janssen-v.d. Berg", "Janssen-van der Berg"),
    ],
)
def test_an_abbreviated_or_sorted_spelling_gives_the_key_of_the_full_form(
    written: str, full: str
) -> None:
    assert normalise_surname(written) == normalise_surname(full)


_ABBREVIATIONS = {
    "van der": ["v.d.", "v.d", "vd", "vd.", "v/d", "v. d.", "v.der"],
    "van den": ["v.d.", "vd", "v/d", "v.den", "v. den"],
    "van de": ["v.d.", "vd", "v/d", "v. de"],
    "van": ["v.", "v"],
    "van het": ["v.h.", "v. 't", "v.'t"],
    "in 't": ["i.t.", "i 't", "i. 't"],
    "in het": ["i.t.", "i.h."],
    "in de": ["i.d.", "i. de"],
}


@given(
    st.sampled_from(sorted(_ABBREVIATIONS)).flatmap(
        lambda full: st.tuples(st.just(full), st.sampled_from(_ABBREVIATIONS[full]))
    ),
    st.from_regex(r"\A[A-Za-z]{2,12}\Z").filter(
        lambda w: w.lower() not in TUSSENVOEGSELS and w.lower() != "vd"
    ),
    st.sampled_from(["{p} {s}", "{p}{s}", "{s}, {p}", "{s} {p}"]),
    st.sampled_from([str, str.upper, str.lower, str.title]),
)
def test_any_abbreviation_in_any_order_and_case_gives_the_key_of_the_full_form(
    particle: tuple[str, str], core: str, order: str, case: object
) -> None:
    full, abbreviation = particle
    if order == "{p}{s}" and abbreviation[-1].isalpha():
        order = "{p} {s}"  # "vdBerg" is one word: a joined name, not an abbreviation
    written = order.format(p=abbreviation, s=core)
    assert callable(case)
    assert normalise_surname(case(written)) == normalise_surname(f"{full} {core}")


# --- different surnames stay apart --------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # A particle written joined to the surname is part of it, as it always was.
        ("Vanderbilt", "van der Bilt"),
        ("Vanderbilt", "v.d. Bilt"),
        ("Vandenberg", "v.d. Berg"),
        ("Vdberg", "vd Berg"),
        ("Vos", "v. Os"),
        ("Dhondt", "d'Hondt"),
        ("Intveld", "i.t. Veld"),
        # A lone "i" or "h" is no particle: only "i.t.", "i.d.", "i.h." and "v.h." are.
        ("Li I", "Li"),
        ("H Berg", "Berg"),
    ],
)
def test_different_surnames_keep_different_keys(one: str, other: str) -> None:
    assert normalise_surname(one) != normalise_surname(other)


def test_d_apostrophe_is_a_particle_also_where_a_register_counts_it_to_the_surname() -> None:
    # Decided, not overlooked: "d'" was always left out of the key ("d'Ancona" is pinned in
    # test_pseudonyms), so every spelling with it matches the bare surname, and keys stay put.
    assert {
        normalise_surname(s) for s in ["d'Ancona", "D'Ancona", "d' Ancona", "D\u2019Ancona"]
    } == {normalise_surname("Ancona")}
    assert normalise_surname("d'Hondt") == normalise_surname("Hondt")


def test_a_surname_of_abbreviations_only_keeps_its_letters() -> None:
    assert normalise_surname("V.") == "v"
    assert normalise_surname("v.d.") == "vd"


# --- each source's spelling habits, and the desk ------------------------------------------------


def _gcos(tmp_path: Path, achternaam: str, tussenvoegsel: str) -> Path:
    export = tmp_path / "gcos.xml"
    export.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<gcos-export veiligheidshuis="VHUTR">\n'
        f"<persoon><clientnummer>7</clientnummer><achternaam>{achternaam}</achternaam>"
        f"<tussenvoegsel>{tussenvoegsel}</tussenvoegsel>"
        f"<geboortedatum>{BORN.isoformat()}</geboortedatum><doelgroep>HIC</doelgroep>"
        '<overleggen><overleg datum="2024-01-08"/></overleggen>'
        "<plan-van-aanpak><status>ACT</status>"
        '<scenario-zsm datum="2024-01-08">Voorgeleiden.</scenario-zsm></plan-van-aanpak>'
        "</persoon>\n</gcos-export>\n",
        encoding="utf-8",
    )
    return export


def _amazone(tmp_path: Path, achternaam: str, tussenvoegsel: str) -> Path:
    values = dict.fromkeys(COLUMNS, "") | {
        "Registratienummer": "AMZ-1",
        "Achternaam": achternaam,
        "Tussenvoegsel": tussenvoegsel,
        "Geboortedatum": BORN.strftime("%d-%m-%Y"),
        "Veiligheidshuis": "VHTW",
        "Doelgroep": "High Impact Crime",
        "Status": "actief",
        "Datum markering": "01-10-2024",
        "Slagzin": "Voorgeleiden.",
    }
    row = ";".join(f'"{v}"' if ";" in v or "," in v else v for v in values.values())
    lines = [";".join(COLUMNS) + ";", row + ";", "Aantal records: 1"]
    export = tmp_path / "amazone.csv"
    export.write_bytes("".join(line + "\r\n" for line in lines).encode("cp1252"))
    return export


def _pga(tmp_path: Path, achternaam: str, tussenvoegsel: str) -> Path:
    registration = {
        "registratie_id": "AT-1",
        "veiligheidshuis": "VHRR",
        "achternaam": achternaam,
        "tussenvoegsel": tussenvoegsel,
        "geboortedatum": BORN.isoformat(),
        "doelgroep": "High Impact Crime",
        "status_pva": "Actief",
        "datum_aanmelding": "2024-02-05",
        "advies": "Voorgeleiden.",
        "advies_datum": "2024-02-05",
    }
    export = tmp_path / "pga.jsonl"
    export.write_text(json.dumps(registration) + "\n", encoding="utf-8")
    seal(export)
    return export


# How each source writes "van der Berg" in the registers seen: GCOS in full, Amazone sorted or
# abbreviated (in the Achternaam cell, or in the Tussenvoegsel cell), PGA abbreviated.
SPELLINGS: dict[
    str, tuple[Callable[[Path, str, str], Path], SourceFormat, list[tuple[str, str]]]
] = {
    "gcos": (_gcos, GcosExport(), [("Berg", "van der"), ("Berg", "v.d."), ("Berg, van der", "")]),
    "amazone": (
        _amazone,
        AmazoneExport(),
        [("Berg, v.d.", ""), ("Berg", "v.d."), ("v.d. Berg", ""), ("BERG", "V/D")],
    ),
    "pga": (_pga, PgaExport(), [("Berg", "vd"), ("Berg", "v/d"), ("Berg v.d.", "")]),
}
WRITTEN = [
    pytest.param(system, achternaam, tussenvoegsel, id=f"{system}:{achternaam}|{tussenvoegsel}")
    for system, (_, _, spellings) in SPELLINGS.items()
    for achternaam, tussenvoegsel in spellings
]


def _name_pseudonym(ring: KeyRing, surname: str | None) -> bytes:
    assert surname is not None
    [pseudonym] = name_birth_date_pseudonyms(ring, surname, BORN, today=TODAY)
    return pseudonym.value


def _desk_pseudonym(ring: KeyRing, surname: str) -> bytes:
    """The ZSM client library's pseudonym (it sends nothing to make it)."""
    channel = grpc.insecure_channel("127.0.0.1:1")
    try:
        desk = RegistryClient(channel, ring, on_behalf_of="zsm-0042", clock=FixedClock(NOW))
        [pseudonym] = desk.subject(surname=surname, birth_date=BORN).pseudonyms
    finally:
        channel.close()
    assert pseudonym.kind == pseudonym_pb2.PSEUDONYM_KIND_NAME_BIRTH_DATE
    return pseudonym.value


@pytest.mark.parametrize(("system", "achternaam", "tussenvoegsel"), WRITTEN)
def test_each_source_spelling_gives_the_name_pseudonym_the_desk_makes_for_v_d_berg(
    tmp_path: Path, system: str, achternaam: str, tussenvoegsel: str
) -> None:
    write, source, _ = SPELLINGS[system]
    [record] = list(source.read(write(tmp_path, achternaam, tussenvoegsel)))
    assert isinstance(record, SourceRecord), record
    ring = KeyRing({"k1": bytes(range(32))})

    made = _name_pseudonym(ring, record.person.surname)

    assert made == _desk_pseudonym(ring, "V.D. Berg") == _desk_pseudonym(ring, "van der Berg")


# --- end to end: three houses, three spellings, one look-up -------------------------------------


@pytest.fixture
def keys(tmp_path: Path, ring: KeyRing) -> KeyRing:
    ring.save(tmp_path / "edge-keys.json")
    return ring


def test_a_look_up_by_abbreviated_name_finds_the_markers_of_every_house(
    registry: RunningRegistry, keys: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Measured before: GCOS's "van der Berg" and Amazone's "Berg, v.d." gave two keys, and a
    # look-up by surname + birth date found the GCOS marker only.
    exports = {
        "gcos": _gcos(tmp_path, "Berg", "van der"),
        "amazone": _amazone(tmp_path, "Berg, v.d.", ""),
        "pga": _pga(tmp_path, "Berg", "vd"),
    }
    for system, export in exports.items():
        assert main(sync_args(registry, system, [export], tmp_path)) == 0
        assert "new 1, changed 0, deleted 0, unchanged 0, rejected 0" in capsys.readouterr().out

    desk = RegistryClient(registry.channel, keys, on_behalf_of="zsm-0042", clock=registry.clock)
    for written in ["V.D. Berg", "van der Berg", "Berg, van den", "v/d Berg"]:
        response = desk.lookup(surname=written, birth_date=BORN)

        assert response.outcome == pb.LOOKUP_OUTCOME_HIT, written
        assert sorted((m.house.name, m.source_record_id) for m in response.markers) == [
            ("houses/vh-regio-utrecht-utrecht", "7"),
            ("houses/vh-rotterdam-rijnmond", "AT-1"),
            ("houses/vh-twente", "AMZ-1"),
        ], written
    # The desk's CLI (`baken lookup`) pseudonymises through the same library.
    code = main(
        ["lookup", "--registry", f"127.0.0.1:{registry.port}", "--pki-dir", str(registry.pki_dir),
         "--key-file", str(tmp_path / "edge-keys.json"), "--surname", "Berg, v/d",
         "--birth-date", BORN.isoformat(), "--user", "zsm-0042",
         "--party", "zsm-midden-nederland-kpc", "--json"]
    )  # fmt: skip
    out = "\n" + capsys.readouterr().out
    assert code == 0
    answer = json.loads(out[out.index("\n{\n") :])  # after the in-process registry's log lines
    assert sorted(m["house"]["name"] for m in answer["markers"]) == [
        "houses/vh-regio-utrecht-utrecht",
        "houses/vh-rotterdam-rijnmond",
        "houses/vh-twente",
    ]
    # Same letters, another person: the joined form is not "van der Berg".
    other = registry.lookup(subject(keys, Person(surname="Vanderberg", birth_date=BORN)))
    assert other.outcome == pb.LOOKUP_OUTCOME_NO_HIT
