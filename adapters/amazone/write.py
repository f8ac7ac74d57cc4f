"""Amazone exports for synthetic data and benchmarks, in the format AmazoneExport reads."""

from __future__ import annotations

import csv
import datetime as dt
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

from adapters.amazone.export import COLUMNS, ENCODING, HOUSES, PLAN_STATUSES
from adapters.records import SourceRecord

# What write_export puts in the file for each token.
_HOUSE_CODES = {house: code for code, house in HOUSES.items()}
_GROUP_LABELS = {
    "veelpleger": "Veelpleger",
    "hit": "High Impact Crime",
    "huiselijk_geweld": "Huiselijk geweld",
    "jeugd": "Jeugd",
    "top_x": "Top X",
    "other": "Overig",
}
_STATUS_LABELS = {token: label for label, token in PLAN_STATUSES.items()}
# Letters without a Unicode decomposition, as baken/pseudonym.py folds them.
_PLAIN = {"ı": "i", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ħ": "h", "Ħ": "H", "ŧ": "t", "Ŧ": "T"}
_PARTICLES = frozenset({"van", "de", "der", "den", "het", "ter", "ten", "te", "'t", "in", "op"})


def write_export(path: Path, records: Iterable[SourceRecord]) -> None:
    """Writes `records` as Amazone exports them, footer included: for synthetic sources and
    benchmarks. A record the format cannot hold (a house, doelgroep or status without an
    Amazone code, A&T information other than bestuurlijke maatregelen, a character Windows-1252
    lacks and that has no plain form) raises ValueError. A record without advice gets an empty
    slagzin, which `AmazoneExport` reports as a bad record."""
    with path.open("w", encoding=ENCODING, newline="") as out:
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow([*COLUMNS, ""])
        count = 0
        for record in records:
            cells = zip(COLUMNS, _cells(record), strict=True)
            writer.writerow([*(_typed(record.record_id, *cell) for cell in cells), ""])
            count += 1
        out.write(f"Aantal records: {count}\r\n")


def _cells(record: SourceRecord) -> list[str]:
    def pick(table: Mapping[str, str], token: str, what: str) -> str:
        if token not in table:
            raise ValueError(f"{record.record_id}: {what} {token!r} has no Amazone code")
        return table[token]

    other = set(record.at_information) - {"administrative_measures"}
    if other:
        raise ValueError(f"{record.record_id}: Amazone has no column for {sorted(other)}")
    tussenvoegsel, achternaam = _split_surname(record.person.surname or "")
    advice_date = record.advice_date
    return [
        record.record_id,
        record.person.bsn or "",
        achternaam,
        tussenvoegsel,
        "",
        _dutch(record.person.birth_date),
        pick(_HOUSE_CODES, record.house_id, "house"),
        pick(_GROUP_LABELS, record.target_group, "target group"),
        pick(_STATUS_LABELS, record.plan_status, "plan status"),
        _dutch(record.mark_date),
        record.advice or "",
        "" if advice_date == record.mark_date else _dutch(advice_date),
        record.at_information.get("administrative_measures", ""),
    ]


def _typed(record_id: str, column: str, cell: str) -> str:
    """`cell` as the police officer can type it into Amazone: a letter Windows-1252 lacks loses
    its diacritic (Yılmaz -> Yilmaz; the surname pseudonym folds the same letters, so matching
    is unaffected)."""
    try:
        cell.encode(ENCODING)
        return cell
    except UnicodeEncodeError:
        typed = "".join(map(_plain, cell))
    try:
        typed.encode(ENCODING)
    except UnicodeEncodeError:
        raise ValueError(f"{record_id}: {column} cannot be written in Windows-1252") from None
    return typed


def _plain(letter: str) -> str:
    try:
        letter.encode(ENCODING)
    except UnicodeEncodeError:
        decomposed = unicodedata.normalize("NFKD", letter)
        return _PLAIN.get(letter) or "".join(c for c in decomposed if not unicodedata.combining(c))
    return letter


def _split_surname(surname: str) -> tuple[str, str]:
    """Splits at leading particles, "van der Berg" -> ("van der", "Berg"); reading joins them."""
    words = surname.split(" ")
    n = 0
    while n < len(words) - 1 and words[n] in _PARTICLES:
        n += 1
    return " ".join(words[:n]), " ".join(words[n:])


def _dutch(day: dt.date | None) -> str:
    return "" if day is None else f"{day.day:02d}-{day.month:02d}-{day.year:04d}"
