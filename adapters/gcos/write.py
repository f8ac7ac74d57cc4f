"""GCOS exports for synthetic data and benchmarks, in the format GcosExport reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from adapters.gcos.export import HOUSES, NOT_XML, PLAN_STATUSES, TARGET_GROUPS
from adapters.records import SourceRecord

_HOUSE_CODES = {house_id: code for code, house_id in HOUSES.items()}
# Reversed, so that the first code of a token wins.
_TARGET_GROUP_CODES = {token: code for code, token in reversed(list(TARGET_GROUPS.items()))}
_PLAN_STATUS_CODES = {token: code for code, token in PLAN_STATUSES.items()}


def write_export(
    path: Path,
    house_id: str,
    records: Iterable[SourceRecord],
    *,
    exported: dt.datetime | None = None,
) -> None:
    """Write `records` of one GCOS house as its GCOS export, streaming. Each record becomes a
    person discussed once, at its mark date; the whole surname goes into achternaam. Raises
    ValueError for a house not in GCOS, a record of another house, one with A&T information
    (GCOS has none), an unknown token, or text XML cannot carry."""
    code = _HOUSE_CODES.get(house_id)
    if code is None:
        raise ValueError(f"house {house_id!r} does not keep its markers in GCOS")
    stamp = "" if exported is None else f" exportdatum={quoteattr(exported.isoformat())}"
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        out.write(f"<gcos-export veiligheidshuis={quoteattr(code)}{stamp}>\n")
        for record in records:
            out.write(_person_xml(record, house_id))
        out.write("</gcos-export>\n")


def _person_xml(record: SourceRecord, house_id: str) -> str:
    if record.house_id != house_id:
        raise ValueError(f"record {record.record_id!r} belongs to {record.house_id!r}")
    if record.at_information:
        raise ValueError(f"record {record.record_id!r}: GCOS has no A&T information")
    try:
        group = _TARGET_GROUP_CODES[record.target_group]
        status = _PLAN_STATUS_CODES[record.plan_status]
    except KeyError as error:
        raise ValueError(f"record {record.record_id!r}: unknown token {error}") from None
    person = record.person
    lines = ["  <persoon>", f"    <clientnummer>{_xml(record.record_id)}</clientnummer>"]
    if person.bsn:
        lines.append(f"    <bsn>{_xml(person.bsn)}</bsn>")
    if person.surname:
        lines.append(f"    <achternaam>{_xml(person.surname)}</achternaam>")
    if person.birth_date:
        lines.append(f"    <geboortedatum>{person.birth_date.isoformat()}</geboortedatum>")
    lines += [
        f"    <doelgroep>{group}</doelgroep>",
        "    <overleggen>",
        f'      <overleg datum="{record.mark_date.isoformat()}"/>',
        "    </overleggen>",
        "    <plan-van-aanpak>",
        f"      <status>{status}</status>",
    ]
    if record.advice or record.advice_date:
        datum = f' datum="{record.advice_date.isoformat()}"' if record.advice_date else ""
        lines.append(f"      <scenario-zsm{datum}>{_xml(record.advice or '')}</scenario-zsm>")
    lines += ["    </plan-van-aanpak>", "  </persoon>", ""]
    return "\n".join(lines)


def _xml(text: str) -> str:
    if NOT_XML.search(text):
        raise ValueError("text holds a character XML 1.0 cannot carry")
    return escape(text)
