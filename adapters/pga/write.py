"""PGA/A&T exports for synthetic data and benchmarks, in the format PgaExport reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adapters.pga.export import AT_FIELDS, BOM, HOUSES, trailer
from adapters.records import SourceRecord

_CODES = {house_id: code for code, house_id in HOUSES.items()}
_GROUP_WORDS = {
    "veelpleger": "Veelpleger",
    "hit": "High Impact Crime",
    "huiselijk_geweld": "Huiselijk geweld",
    "jeugd": "Jeugd",
    "top_x": "Top X",
    "other": "Overig",
}
_STATUS_WORDS = {
    "in_preparation": "In voorbereiding",
    "active": "Actief",
    "aftercare": "Nazorg",
    "closed": "Afgesloten",
}
_SUPPLIERS = {"DJI": "DJI", "POLITIE": "Politie", "OM": "OM", "GEMEENTE": "Gemeente", "3RO": "3RO"}


def write_export(path: Path, records: Iterable[SourceRecord]) -> None:
    """An A&T export of `records` (synthetic data, benchmarks), as PgaExport reads it, with
    its trailer."""
    at_keys = {field: (key, sorted(suppliers)) for key, (field, suppliers) in AT_FIELDS.items()}
    with path.open("w", encoding="utf-8") as out:
        for r in records:
            registration: dict[str, Any] = {
                "registratie_id": r.record_id,
                "veiligheidshuis": _CODES[r.house_id],
                "bsn": r.person.bsn,
                "achternaam": r.person.surname,
                "geboortedatum": r.person.birth_date.isoformat() if r.person.birth_date else None,
                "doelgroep": _GROUP_WORDS[r.target_group],
                "status_pva": _STATUS_WORDS[r.plan_status],
                "datum_aanmelding": r.mark_date.isoformat(),
                "advies": r.advice,
                "advies_datum": r.advice_date.isoformat() if r.advice_date else None,
            }
            if r.at_information:
                registration["wat_informatie"] = {
                    at_keys[field][0]: {
                        "tekst": text,
                        "leverancier": _SUPPLIERS.get(at_keys[field][1][0], at_keys[field][1][0]),
                    }
                    for field, text in r.at_information.items()
                }
            out.write(json.dumps(registration, ensure_ascii=False) + "\n")
    seal(path)


def seal(path: Path) -> None:
    """Append the trailer to the export at `path`: the count of its non-blank lines and the
    SHA-256 of its bytes. For writers of the export (and tests) that write the lines
    themselves; the file must end with a line end."""
    digest = hashlib.sha256()
    count = 0
    with path.open("rb") as export:
        for number, raw in enumerate(export, start=1):
            if not raw.endswith(b"\n"):
                raise ValueError(f"{path.name}:{number}: no line end; the trailer would seal it")
            digest.update(raw)
            count += bool((raw.removeprefix(BOM) if number == 1 else raw).strip())
    with path.open("ab") as export:
        export.write(trailer(count, digest.hexdigest()))
