"""Write-back into PGA/A&T: one A&T beslisrecord per feedback item (format in README.md).

The records go to a JSON Lines file that the A&T module imports. Each item is applied once,
however often it is delivered: a line with the item's `kenmerk` already in the file is not
written again. An append survives a crash whole or not at all: a line cut off by a crash has no
newline at its end, and the next delivery removes it before appending.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from adapters import jsonl
from adapters.durable import sync_directory
from adapters.pga.export import BOM, HOUSES
from adapters.pga.write import _GROUP_WORDS
from adapters.records import RETRACTION_REASON, Delivery, OtherHouse, Person, check_delivery

# house id -> Veiligheidshuis code in PGA.
HOUSE_CODES: Mapping[str, str] = {house_id: code for code, house_id in HOUSES.items()}

# Delivery.kind -> soort of the beslisrecord.
KINDS: Mapping[str, str] = {
    "decision": "beslissing",
    "signal": "signaal",
    "referral": "aanmelding",
    "advice-request": "adviesaanvraag",
    "retraction": "intrekking",
    "advice-request-cancelled": "adviesaanvraag-ingetrokken",
    "match": "matching",
}

# Technisch sepot 01 (wrongly marked as suspect) is never fed back (docs/FEEDBACK.md); what the
# house already had of the case is withdrawn by an intrekking record naming its kenmerk
# (`ingetrokken_kenmerk`). The file is append-only (the A&T module imports it line by line), so
# the earlier line stays and the A&T import strikes it; `delivered_keys` leaves it out.


def deliver(path: Path, delivery: Delivery) -> bool:
    """Append the beslisrecord of `delivery` to the JSON Lines file at `path`, once.

    Returns False, and writes nothing, when a line with the same `kenmerk` is in the file
    already. Raises ValueError naming the field for a delivery PGA cannot take; the file is then
    not touched."""
    line = (json.dumps(beslisrecord(delivery), ensure_ascii=False) + "\n").encode("utf-8")
    with path.open("a+b") as out:
        fcntl.flock(out, fcntl.LOCK_EX)  # one delivery at a time; released on close
        read = _read_keys(path, out)
        size = read.size
        if size != out.seek(0, os.SEEK_END):
            out.truncate(size)  # the last line was cut off by a crash
        if delivery.key in read.keys:
            _sync(out)
            return False
        _READ.pop(path, None)  # until the line is written whole
        out.write(line)
        _sync(out)
        read.keys.add(delivery.key)
        _READ[path] = _Read(read.file, size + len(line), read.keys)
    if size == 0:
        sync_directory(path.parent)  # the file may be new: make its name durable too
    return True


def beslisrecord(delivery: Delivery) -> dict[str, Any]:
    """The A&T beslisrecord of `delivery`. Only an aanmelding and an enrichment request (an
    adviesaanvraag about a person the house does not know) carry the person (BSN, surname,
    birth date): for every other soort the house knows the person by its own `registratie_id`
    (none for the cancellation of an enrichment request)."""
    house_code = HOUSE_CODES.get(delivery.house_id)
    if house_code is None:
        raise ValueError(f"house_id: {delivery.house_id[:40]!r} is not a PGA house")
    check_delivery(delivery)
    soort = KINDS[delivery.kind]
    if soort == "intrekking":
        return {
            "kenmerk": delivery.key,
            "veiligheidshuis": house_code,
            "soort": soort,
            "tijdstip": _moment(delivery.occurred, "tijdstip"),
            "ingetrokken_kenmerk": delivery.retracts,
            "reden": RETRACTION_REASON,
        }
    case_reference = _text(delivery.case_reference)
    record_id = _text(delivery.source_record_id)

    record: dict[str, Any] = {
        "kenmerk": delivery.key,
        "registratie_id": record_id,
        "veiligheidshuis": house_code,
        "soort": soort,
        "zsm_zaak": case_reference,
        "tijdstip": _moment(delivery.occurred, "tijdstip"),
        "zsm_locatie": _text(delivery.zsm_location),
        "minderjarig": delivery.minor,
    }
    if soort == "beslissing":
        record |= _decision(delivery)
    elif soort == "aanmelding":
        record |= _referral(delivery.person, delivery.referral_reason)
    elif soort == "adviesaanvraag":
        assert delivery.due is not None
        record["termijn"] = _moment(delivery.due, "termijn")
        record["vraag"] = _text(delivery.question)
        if delivery.is_enrichment:
            # A person the house does not know: no registratie_id, the person as in an
            # aanmelding, and why ZSM asks (reden_aanmelding).
            record |= _referral(delivery.person, delivery.referral_reason)
    elif soort == "adviesaanvraag-ingetrokken":
        record["adviesaanvraag"] = _text(delivery.advice_request)
    elif soort == "matching":
        assert delivery.other_house is not None
        record |= _matching(delivery.other_house)
    return record


def _decision(delivery: Delivery) -> dict[str, Any]:
    code = _text(delivery.decision)
    return {
        "beslissing": code,
        "toelichting": _text(delivery.decision_text),
        "afdoening": delivery.final,
        "advies_gevolgd": delivery.advice_followed,
        "reden_afwijking": _text(delivery.deviation_reason),
        "andere_veiligheidshuizen": delivery.other_houses,
        "reclasseringsadvies_gevraagd": delivery.probation_report_requested,
    }


def _matching(other: OtherHouse) -> dict[str, Any]:
    """The other house that marks the person too, whom to call there and its doelgroep;
    nothing of its marker else."""
    group = other.target_group
    if group is not None and group not in _GROUP_WORDS:
        raise ValueError("other_house.target_group: not a doelgroep the A&T module knows")
    return {
        "ander_veiligheidshuis": _text(other.house_id),
        "ander_veiligheidshuis_naam": _text(other.display_name),
        "ander_doelgroep": _GROUP_WORDS[group] if group is not None else None,
        "contact_functie": _text(other.contact_role),
        "contact_telefoon": _text(other.phone),
        "contact_telefoon_piket": _text(other.after_hours_phone),
        "contact_email": _text(other.email),
    }


def _referral(person: Person | None, reason: str | None) -> dict[str, Any]:
    """The person as the house needs to find or register them: a BSN, or surname and birth
    date (the same rule as for a marker, adapters/framework.py)."""
    bsn = _text(person.bsn) if person else None
    surname = _text(person.surname) if person else None
    birth_date = person.birth_date if person else None
    return {
        "bsn": bsn,
        "achternaam": surname,
        "geboortedatum": birth_date.isoformat() if birth_date else None,
        "reden_aanmelding": _text(reason),
    }


def _text(value: str | None) -> str | None:
    return (value.strip() or None) if value is not None else None


def _moment(value: dt.datetime, name: str) -> str:
    if value.utcoffset() is None:
        raise ValueError(f"{name}: no time zone")
    return value.isoformat()


def delivered_keys(path: Path) -> list[str]:
    """The kenmerk of every complete beslisrecord in the file, repeats included, but those an
    intrekking record struck (the intrekking's own kenmerk is included)."""
    with path.open("rb") as out:
        _, keys, struck = _complete_lines(out)
    return [key for key in keys if key not in struck]


@dataclass(frozen=True, slots=True)
class _Read:
    """The kenmerken of a file's complete lines up to `size`, as this process read them."""

    file: tuple[int, int]  # device and inode
    size: int
    keys: set[str]


# Per file: what was read of it, so that a delivery reads only the lines added since (the file
# only grows, by appends under its lock). Another file at the path, or a shorter one, is read
# whole again.
_READ: dict[Path, _Read] = {}


def _read_keys(path: Path, out: BinaryIO) -> _Read:
    stat = os.fstat(out.fileno())
    file = (stat.st_dev, stat.st_ino)
    known = _READ.get(path)
    if known is None or known.file != file or stat.st_size < known.size:
        known = _Read(file, 0, set())
    size, keys, _ = _complete_lines(out, known.size)
    known.keys.update(keys)  # lines in the file: true whatever happens next
    return _Read(file, size, known.keys)


def _complete_lines(out: BinaryIO, start: int = 0) -> tuple[int, list[str], set[str]]:
    """The size of the file up to and including its last newline, the `kenmerk` of every
    complete line from `start` (where a line begins), and the kenmerken intrekking records
    struck. A complete line that is not a beslisrecord (nor one with a key twice) is passed
    over."""
    out.seek(start)
    size = start
    keys: list[str] = []
    struck: set[str] = set()
    for number, raw in enumerate(out, start=1):
        if not raw.endswith(b"\n"):
            break  # cut off by a crash
        size += len(raw)
        try:
            record = jsonl.loads(raw.removeprefix(BOM) if number == 1 and not start else raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("kenmerk"), str):
            keys.append(record["kenmerk"])
            if record.get("soort") == "intrekking" and isinstance(
                record.get("ingetrokken_kenmerk"), str
            ):
                struck.add(record["ingetrokken_kenmerk"])
    return size, keys, struck


def _sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())
