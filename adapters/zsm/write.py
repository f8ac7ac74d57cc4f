"""ZSM suspects monitors for tests and the demo, in the format ZsmExport reads (README.md)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from adapters.records import Person
from adapters.zsm.export import AMSTERDAM, COLUMNS, FOOTER, Decision, InflowRow

# The export's words for the wire's tokens (the first the case system writes).
_DECISION_WORDS = {
    "technisch-sepot-01": "Technisch sepot",
    "sepot": "Sepot",
    "voorwaardelijk-sepot": "Voorwaardelijk sepot",
    "halt": "Halt",
    "reprimande": "Reprimande",
    "strafbeschikking": "OM-strafbeschikking",
    "tom-zitting": "TOM-zitting",
    "dagvaarding": "Dagvaarding",
    "voorgeleiding": "Voorgeleiding",
    "transactie": "Transactie",
    "overdracht-backoffice": "Overdracht backoffice",
}
_STAGE_WORDS = {"routing": "Routering", "final": "Afdoening"}
_ADVICE_WORDS = {"followed": "ja", "not-followed": "nee", "no-advice": "geen advies"}
OFFENCES = (
    "winkeldiefstal",
    "huiselijk geweld",
    "openlijk geweld",
    "inbraak woning",
    "straatroof",
    "vernieling",
    "bedreiging",
    "rijden onder invloed",
)
SURNAMES = ("Jansen", "de Vries", "van den Berg", "Bakker", "Yilmaz", "El Amrani", "Visser")


def cells(row: InflowRow) -> list[str]:
    """The row as the case system writes it: Dutch dates, Amsterdam time."""
    person = row.person
    particle, _, surname = (person.surname or "").rpartition(" ")
    d = row.decision
    return [
        row.location,
        row.case_reference,
        row.arrest_time.astimezone(AMSTERDAM).strftime("%d-%m-%Y %H:%M"),
        person.bsn or "",
        surname,
        particle,
        person.birth_date.strftime("%d-%m-%Y") if person.birth_date else "",
        "minderjarig" if row.minor else "meerderjarig",
        row.offence_category,
        _DECISION_WORDS[d.code] if d else "",
        d.sepot_code if d else "",
        _STAGE_WORDS[d.stage] if d else "",
        _ADVICE_WORDS.get(d.advice_followed or "", "") if d else "",
        (d.deviation_reason or "") if d else "",
        ("ja" if d.probation_report_requested else "nee") if d else "",
    ]


def export_bytes(rows: Iterable[InflowRow | list[str]], *, footer: bool = True) -> bytes:
    """The monitor of `rows` (a row given as its cells is written as it is), header first and,
    with `footer`, the footer that proves it complete. CRLF line ends, as the case system's."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow(row if isinstance(row, list) else cells(row))
        count += 1
    if footer:
        writer.writerow([FOOTER, str(count)])
    return out.getvalue().encode("utf-8")


def write_export(path: Path, rows: Iterable[InflowRow | list[str]], *, footer: bool = True) -> None:
    """Written under a hidden name and renamed into place, as a desk's export job should."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(export_bytes(rows, footer=footer))
    temp.replace(path)


def _bsns(rng: random.Random) -> Iterator[str]:
    while True:
        digits = [rng.randrange(10) for _ in range(8)]
        total = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True))
        check = total % 11
        if check < 10 and digits[0] != 0:
            yield "".join(map(str, digits)) + str(check)


def shift(
    *,
    seed: int,
    start: dt.datetime,
    count: int,
    location: str = "ZSM Midden-Nederland",
    prefix: str = "ZSM-MN",
    decided: float = 0.5,
) -> list[InflowRow]:
    """A desk's shift: `count` suspects arrested from `start` on, a few minutes apart, some
    without BSN, some minors; `decided` of them also with a row of their (final) decision."""
    rng = random.Random(seed)
    bsns = _bsns(rng)
    rows: list[InflowRow] = []
    for n in range(count):
        minor = rng.random() < 0.15
        age = rng.randint(12, 17) if minor else rng.randint(18, 60)
        birth = (start - dt.timedelta(days=365 * age + rng.randint(30, 300))).date()
        with_bsn = rng.random() < 0.85
        person = Person(
            bsn=next(bsns) if with_bsn else None,
            surname=rng.choice(SURNAMES),
            birth_date=birth,
        )
        row = InflowRow(
            where="",
            location=location,
            case_reference=f"{prefix}-{seed % 100:02d}{n + 1:04d}",
            arrest_time=start + dt.timedelta(minutes=7 * n),
            person=person,
            minor=minor,
            offence_category=rng.choice(OFFENCES),
            decision=None,
        )
        rows.append(row)
        if rng.random() < decided:
            code = "halt" if minor else rng.choice(("strafbeschikking", "dagvaarding", "sepot"))
            decision = Decision(code, "02" if code == "sepot" else "", "final", None, None, False)
            rows.append(dataclasses.replace(row, decision=decision))
    return rows
