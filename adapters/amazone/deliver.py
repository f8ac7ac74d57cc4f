"""Write-back into Amazone: each delivered feedback item becomes one row of the mutatie file.

The mutatie file is in the style of the export (README.md, "Write-back"): Windows-1252, `;`,
CRLF, a header, `;` after every row, dates as dd-mm-jjjj, and the footer `Aantal mutaties: N`.
Every row carries the delivery's idempotency key in `Kenmerk Baken`, so an item is written once
however often it is delivered. A retraction (technisch sepot 01) removes the retracted row while
the file still holds it, and adds a `ZSM-intrekking` row naming it for the officer.

Each delivery rewrites the whole file atomically (a temp file in the same directory, fsync,
os.replace, fsync of the directory): after a crash the file is the old one or the new one, never
half, and a redelivery finds its key or appends it once. That is simple because the file stays
small: the house's police officer collects it for the Amazone import, and it starts afresh.
One writer per file is assumed (the house's adapter delivers one item at a time); two processes
delivering into the same file at once could lose a row.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Mapping
from pathlib import Path

from adapters.amazone.export import ENCODING, HOUSES
from adapters.amazone.write import _GROUP_LABELS, _dutch, _split_surname, _typed
from adapters.durable import replace_atomically
from adapters.records import RETRACTION_REASON, Delivery, OtherHouse, check_delivery
from baken.clock import AMSTERDAM

COLUMNS = (
    "Registratienummer",
    "Veiligheidshuis",
    "Soort mutatie",
    "Datum",
    "Zaaknummer",
    "ZSM-locatie",
    "Beslissing",
    "Toelichting",
    "Afdoening",
    "Minderjarige",
    "Rapport reclassering gevraagd",
    "Advies gevolgd",
    "Reden afwijking",
    "Andere veiligheidshuizen",
    "BSN",
    "Achternaam",
    "Tussenvoegsel",
    "Geboortedatum",
    "Reden aanmelding",
    "Advies uiterlijk",
    "Ander veiligheidshuis",
    "Doelgroep ander veiligheidshuis",
    "Contact functie",
    "Contact telefoon",
    "Contact telefoon piket",
    "Contact e-mail",
    "Kenmerk Baken",
)
_KEY = COLUMNS.index("Kenmerk Baken")
_HEADER = [*COLUMNS, ""]  # every row ends in ";"
# Columns added later: a file written before them (not yet collected) is read with them empty,
# and rewritten with them. First a matchingsmelding's columns, then a decision's number of
# other houses told.
_MATCH_COLUMNS = COLUMNS[COLUMNS.index("Ander veiligheidshuis") : _KEY]
_HEADER_BEFORE_OTHER_HOUSES = [c for c in _HEADER if c != "Andere veiligheidshuizen"]
_HEADER_BEFORE_MATCH = [c for c in _HEADER_BEFORE_OTHER_HOUSES if c not in _MATCH_COLUMNS]
_OLDER_HEADERS = (_HEADER_BEFORE_OTHER_HOUSES, _HEADER_BEFORE_MATCH)

# Delivery.kind -> Soort mutatie.
KINDS: Mapping[str, str] = {
    "decision": "ZSM-beslissing",
    "signal": "ZSM-instroom",
    "referral": "ZSM-aanmelding",
    "advice-request": "ZSM-adviesaanvraag",
    "retraction": "ZSM-intrekking",
    "advice-request-cancelled": "ZSM-adviesaanvraag ingetrokken",
    "match": "Matchingsmelding",
}
# Decision code -> Beslissing as ZSM names it; another code is written as it comes.
DECISIONS: Mapping[str, str] = {
    "dagvaarding": "Dagvaarden",
    "strafbeschikking": "Strafbeschikking",
    "tom-zitting": "TOM-zitting",
    "voorgeleiding": "Voorgeleiden",
    "halt": "Halt",
    "reprimande": "Reprimande",
}

_HOUSE_CODES = {house: code for code, house in HOUSES.items()}
_SEPOT = re.compile(r"sepot-([0-9]{2})")
_FOOTER = re.compile(r"Aantal mutaties: ([0-9]+)")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class MutationFileError(Exception):
    """The mutatie file on disk is not one this module wrote; nothing is changed."""


def deliver(path: Path, delivery: Delivery) -> bool:
    """Writes `delivery` as one row into the mutatie file at `path`, creating it if absent.
    False when a row with its key is there already (nothing is written). A delivery Amazone
    cannot take raises ValueError naming the field; a file that is not a mutatie file raises
    MutationFileError."""
    row = mutation_row(delivery)
    rows = _read(path)
    if any(existing[_KEY] == row[_KEY] for existing in rows):
        return False
    if delivery.retracts is not None:
        # Not collected yet: the retracted row goes, in the same rewrite, so Amazone never
        # takes it; the intrekking row is for the officer when it was collected already.
        rows = [existing for existing in rows if existing[_KEY] != delivery.retracts]
    # A fixed temp name: one a crash left behind is simply overwritten next time.
    replace_atomically(path, _render([*rows, row]), path.with_name(f".{path.name}.tmp"))
    return True


def delivered_keys(path: Path) -> list[str]:
    """The Kenmerk Baken of every row of the mutatie file, repeats included."""
    return [row[_KEY] for row in _read(path)]


def mutation_row(delivery: Delivery) -> list[str]:
    """The row for `delivery`, the trailing empty column included. Only the fields of its kind
    are written; a BSN and a name only for a referral and an enrichment request (a
    ZSM-adviesaanvraag about a person the house does not know, its reden in Reden
    aanmelding). A retraction (intrekking) names the Kenmerk Baken of the mutatie it
    withdraws in Toelichting, with its reason."""
    d = delivery
    if d.house_id not in _HOUSE_CODES:
        raise ValueError(f"house_id: {d.house_id!r} is not an Amazone house")
    check_delivery(d)
    if d.key != d.key.strip() or not d.key.isascii():
        raise ValueError("key: must be ASCII without surrounding spaces (a CSV cell)")
    cells = dict.fromkeys(COLUMNS, "")
    cells["Veiligheidshuis"] = _HOUSE_CODES[d.house_id]
    cells["Soort mutatie"] = KINDS[d.kind]
    cells["Datum"] = _dutch(_in_amsterdam(d.occurred, "occurred").date())
    cells["Zaaknummer"] = d.case_reference
    cells["ZSM-locatie"] = d.zsm_location or ""
    cells["Kenmerk Baken"] = d.key
    if d.kind == "retraction":
        # Which mutatie to remove, and the one reason there is; nothing of the person or case.
        cells["Toelichting"] = f"Intrekking van mutatie {d.retracts}: {RETRACTION_REASON}"
    elif d.kind == "referral" or d.is_enrichment:
        # A person the house does not know: the reason in Reden aanmelding either way.
        person = d.person
        assert person is not None
        tussenvoegsel, achternaam = _split_surname(person.surname or "")
        cells["BSN"] = person.bsn or ""
        cells["Achternaam"] = achternaam
        cells["Tussenvoegsel"] = tussenvoegsel
        cells["Geboortedatum"] = _dutch(person.birth_date)
        cells["Reden aanmelding"] = d.referral_reason or ""
    else:
        cells["Registratienummer"] = d.source_record_id or ""
    if d.kind == "decision":
        cells.update(_decision_cells(d))
    if d.kind == "advice-request":
        assert d.due is not None
        due = _in_amsterdam(d.due, "due")
        cells["Advies uiterlijk"] = f"{_dutch(due.date())} {due:%H:%M}"
        cells["Toelichting"] = d.question or ""  # the question asked
    if d.kind == "advice-request-cancelled":
        cells["Toelichting"] = d.advice_request or ""  # which request ZSM withdrew
    if d.kind == "match":
        assert d.other_house is not None
        cells.update(_match_cells(d.other_house))
    return [*(_inert(_cp1252(column, cell)) for column, cell in cells.items()), ""]


def _decision_cells(d: Delivery) -> dict[str, str]:
    assert d.decision is not None
    code = "-".join(d.decision.casefold().replace("_", " ").split())
    sepot = _SEPOT.fullmatch(code)
    reason = (d.deviation_reason or "").strip()
    followed = "geen advies" if d.advice_followed is None else _yes_no(d.advice_followed)
    if d.advice_followed is not False and reason:
        raise ValueError("deviation_reason: only when the advice was not followed")
    return {
        "Beslissing": f"Sepot {sepot[1]}" if sepot else DECISIONS.get(code, d.decision.strip()),
        "Toelichting": d.decision_text or "",
        "Afdoening": _yes_no(d.final),
        "Minderjarige": _yes_no(d.minor),
        "Rapport reclassering gevraagd": _yes_no(d.probation_report_requested),
        "Advies gevolgd": followed,
        "Reden afwijking": reason,
        "Andere veiligheidshuizen": "" if d.other_houses is None else str(d.other_houses),
    }


def _match_cells(other: OtherHouse) -> dict[str, str]:
    """The other house that marks the person too, whom to call there and its doelgroep;
    nothing of its marker else."""
    group = other.target_group
    if group is not None and group not in _GROUP_LABELS:
        raise ValueError("other_house.target_group: not a doelgroep Amazone knows")
    return {
        "Ander veiligheidshuis": other.display_name,
        "Doelgroep ander veiligheidshuis": _GROUP_LABELS[group] if group is not None else "",
        "Contact functie": other.contact_role or "",
        "Contact telefoon": other.phone or "",
        "Contact telefoon piket": other.after_hours_phone or "",
        "Contact e-mail": other.email or "",
    }


def _cp1252(column: str, cell: str) -> str:
    """`cell` as write.py types it: a letter Windows-1252 lacks loses its diacritic."""
    try:
        return _typed("", column, cell)
    except ValueError:
        raise ValueError(f"{column}: cannot be written in Windows-1252") from None


def _inert(cell: str) -> str:
    """A cell a spreadsheet cannot take for a formula (OWASP, CSV injection): one starting with
    =, +, -, @, tab or CR (after spaces, too) gets a single quote before it, which shows the
    text as typed."""
    return "'" + cell if cell.lstrip(" ").startswith(_FORMULA_STARTS) else cell


def _yes_no(value: bool | None) -> str:
    return "" if value is None else "ja" if value else "nee"


def _in_amsterdam(moment: dt.datetime, field: str) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{field}: needs a time zone")
    return moment.astimezone(AMSTERDAM)


def _read(path: Path) -> list[list[str]]:
    """The data rows of the mutatie file at `path`; none when it is absent or empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        text = data.decode(ENCODING)
    except UnicodeDecodeError:
        raise MutationFileError(f"{path.name}: not Windows-1252") from None
    rows = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=";") if any(row)]
    if not rows:
        return []
    header = rows[0]
    if header != _HEADER and header not in _OLDER_HEADERS:
        raise MutationFileError(f"{path.name}: not the mutatie header")
    *records, footer = rows[1:] or [[""]]
    said = _FOOTER.fullmatch(footer[0]) if len(footer) == 1 else None
    if said is None:
        raise MutationFileError(f"{path.name}: missing 'Aantal mutaties: N'")
    if int(said[1]) != len(records) or any(len(row) != len(header) for row in records):
        raise MutationFileError(f"{path.name}: footer says {said[1]}, rows do not agree")
    if header != _HEADER:  # an older file: the columns added since, empty
        records = [
            [dict(zip(header, row, strict=True)).get(c, "") for c in _HEADER] for row in records
        ]
    return records


def _render(rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(_HEADER)
    writer.writerows(rows)
    out.write(f"Aantal mutaties: {len(rows)}\r\n")
    return out.getvalue().encode(ENCODING)
