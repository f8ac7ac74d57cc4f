"""The ZSM inflow export: the desk's suspects monitor (verdachtenmonitor) as ZSM's case system
writes it, semicolon-separated UTF-8 with a header and a footer carrying the row count (format
in README.md). Each row is one suspect's case; a row that carries a decision (Beslissing) is
that decision too. Nothing here leaves the adapter: the person is pseudonymised by the inflow
(adapters/zsm/inflow.py) before anything is sent."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.records import BadRecord, Person
from baken.pseudonym import looks_like_bsn

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
BOM = "\ufeff"
# The last row: "Einde export;N", N the rows between header and footer.
FOOTER = "Einde export"
# How a refusal of a whole file ends: it is no monitor, and nothing in it is read.
NOTHING_READ = "nothing in it is read"

COLUMNS = (
    "ZSM-locatie",
    "Zaaknummer",
    "Aanhouding",
    "BSN",
    "Achternaam",
    "Tussenvoegsel",
    "Geboortedatum",
    "Leeftijd",
    "Feitcategorie",
    "Beslissing",
    "Sepotcode",
    "Fase",
    "Advies opgevolgd",
    "Reden afwijking",
    "Reclassering rapport",
)
REQUIRED_COLUMNS = COLUMNS[:9]

# Beslissing as the case system writes it (casefolded, "-", "_" and spaces alike) -> the
# DecisionCode token of the wire (cli/feedback.py CODES spells them the same).
DECISIONS: Mapping[str, str] = {
    "technisch sepot 01": "technisch-sepot-01",
    "technisch sepot": "technisch-sepot-01",
    "sepot": "sepot",
    "voorwaardelijk sepot": "voorwaardelijk-sepot",
    "halt": "halt",
    "reprimande": "reprimande",
    "strafbeschikking": "strafbeschikking",
    "om strafbeschikking": "strafbeschikking",
    "tom zitting": "tom-zitting",
    "dagvaarding": "dagvaarding",
    "dagvaarden": "dagvaarding",
    "voorgeleiding": "voorgeleiding",
    "transactie": "transactie",
    "overdracht backoffice": "overdracht-backoffice",
}
STAGES: Mapping[str, str] = {"routering": "routing", "afdoening": "final"}
AGES: Mapping[str, bool] = {"meerderjarig": False, "minderjarig": True}
# Advies opgevolgd -> AdviceFollowed token; empty: the export does not say.
ADVICE: Mapping[str, str] = {"ja": "followed", "nee": "not-followed", "geen advies": "no-advice"}
YES_NO: Mapping[str, bool] = {"ja": True, "nee": False}

LOOKS_LIKE_A_BSN = "looks like a BSN (nine digits passing the 11-proef): no personal data here"
MAX_CASE = 64
MAX_OFFENCE = 64
MAX_REASON = 2000
_DATE = re.compile(r"([0-9]{1,2})-([0-9]{1,2})-([0-9]{4})")
_TIME = re.compile(r"([0-9]{1,2})-([0-9]{1,2})-([0-9]{4}) ([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")
_SEPOT_CODE = re.compile(r"0[2-9]|[1-9][0-9]")
# C0 controls but TAB and LF, DEL, C1 controls, bidirectional overrides and isolates (as the
# framework refuses them in a marker's texts).
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision the row carries, in the wire's tokens."""

    code: str  # "dagvaarding", "sepot", "technisch-sepot-01", ...
    sepot_code: str  # "02".."99" with "sepot"; "" otherwise
    stage: str  # "routing" or "final"
    advice_followed: str | None  # "followed", "not-followed", "no-advice"; None: not said
    deviation_reason: str | None
    probation_report_requested: bool


@dataclass(frozen=True, slots=True)
class InflowRow:
    """One row of the monitor: a suspect who flowed in with his case, maybe with a decision.
    The person never leaves the adapter."""

    where: str  # "monitor.csv:12"
    location: str
    case_reference: str
    arrest_time: dt.datetime  # aware, UTC
    person: Person
    minor: bool
    offence_category: str
    decision: Decision | None


class _Bad(Exception):
    """One problem with one row; names the column and never repeats a value of the export."""


class ZsmExport:
    """The suspects monitor of one ZSM desk."""

    def read(self, path: Path) -> Iterator[InflowRow | BadRecord]:
        """Every whole row, in order; a row that cannot be read is a BadRecord naming file, line
        and column. An export that cannot prove it is complete (no footer, a count that does
        not match, a last line cut off, rows after the footer) yields a BadRecord marked
        `incomplete` after its whole rows: each row stands alone, so those are taken, and what
        is missing comes with a later export. A file that is no monitor (a header without the
        columns) is refused as a whole: nothing in it is read."""
        yield from read_text(path.name, path.read_bytes())


def read_text(name: str, data: bytes) -> Iterator[InflowRow | BadRecord]:
    cut = not data.endswith(b"\n") and bool(data)
    whole = data[: data.rfind(b"\n") + 1] if cut else data
    try:
        text = whole.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as error:
        line = whole[: error.start].count(b"\n") + 1
        yield BadRecord(
            f"{name}:{line}", None, f"encoding: not UTF-8; {NOTHING_READ}", incomplete=True
        )
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", strict=True)
    header: dict[str, int] | None = None
    rows = 0
    footer_line: int | None = None
    start = 1
    while True:
        start = reader.line_num + 1
        where = f"{name}:{start}"
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            # A quote that never closes: the rest of the file is one broken field.
            yield BadRecord(
                where,
                None,
                "row: a quoted field never ends (is the export cut off?)",
                incomplete=True,
            )
            return
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = _header(row)
            if header is None:
                missing = [c for c in REQUIRED_COLUMNS if c not in {x.strip() for x in row}]
                reason = (
                    f"header: not a ZSM suspects monitor (no column {missing[0]!r}); "
                    + NOTHING_READ
                )
                yield BadRecord(where, None, reason, incomplete=True)
                return
            continue
        if footer_line is not None:
            yield BadRecord(
                where,
                None,
                f"after the footer: the export ended on line {footer_line}; not read",
                incomplete=True,
            )
            return
        if row[0].strip() == FOOTER:
            footer_line = start
            said = row[1].strip() if len(row) > 1 else ""
            if not said.isdigit():
                yield BadRecord(
                    where, None, f"footer: '{FOOTER}' without a number", incomplete=True
                )
            elif int(said) != rows:
                yield BadRecord(
                    where,
                    None,
                    f"footer: says {int(said)} rows, the export holds {rows}",
                    incomplete=True,
                )
            continue
        rows += 1
        yield _row(row, header, where)
    if header is None:
        yield BadRecord(
            f"{name}:{start}",
            None,
            f"header: missing (the export is empty); {NOTHING_READ}",
            incomplete=True,
        )
    elif cut:
        yield BadRecord(
            f"{name}:{start}",
            None,
            "line end: missing on the last line (the export is cut off); that row is not read",
            incomplete=True,
        )
    elif footer_line is None:
        yield BadRecord(
            f"{name}:{start}",
            None,
            f"footer: missing '{FOOTER};N' (is the export cut off?)",
            incomplete=True,
        )


def _header(row: list[str]) -> dict[str, int] | None:
    names = [cell.strip() for cell in row]
    if not all(c in names for c in REQUIRED_COLUMNS):
        return None
    return {c: names.index(c) for c in COLUMNS if c in names}


def _row(row: list[str], header: Mapping[str, int], where: str) -> InflowRow | BadRecord:
    def cell(column: str) -> str:
        at = header.get(column)
        value = row[at] if at is not None and at < len(row) else ""
        if found := CONTROL.search(value):
            raise _Bad(f"{column}: holds a control character (U+{ord(found.group()):04X})")
        return value.replace("\r\n", "\n").strip()

    case = None
    try:
        if len(row) < len(REQUIRED_COLUMNS):
            raise _Bad(f"row: {len(row)} columns, the header has {len(header)}")
        case = cell("Zaaknummer") or None
        return _parse(cell, where)
    except _Bad as bad:
        # The case number is named only when it is plainly one (no BSN, no odd characters).
        return BadRecord(where, case if case and _plain(case) else None, str(bad))


def _plain(case: str) -> bool:
    return len(case) <= MAX_CASE and case.isprintable() and not looks_like_bsn(case)


def _parse(get: Callable[[str], str], where: str) -> InflowRow:
    location = get("ZSM-locatie")
    if not location:
        raise _Bad("ZSM-locatie: missing")
    case = get("Zaaknummer")
    if not case:
        raise _Bad("Zaaknummer: missing")
    if len(case) > MAX_CASE:
        raise _Bad(f"Zaaknummer: longer than {MAX_CASE} characters")
    if looks_like_bsn(case):
        raise _Bad(f"Zaaknummer: {LOOKS_LIKE_A_BSN}")
    arrest = _time(get("Aanhouding"), "Aanhouding")
    birth = get("Geboortedatum")
    surname = get("Achternaam")
    particle = get("Tussenvoegsel")
    person = Person(
        bsn=get("BSN") or None,
        surname=(f"{particle} {surname}" if particle else surname) if surname else None,
        birth_date=_date(birth, "Geboortedatum") if birth else None,
    )
    age = get("Leeftijd").casefold()
    if age not in AGES:
        raise _Bad("Leeftijd: not meerderjarig or minderjarig")
    offence = get("Feitcategorie")
    if len(offence) > MAX_OFFENCE:
        raise _Bad(f"Feitcategorie: longer than {MAX_OFFENCE} characters")
    if looks_like_bsn(offence):
        raise _Bad(f"Feitcategorie: {LOOKS_LIKE_A_BSN}")
    return InflowRow(
        where=where,
        location=location,
        case_reference=case,
        arrest_time=arrest,
        person=person,
        minor=AGES[age],
        offence_category=offence,
        decision=_decision(get),
    )


def _words(value: str) -> str:
    return " ".join(value.casefold().replace("-", " ").replace("_", " ").split())


def _decision(cell: Callable[[str], str]) -> Decision | None:
    said = cell("Beslissing")
    others = ("Sepotcode", "Fase", "Advies opgevolgd", "Reden afwijking", "Reclassering rapport")
    if not said:
        for column in others:
            if cell(column):
                raise _Bad(f"{column}: given without a Beslissing")
        return None
    code = DECISIONS.get(_words(said))
    if code is None:
        raise _Bad("Beslissing: not a known decision")
    sepot = cell("Sepotcode")
    if code == "sepot":
        if sepot in ("01", "1"):
            code, sepot = "technisch-sepot-01", ""
        elif not _SEPOT_CODE.fullmatch(sepot):
            raise _Bad("Sepotcode: a sepot needs its code, 02 to 99")
    elif code == "technisch-sepot-01" and sepot in ("", "01"):
        sepot = ""
    elif sepot:
        raise _Bad("Sepotcode: only with a sepot")
    stage = STAGES.get(cell("Fase").casefold())
    if stage is None:
        raise _Bad("Fase: not routering or afdoening")
    advice_said = cell("Advies opgevolgd").casefold()
    if advice_said and advice_said not in ADVICE:
        raise _Bad("Advies opgevolgd: not ja, nee or geen advies")
    reason = cell("Reden afwijking")
    if len(reason) > MAX_REASON:
        raise _Bad(f"Reden afwijking: longer than {MAX_REASON} characters")
    if reason and advice_said != "nee":
        raise _Bad("Reden afwijking: only when the advice was not followed (nee)")
    if looks_like_bsn(reason):
        raise _Bad(f"Reden afwijking: {LOOKS_LIKE_A_BSN}")
    probation = cell("Reclassering rapport").casefold()
    if probation and probation not in YES_NO:
        raise _Bad("Reclassering rapport: not ja or nee")
    return Decision(
        code=code,
        sepot_code=sepot,
        stage=stage,
        advice_followed=ADVICE.get(advice_said),
        deviation_reason=reason or None,
        probation_report_requested=YES_NO.get(probation, False),
    )


def _date(value: str, column: str) -> dt.date:
    """dd-mm-jjjj. The message never repeats the value: it may be a birth date."""
    found = _DATE.fullmatch(value)
    if not found:
        raise _Bad(f"{column}: not a date (expected dd-mm-jjjj)")
    day, month, year = (int(g) for g in found.groups())
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise _Bad(f"{column}: not a date (no such day)") from None


def _time(value: str, column: str) -> dt.datetime:
    """dd-mm-jjjj uu:mm[:ss], Amsterdam time, as UTC."""
    if not value:
        raise _Bad(f"{column}: missing")
    found = _TIME.fullmatch(value)
    if not found:
        raise _Bad(f"{column}: not a time (expected dd-mm-jjjj uu:mm)")
    day, month, year, hour, minute = (int(g) for g in found.groups()[:5])
    second = int(found.group(6) or 0)
    try:
        local = dt.datetime(year, month, day, hour, minute, second, tzinfo=AMSTERDAM)
    except ValueError:
        raise _Bad(f"{column}: not a time (no such day or hour)") from None
    return local.astimezone(dt.UTC)
