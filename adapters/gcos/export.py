"""The GCOS export: one XML file per Safety House with the persons discussed in a casusoverleg
(format in README.md), and a writer of the same format for synthetic data and benchmarks."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from xml.parsers import expat

from adapters.records import BadRecord, Person, SourceRecord

CHUNK = 1 << 16

# GCOS organisation code of the Safety House (root attribute veiligheidshuis) -> house id in
# baken/houses.toml.
HOUSES: Mapping[str, str] = {
    "VHUTR": "vh-regio-utrecht-utrecht",
    "VHAMF": "vh-regio-utrecht-amersfoort",
    "VHALM": "vh-almere",
    "VHGVS": "vh-gooi-en-vechtstreek",
    "VHBRD": "vh-breda",
    "VHBOZ": "vh-markiezaten",
    "VHZLD": "vh-zeeland",
    "VHMBR": "vh-midden-brabant",
}

# doelgroep code -> TargetGroup token. The first code of a token is the one the writer uses.
TARGET_GROUPS: Mapping[str, str] = {
    "VP": "veelpleger",
    "ZAVP": "veelpleger",
    "SD": "veelpleger",
    "HIC": "hit",
    "HG": "huiselijk_geweld",
    "JGD": "jeugd",
    "TOPX": "top_x",
    "OVR": "other",
}

# plan-van-aanpak/status code -> PlanStatus token.
PLAN_STATUSES: Mapping[str, str] = {
    "VRB": "in_preparation",
    "ACT": "active",
    "NAZ": "aftercare",
    "AFG": "closed",
}

MEETING_DATE = "overleggen/overleg/@datum"
STATUS = "plan-van-aanpak/status"
SCENARIO = "plan-van-aanpak/scenario-zsm"
SCENARIO_DATE = f"{SCENARIO}/@datum"

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}|([0-9]{2})-([0-9]{2})-([0-9]{4})")
_UNKNOWN_ENCODING = expat.errors.codes[expat.errors.XML_ERROR_UNKNOWN_ENCODING]
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _Bad(Exception):
    """One problem with one person; the message names the field and never repeats personal data."""


class _Stop(Exception):
    """A problem with the whole file: nothing after it is read, so the export is incomplete."""

    def __init__(self, bad: BadRecord) -> None:
        super().__init__(bad.reason)
        self.bad = bad


class GcosExport:
    """The XML export of GCOS, one file per Safety House (Midden-Nederland, Zeeland-West-Brabant).
    A problem with the file itself (not well-formed from some point, a DOCTYPE, no known house,
    an unsupported encoding) ends it as one BadRecord marked incomplete."""

    source_system = "gcos"
    party = "adapter-gcos"

    def read(self, path: Path) -> Iterator[SourceRecord | BadRecord]:
        reader = _Reader(path.name)
        with path.open("rb") as export:
            while True:
                chunk = export.read(CHUNK)
                problem = reader.feed(chunk, final=not chunk)
                for line, person in reader.take():
                    yield _person(person, f"{path.name}:{line}", reader.house_id)
                if problem is not None:
                    yield problem
                    return
                if not chunk:
                    return


# What a <persoon> is read into: per path below it ("doelgroep", "overleggen/overleg", an attribute
# as "overleggen/overleg/@datum") the texts in document order. An element's text includes the
# text of everything inside it; only the paths Baken reads are kept.
_Values = dict[str, str | list[str]]
_CONTAINERS = ("overleggen", "plan-van-aanpak")
_READ_BELOW = frozenset({"", *_CONTAINERS})  # the persoon, and the containers in it


class _Reader:
    """expat fed chunk by chunk: the `<persoon>` elements under the root, each with the line of
    its start tag. Only the persons completed in the current chunk are held."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._parser = expat.ParserCreate(namespace_separator="}")
        self._parser.buffer_text = True
        # DTDs are refused outright, so no entity is ever declared or expanded.
        self._parser.StartDoctypeDeclHandler = self._doctype
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._text: list[str] = []
        self._parser.CharacterDataHandler = self._text.append
        self._depth = 0
        # Inside a persoon: per open element below it, its path (None when not read) and where
        # its text starts in _text; None outside a persoon.
        self._open: list[str | None] | None = None
        self._starts: list[int] = []
        self._paths: dict[str | None, dict[str, str]] = {parent: {} for parent in _READ_BELOW}
        self._values: _Values = {}
        self._line = 0
        self._id: str | None = None  # clientnummer of the open persoon, once read
        self._persons: list[tuple[int, _Values]] = []
        self.house_id = ""

    def feed(self, chunk: bytes, final: bool) -> BadRecord | None:
        """Parse a chunk; a problem that ends the file is returned (nothing after it is read)."""
        try:
            self._parser.Parse(chunk, final)
        except _Stop as stop:
            return stop.bad
        except expat.ExpatError as error:
            if error.code != _UNKNOWN_ENCODING:
                return BadRecord(
                    self._where(error.lineno),
                    self._id if self._open is not None else None,
                    f"XML: {expat.ErrorString(error.code)} at column {error.offset + 1};"
                    " nothing after it is read",
                    incomplete=True,
                )
            return self._bad_encoding()
        except (LookupError, ValueError):
            # pyexpat's handler for encodings expat lacks raises these for a declared encoding
            # Python does not know, or a multi-byte one.
            return self._bad_encoding()
        return None

    def take(self) -> list[tuple[int, _Values]]:
        persons, self._persons = self._persons, []
        if self._open is None:
            self._text.clear()  # text between persons is not read
        return persons

    def _bad_encoding(self) -> BadRecord:
        return BadRecord(
            self._where(self._parser.CurrentLineNumber),
            None,
            "encoding: the declared encoding is not supported (UTF-8, UTF-16, ISO-8859-1 and"
            " windows-1252 are); nothing in the file is read",
            incomplete=True,
        )

    def _where(self, line: int) -> str:
        return f"{self._name}:{line}"

    def _stop(self, reason: str) -> _Stop:
        where = self._where(self._parser.CurrentLineNumber)
        return _Stop(BadRecord(where, None, reason, incomplete=True))

    def _doctype(self, *_: object) -> None:
        raise self._stop("DOCTYPE: not allowed in a GCOS export; nothing in the file is read")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        if self._open is None:
            if self._depth == 1:
                self._root(_local(name), attributes)
            elif self._depth == 2 and _local(name) == "persoon":
                self._open, self._values, self._id = [], {}, None
                self._line = self._parser.CurrentLineNumber
                self._text.clear()
            return  # anything else under the root is read past
        parent = self._open[-1] if self._open else ""
        paths = self._paths.get(parent)
        path = None
        if paths is not None:
            path = paths.get(name)
            if path is None:
                path = paths[name] = f"{parent}/{_local(name)}" if parent else _local(name)
            if attributes:
                for key, value in attributes.items():
                    self._add(f"{path}/@{_local(key)}", value)
        self._open.append(path)
        self._starts.append(len(self._text))

    def _add(self, path: str, value: str) -> None:
        """The first text of a path as is, a list from the second on (most paths appear once)."""
        values = self._values
        if path not in values:
            values[path] = value
            return
        found = values[path]
        if isinstance(found, list):
            found.append(value)
        else:
            values[path] = [found, value]

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._open is None:
            return
        if not self._open:  # the persoon itself
            self._persons.append((self._line, self._values))
            self._open = None
            return
        path = self._open.pop()
        start = self._starts.pop()
        if path is not None:
            text = self._text
            if path in _READ_BELOW or len(text) == start:  # a container's text is not read
                self._add(path, "")
            else:
                self._add(path, text[start] if len(text) == start + 1 else "".join(text[start:]))
            if path == "clientnummer":
                self._id = _line_text(_all(self._values, path)[-1])

    def _root(self, tag: str, attributes: dict[str, str]) -> None:
        if tag != "gcos-export":
            raise self._stop("root element: not gcos-export; nothing in the file is read")
        code = {_local(key): value for key, value in attributes.items()}.get("veiligheidshuis")
        if code is None or not code.strip():
            raise self._stop("veiligheidshuis: missing; nothing in the file is read")
        house_id = HOUSES.get(code.strip().upper())
        if house_id is None:
            raise self._stop("veiligheidshuis: not a known code; nothing in the file is read")
        self.house_id = house_id


def _local(name: str) -> str:
    """The name without its namespace: GCOS versions differ in whether they declare one."""
    return name.rpartition("}")[2]


def _person(person: _Values, where: str, house_id: str) -> SourceRecord | BadRecord:
    """voorletters and any element not named here are read past: the registry has no place for
    them."""
    record_id = None
    try:
        record_id = _required(person, "clientnummer")
        for container in _CONTAINERS:
            _one(person, container)
        return SourceRecord(
            record_id=record_id,
            house_id=house_id,
            person=Person(
                bsn=_optional(person, "bsn"),
                surname=_surname(person),
                birth_date=_date(_optional(person, "geboortedatum"), "geboortedatum"),
            ),
            target_group=_code(person, "doelgroep", TARGET_GROUPS),
            plan_status=_code(person, STATUS, PLAN_STATUSES),
            mark_date=_first_meeting(person),
            advice=_scenario(person),
            advice_date=_date(_optional(person, SCENARIO_DATE), SCENARIO_DATE),
            where=where,
        )
    except _Bad as bad:
        return BadRecord(where, record_id, str(bad))


def _one(person: _Values, path: str) -> str | None:
    found = person.get(path)
    if isinstance(found, list):
        raise _Bad(f"{path}: appears {len(found)} times")
    return found


def _all(person: _Values, path: str) -> list[str]:
    found = person.get(path)
    return [found] if isinstance(found, str) else found or []


def _line_text(text: str) -> str | None:
    """Text on one line: surrounding whitespace trimmed, inner runs of whitespace one space;
    empty is None."""
    text = text.strip()
    if not text.isprintable() or "  " in text:
        text = " ".join(text.split())
    return text or None


def _optional(person: _Values, path: str) -> str | None:
    text = _one(person, path)
    return None if text is None else _line_text(text)


def _required(person: _Values, path: str) -> str:
    value = _optional(person, path)
    if value is None:
        raise _Bad(f"{path}: missing")
    return value


def _code(person: _Values, path: str, table: Mapping[str, str]) -> str:
    code = _required(person, path)
    try:
        return table[code.upper()]
    except KeyError:
        raise _Bad(f"{path}: not a known code") from None


def _surname(person: _Values) -> str | None:
    achternaam = _optional(person, "achternaam")
    tussenvoegsel = _optional(person, "tussenvoegsel")
    if achternaam is None:
        return None
    return f"{tussenvoegsel} {achternaam}" if tussenvoegsel else achternaam


def _first_meeting(person: _Values) -> dt.date:
    """The mark date: the first casusoverleg that discussed the person."""
    meetings = _all(person, "overleggen/overleg")
    if not meetings:
        raise _Bad("overleggen: not discussed in a casusoverleg yet, so not a marker")
    days = []
    for value in _all(person, MEETING_DATE):
        day = _date(_line_text(value), MEETING_DATE)
        if day is None:
            break
        days.append(day)
    if len(days) < len(meetings):
        raise _Bad(f"{MEETING_DATE}: missing")
    return min(days)


def _scenario(person: _Values) -> str | None:
    """The "scenario voor ZSM": each line trimmed, blank lines at either end dropped."""
    text = _one(person, SCENARIO)
    if text is None:
        return None
    return "\n".join(line.strip() for line in text.splitlines()).strip() or None


def _date(value: str | None, name: str) -> dt.date | None:
    """YYYY-MM-DD, or DD-MM-YYYY as older GCOS records hold it. The message never repeats the
    value: it may be a birth date."""
    if value is None:
        return None
    found = _DATE.fullmatch(value)
    if found is None:
        raise _Bad(f"{name}: not a date (expected YYYY-MM-DD or DD-MM-YYYY)")
    try:
        if value[4] == "-":
            return dt.date.fromisoformat(value)
        return dt.date(int(found[3]), int(found[2]), int(found[1]))
    except ValueError:
        raise _Bad(f"{name}: not a date (no such day)") from None


# The writer: the same format, for synthetic data and benchmarks.
