"""The Amazone export: semicolon-separated Windows-1252 with a footer (format in README.md)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from adapters.records import BadRecord, Person, SourceRecord
from baken.pseudonym import with_leading_zero

ENCODING = "cp1252"
BOM = b"\xef\xbb\xbf"
LOOKS_UTF8 = "encoding: looks like UTF-8, expected Windows-1252"

# The header as Amazone writes it; every row ends in ";", so a last, empty column follows.
COLUMNS = (
    "Registratienummer",
    "BSN",
    "Achternaam",
    "Tussenvoegsel",
    "Voorletters",
    "Geboortedatum",
    "Veiligheidshuis",
    "Doelgroep",
    "Status",
    "Datum markering",
    "Slagzin",
    "Datum slagzin",
    "Bestuurlijke maatregelen",
)
NOT_READ = frozenset({"Voorletters"})

# Veiligheidshuis code in Amazone (police unit Oost-Nederland) -> house id in baken/houses.toml.
HOUSES: Mapping[str, str] = {
    "VHIJS": "vh-ijsselland",
    "VHNOG": "vh-noord-oost-gelderland",
    "VHTW": "vh-twente",
    "VHGMA": "vh-gelderland-midden-arnhem",
    "VHGME": "vh-gelderland-midden-ede",
    "VHGZN": "vh-gelderland-zuid-nijmegen",
    "VHGZT": "vh-gelderland-zuid-tiel",
}

# Doelgroep as the police officer picks it (casefolded, single spaces) -> TargetGroup token.
TARGET_GROUPS: Mapping[str, str] = {
    "veelpleger": "veelpleger",
    "zeer actieve veelpleger": "veelpleger",
    "zavp": "veelpleger",
    "stelselmatige dader": "veelpleger",
    "hic": "hit",
    "high impact crime": "hit",
    "huiselijk geweld": "huiselijk_geweld",
    "hg": "huiselijk_geweld",
    "jeugd": "jeugd",
    "top x": "top_x",
    "top-x": "top_x",
    "overig": "other",
}

# Status of the marking -> PlanStatus token.
PLAN_STATUSES: Mapping[str, str] = {
    "in voorbereiding": "in_preparation",
    "actief": "active",
    "nazorg": "aftercare",
    "afgesloten": "closed",
}


_DATE = re.compile(r"([0-9]{1,2})-([0-9]{1,2})-([0-9]{4})")
_FOOTER = re.compile(r"aantal records\s*:\s*(.*)", re.IGNORECASE)
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes cp1252 leaves undefined (surrogateescape)


def _as_cp1252(first: int, last: int) -> str:
    return re.escape(bytes(range(first, last + 1)).decode(ENCODING, "surrogateescape"))


# A UTF-8 sequence read as cp1252: a lead byte (é = C3 A9 reads "Ã©") and its continuation bytes.
_CONTINUATION = f"[{_as_cp1252(0x80, 0xBF)}]"
_MOJIBAKE = re.compile(
    f"[{_as_cp1252(0xC2, 0xDF)}]{_CONTINUATION}"
    f"|[{_as_cp1252(0xE0, 0xEF)}]{_CONTINUATION}{{2}}"
    f"|[{_as_cp1252(0xF0, 0xF4)}]{_CONTINUATION}{{3}}"
)


class _Bad(Exception):
    """One problem with one row; the message names the column and never repeats personal data."""


class AmazoneExport:
    """The marker export of Amazone, the police system of the Oost-Nederland Safety Houses."""

    source_system = "amazone"
    party = "adapter-amazone"

    def read(self, path: Path) -> Iterator[SourceRecord | BadRecord]:
        with path.open("rb") as raw:
            bom = raw.read(len(BOM)) == BOM
            if not bom:
                raw.seek(0)
            with io.TextIOWrapper(
                raw, encoding=ENCODING, errors="surrogateescape", newline=""
            ) as text:
                yield from _rows(path.name, text, bom)


def _rows(name: str, text: io.TextIOWrapper, bom: bool) -> Iterator[SourceRecord | BadRecord]:
    """Header, records, footer. `where` is the line a row starts on: the reader's line_num
    after the previous row, plus one (a quoted newline makes a row span several lines)."""
    reader = csv.reader(text, delimiter=";")
    warned = bom
    if bom:
        yield BadRecord(f"{name}:1", None, LOOKS_UTF8, notice=True)
    header: _Header | None = None
    rows = 0
    footer_line: int | None = None
    while True:
        start = reader.line_num + 1
        where = f"{name}:{start}"
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            rows += 1
            yield BadRecord(where, None, f"csv: {error}")
            continue
        if not any(cell.strip() for cell in row):
            continue
        if not warned and _looks_utf8(row):
            warned = True
            yield BadRecord(where, None, LOOKS_UTF8, notice=True)
        if header is None:
            header = _Header(row)
            if header.problem:
                yield BadRecord(where, None, header.problem, incomplete=True)
            continue
        if footer_line is None and (said := _footer(row)) is not None:
            footer_line = start
            if not (said.isascii() and said.isdigit()):
                yield BadRecord(
                    where, None, "footer: 'Aantal records' without a number", incomplete=True
                )
            elif int(said) != rows:
                reason = f"footer: says {int(said)} records, the export holds {rows}"
                yield BadRecord(where, None, reason, incomplete=True)
            continue
        if footer_line is not None:
            reason = f"after the footer: the export ended on line {footer_line}"
            yield BadRecord(where, None, reason, incomplete=True)
            continue
        rows += 1
        yield _record(header, row, where)
    if header is None:
        yield BadRecord(f"{name}:1", None, "header: missing (the export is empty)", incomplete=True)
    elif footer_line is None:
        reason = "footer: missing 'Aantal records: N' (is the export cut off?)"
        yield BadRecord(f"{name}:{reader.line_num + 1}", None, reason, incomplete=True)


def _looks_utf8(row: Sequence[str]) -> bool:
    for found in _MOJIBAKE.finditer("\n".join(row)):
        try:
            found.group().encode(ENCODING, "surrogateescape").decode("utf-8")
        except UnicodeError:
            continue
        return True
    return False


def _footer(row: Sequence[str]) -> str | None:
    """The N of "Aantal records: N" (as text), or None when the row is not the footer."""
    found = _FOOTER.fullmatch(row[0].strip())
    if found is None or any(cell.strip() for cell in row[1:]):
        return None
    return found.group(1).strip()


def _words(value: str) -> str:
    return " ".join(value.casefold().split())


class _Header:
    """Where each column stands; columns are found by name, so their order may vary and
    columns Baken does not know are read past."""

    def __init__(self, row: Sequence[str]) -> None:
        known = {_words(column): column for column in COLUMNS}
        self.width = len(row)
        self.index: dict[str, int] = {}
        twice: list[str] = []
        for position, cell in enumerate(row):
            column = known.get(_words(cell))
            if column is None:
                continue
            if column in self.index:
                twice.append(column)
            self.index[column] = position
        missing = [c for c in COLUMNS if c not in self.index and c not in NOT_READ]
        self.problem = ""
        if missing:
            self.problem = "header: missing column " + ", ".join(repr(c) for c in missing)
        elif twice:
            self.problem = "header: column " + ", ".join(repr(c) for c in twice) + " appears twice"

    def record_id(self, row: Sequence[str]) -> str | None:
        """The registratienummer of a row that cannot be read, if it is still plainly there."""
        position = self.index.get("Registratienummer")
        if position is None or position >= len(row):
            return None
        value = row[position].strip()
        return value if value and not _UNDECODABLE.search(value) else None


def _record(header: _Header, row: Sequence[str], where: str) -> SourceRecord | BadRecord:
    record_id = header.record_id(row)
    if header.problem:
        return BadRecord(where, record_id, "not read: the header is unusable")
    if undecodable := _undecodable(header, row):
        return BadRecord(where, record_id if len(row) == header.width else None, undecodable)
    if len(row) != header.width:
        # A column missing or extra: which cell is which is unknown, so not even the id is
        # read (it may be the BSN that moved into its place).
        reason = f"column count: {len(row)} columns, the header has {header.width}"
        return BadRecord(where, None, reason)
    cells = _Cells(header.index, row)
    try:
        return cells.record(where)
    except _Bad as bad:
        return BadRecord(where, record_id, str(bad))


def _undecodable(header: _Header, row: Sequence[str]) -> str | None:
    """The reason for the first byte Windows-1252 leaves undefined (0x81, 0x8d, 0x8f, 0x90,
    0x9d), which surrogateescape decoded to U+DC81 and so on; None when there is none."""
    if not _UNDECODABLE.search("".join(row)):
        return None
    columns = {position: column for column, position in header.index.items()}
    for position, cell in enumerate(row):
        if found := _UNDECODABLE.search(cell):
            column = columns.get(position)
            place = f"column {column!r}" if column else f"column {position + 1}"
            byte = ord(found.group()) - 0xDC00
            return f"encoding: byte 0x{byte:02x} is not Windows-1252 ({place})"
    return None


class _Cells:
    def __init__(self, index: Mapping[str, int], row: Sequence[str]) -> None:
        self._index = index
        self._row = row

    def record(self, where: str) -> SourceRecord:
        """Voorletters and unknown columns are read past: the registry has no place for them.
        The slagzin is dated by Datum slagzin, or by the marking when that is empty."""
        record_id = self.required("Registratienummer")
        person = Person(
            bsn=self.bsn(), surname=self.surname(), birth_date=self.date("Geboortedatum")
        )
        house_id = self.lookup("Veiligheidshuis", HOUSES, str.upper)
        target_group = self.lookup("Doelgroep", TARGET_GROUPS, _words)
        plan_status = self.lookup("Status", PLAN_STATUSES, _words)
        mark_date = self.date("Datum markering")
        if mark_date is None:
            raise _Bad("Datum markering: empty")
        advice = self.text("Slagzin")
        if advice is None:
            raise _Bad("Slagzin: empty (every marker needs its slagzin)")
        advice_date = self.date("Datum slagzin") or mark_date
        measures = self.text("Bestuurlijke maatregelen")
        return SourceRecord(
            record_id=record_id,
            house_id=house_id,
            person=person,
            target_group=target_group,
            plan_status=plan_status,
            mark_date=mark_date,
            advice=advice,
            advice_date=advice_date,
            at_information={"administrative_measures": measures} if measures else {},
            where=where,
        )

    def text(self, column: str) -> str | None:
        """Trimmed; a newline inside a quoted cell becomes LF; a blank cell is None."""
        value = self._row[self._index[column]].strip()
        if "\r" in value:
            value = value.replace("\r\n", "\n").replace("\r", "\n")
        return value or None

    def required(self, column: str) -> str:
        value = self.text(column)
        if value is None:
            raise _Bad(f"{column}: empty")
        return value

    def lookup(self, column: str, table: Mapping[str, str], key: Callable[[str], str]) -> str:
        value = self.required(column)
        try:
            return table[key(value)]
        except KeyError:
            raise _Bad(f"{column}: not a known value") from None

    def bsn(self) -> str | None:
        """Unchecked (the framework applies the 11-proef). A BSN that went through a
        spreadsheet lost its leading zero: eight digits get it back."""
        value = self.text("BSN")
        return None if value is None else with_leading_zero(value)

    def surname(self) -> str | None:
        achternaam = self.text("Achternaam")
        tussenvoegsel = self.text("Tussenvoegsel")
        if achternaam is None:
            return None
        return f"{tussenvoegsel} {achternaam}" if tussenvoegsel else achternaam

    def date(self, column: str) -> dt.date | None:
        """dd-mm-jjjj (a day or month of one digit is accepted). The reason never repeats the
        value: it may be a birth date."""
        value = self.text(column)
        if value is None:
            return None
        found = _DATE.fullmatch(value)
        if found is None:
            raise _Bad(f"{column}: not a date (expected dd-mm-jjjj)")
        try:
            return dt.date(int(found[3]), int(found[2]), int(found[1]))
        except ValueError:
            raise _Bad(f"{column}: not a date (no such day)") from None
