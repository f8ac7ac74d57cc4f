"""The PGA/A&T export: JSON Lines, one A&T registration per line, and a trailer that proves the
export complete (format in README.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from adapters import jsonl
from adapters.records import BadRecord, Person, SourceRecord

BOM = b"\xef\xbb\xbf"
# The last line: {"einde_export": {"aantal_records": N, "sha256": "<hex>"}}, N the non-blank
# lines before it, the SHA-256 over every byte before it (a BOM included).
TRAILER = "einde_export"

# Veiligheidshuis code in PGA -> house id in baken/houses.toml.
HOUSES: Mapping[str, str] = {
    "VHRR": "vh-rotterdam-rijnmond",
    "VHZHZ": "vh-zuid-holland-zuid",
}

# doelgroep as the A&T module spells it (casefolded, single spaces) -> TargetGroup token.
TARGET_GROUPS: Mapping[str, str] = {
    "veelpleger": "veelpleger",
    "zeer actieve veelpleger": "veelpleger",
    "zavp": "veelpleger",
    "stelselmatige dader": "veelpleger",
    "hic": "hit",
    "high impact crime": "hit",
    "huiselijk geweld": "huiselijk_geweld",
    "jeugd": "jeugd",
    "top x": "top_x",
    "top-x": "top_x",
    "top600": "top_x",
    "overig": "other",
}

# status_pva (status of the plan van aanpak) -> PlanStatus token.
PLAN_STATUSES: Mapping[str, str] = {
    "in voorbereiding": "in_preparation",
    "actief": "active",
    "nazorg": "aftercare",
    "afgesloten": "closed",
}

# wat_informatie key -> (AtInformation field, the partners of the casusoverleg that supply it).
AT_FIELDS: Mapping[str, tuple[str, frozenset[str]]] = {
    "detentieverleden": ("detention_history", frozenset({"DJI"})),
    "antecedenten": ("antecedents", frozenset({"POLITIE"})),
    "openstaande_zaken": ("open_cases", frozenset({"OM"})),
    "leerplicht": ("compulsory_education", frozenset({"GEMEENTE"})),
    "bestuurlijke_maatregelen": ("administrative_measures", frozenset({"GEMEENTE"})),
    "inzet_hulpverlening": ("care_deployed", frozenset({"GEMEENTE"})),
    "toezichten": ("supervisions", frozenset({"BJZ", "3RO", "WSG", "RVDK"})),
}

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_READABLE_ID = re.compile(r'"registratie_id"\s*:\s*"([^"\\]{1,128})"')
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIELD_NAME = re.compile(r"[a-z_]{1,40}")
_JSON_KINDS = {"list": "array", "str": "string", "int": "number", "float": "number"}
_JSON_KINDS |= {"bool": "boolean", "NoneType": "null"}


class _Bad(Exception):
    """One problem with one line; the message names the field and never repeats personal data."""


class PgaExport:
    """The JSON Lines export of the PGA A&T module shared by ZSM Rotterdam and its two houses."""

    source_system = "pga"
    party = "adapter-pga"

    def read(self, path: Path) -> Iterator[SourceRecord | BadRecord]:
        """Each line as a record, then whether the export proved complete: anything wrong with
        the trailer, a last line cut off without its line end, or a first line that is no JSON
        object (not a PGA export) is a BadRecord marked incomplete."""
        with path.open("rb") as export:
            yield from _lines(path.name, export)


def _lines(name: str, export: Iterator[bytes]) -> Iterator[SourceRecord | BadRecord]:
    digest = hashlib.sha256()
    count = 0
    trailer_line: int | None = None
    number = 0
    for number, raw in enumerate(export, start=1):
        line = raw.removeprefix(BOM) if number == 1 else raw
        where = f"{name}:{number}"
        if not raw.endswith(b"\n"):
            reason = "line end: missing on the last line (the export is cut off)"
            yield BadRecord(where, _readable_id(_lenient(line)), reason, incomplete=True)
            return
        if trailer_line is not None:
            if line.strip():
                reason = f"after the trailer: the export ended on line {trailer_line}"
                yield BadRecord(where, None, reason, incomplete=True)
            continue
        if not line.strip():
            digest.update(raw)
            continue
        if count == 0 and not line.lstrip().startswith(b"{"):
            reason = "not a PGA export: the first line is no JSON object; nothing in it is read"
            yield BadRecord(where, None, reason, incomplete=True)
            return
        if _is_trailer(line):
            trailer_line = number
            if problem := _trailer_problem(line, count, digest.hexdigest()):
                yield BadRecord(where, None, problem, incomplete=True)
            continue
        digest.update(raw)
        count += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            yield BadRecord(
                where,
                _readable_id(_lenient(line)),
                f"encoding: not UTF-8 (0x{line[error.start]:02x}"
                f" at byte {error.start + 1} of the line)",
            )
            continue
        yield _parse(text.strip(), where)
    if trailer_line is None:
        empty = " (the export is empty)" if count == 0 else " (is the export cut off?)"
        reason = f"trailer: missing '{{\"{TRAILER}\": ...}}'{empty}"
        yield BadRecord(f"{name}:{number + 1}", None, reason, incomplete=True)


def _is_trailer(line: bytes) -> bool:
    if f'"{TRAILER}"'.encode() not in line:
        return False
    try:
        found = jsonl.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(found, dict) and TRAILER in found


def _lenient(line: bytes) -> str:
    return line.decode("utf-8", "replace")


def _trailer_problem(line: bytes, count: int, digest: str) -> str | None:
    """Why the trailer does not prove the `count` lines with SHA-256 `digest` complete."""
    trailer = jsonl.loads(line)
    try:
        said = trailer[TRAILER]
        records, checksum = said["aantal_records"], said["sha256"]
    except (TypeError, KeyError):
        return f'trailer: not {{"{TRAILER}": {{"aantal_records": N, "sha256": "..."}}}}'
    if len(trailer) != 1 or not isinstance(records, int) or isinstance(records, bool):
        return "trailer: aantal_records must be a number, and the trailer hold nothing else"
    if not isinstance(checksum, str) or not _SHA256.fullmatch(checksum):
        return "trailer: sha256 must be 64 lowercase hexadecimal digits"
    if records != count:
        return f"trailer: says {records} records, the export holds {count}"
    if checksum != digest:
        return "trailer: sha256 does not match the export (changed after it was written?)"
    return None


def trailer(count: int, digest: str) -> bytes:
    """The trailer line (with its line end) of `count` records whose bytes hash to `digest`."""
    body = {TRAILER: {"aantal_records": count, "sha256": digest}}
    return (json.dumps(body) + "\n").encode()


def _parse(text: str, where: str) -> SourceRecord | BadRecord:
    try:
        registration = jsonl.loads(text)
    except jsonl.DuplicateKey as duplicate:
        record_id = None if duplicate.key == "registratie_id" else _readable_id(text)
        return BadRecord(where, record_id, duplicate.reason())
    except (ValueError, RecursionError) as error:
        return BadRecord(where, _readable_id(text), f"invalid JSON: {_json_message(error)}")
    if not isinstance(registration, dict):
        kind = type(registration).__name__
        return BadRecord(
            where, None, f"not a JSON object: the line holds a JSON {_JSON_KINDS[kind]}"
        )
    record_id = _id_of(registration)
    try:
        return _record(registration, where)
    except _Bad as bad:
        return BadRecord(where, record_id, str(bad))


def _json_message(error: ValueError | RecursionError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return str(error)


def _readable_id(text: str) -> str | None:
    """The registratie_id of a line that cannot be parsed, if it is still plainly there."""
    found = _READABLE_ID.search(text)
    return (found.group(1).strip() or None) if found else None


def _id_of(registration: Mapping[str, Any]) -> str | None:
    try:
        return _registration_id(registration)
    except _Bad:
        return None


def _record(registration: Mapping[str, Any], where: str) -> SourceRecord:
    """reden_verwijzing, NAW beyond surname and birth date, and any field not named here are
    read past: the registry has no place for them."""
    return SourceRecord(
        record_id=_registration_id(registration),
        house_id=_lookup(registration, "veiligheidshuis", HOUSES, key=str.upper),
        person=Person(
            bsn=_bsn(registration),
            surname=_surname(registration),
            birth_date=_date(registration, "geboortedatum"),
        ),
        target_group=_lookup(registration, "doelgroep", TARGET_GROUPS, key=_words),
        plan_status=_lookup(registration, "status_pva", PLAN_STATUSES, key=_words),
        mark_date=_required_date(registration, "datum_aanmelding"),
        advice=_text(registration, "advies"),
        advice_date=_date(registration, "advies_datum"),
        at_information=_at_information(registration),
        where=where,
    )


def _registration_id(registration: Mapping[str, Any]) -> str:
    value = registration.get("registratie_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None:
        raise _Bad("registratie_id: missing")
    if not isinstance(value, str):
        raise _Bad("registratie_id: expected a string")
    if not value.strip():
        raise _Bad("registratie_id: empty")
    return value.strip()


def _text(registration: Mapping[str, Any], name: str, label: str = "") -> str | None:
    """A text field; absent, null, or only whitespace is None. CRLF inside becomes LF."""
    value = registration.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(f"{label or name}: expected a string")
    return value.replace("\r\n", "\n").strip() or None


def _required(registration: Mapping[str, Any], name: str) -> str:
    value = _text(registration, name)
    if value is None:
        raise _Bad(f"{name}: missing")
    return value


def _words(value: str) -> str:
    return " ".join(value.casefold().split())


def _lookup(
    registration: Mapping[str, Any],
    name: str,
    table: Mapping[str, str],
    key: Callable[[str], str],
) -> str:
    value = _required(registration, name)
    try:
        return table[key(value)]
    except KeyError:
        raise _Bad(f"{name}: not a known value") from None


def _bsn(registration: Mapping[str, Any]) -> str | None:
    """The BSN as text, unchecked (the framework validates it). A BSN exported as a JSON number
    lost its leading zeros; they are put back."""
    value = registration.get("bsn")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value).zfill(9)
    if value is None or isinstance(value, str):
        return _text(registration, "bsn")
    raise _Bad("bsn: expected a string")


def _surname(registration: Mapping[str, Any]) -> str | None:
    achternaam = _text(registration, "achternaam")
    tussenvoegsel = _text(registration, "tussenvoegsel")
    if achternaam is None:
        return None
    return f"{tussenvoegsel} {achternaam}" if tussenvoegsel else achternaam


def _date(registration: Mapping[str, Any], name: str) -> dt.date | None:
    value = _text(registration, name)
    return None if value is None else _day(value, name)


def _required_date(registration: Mapping[str, Any], name: str) -> dt.date:
    return _day(_required(registration, name), name)


def _day(value: str, name: str) -> dt.date:
    """An ISO date (YYYY-MM-DD). The message never repeats the value: it may be a birth date."""
    if not _ISO_DATE.fullmatch(value):
        raise _Bad(f"{name}: not a date (expected YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _Bad(f"{name}: not a date (no such day)") from None


def _at_information(registration: Mapping[str, Any]) -> dict[str, str]:
    """wat_informatie -> AtInformation fields; an item without text is absent."""
    items = registration.get("wat_informatie")
    if items is None:
        return {}
    if not isinstance(items, dict):
        raise _Bad("wat_informatie: expected an object")
    at_information: dict[str, str] = {}
    for key, item in items.items():
        name = f"wat_informatie.{key}" if _FIELD_NAME.fullmatch(key) else "wat_informatie"
        if key not in AT_FIELDS:
            raise _Bad(f"{name}: not an A&T field")
        if item is None:
            continue
        if not isinstance(item, dict):
            raise _Bad(f"{name}: expected an object with tekst and leverancier")
        text = _text(item, "tekst", f"{name}.tekst")
        if text is None:
            continue
        field, suppliers = AT_FIELDS[key]
        supplier = item.get("leverancier")
        if not isinstance(supplier, str) or not supplier.strip():
            raise _Bad(f"{name}.leverancier: missing")
        if supplier.strip().upper() not in suppliers:
            raise _Bad(f"{name}.leverancier: not a supplier of this field")
        at_information[field] = text
    return at_information
