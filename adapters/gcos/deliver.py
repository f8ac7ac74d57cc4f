"""Write-back into GCOS: each delivered feedback item becomes one terugkoppeling XML file in the
house's GCOS import folder (README.md, "Write-back"), written exactly once and never half."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from adapters.durable import replace_atomically, sync_directory
from adapters.gcos.export import HOUSES, NOT_XML, TARGET_GROUPS
from adapters.records import RETRACTION_REASON, Delivery, OtherHouse, Person, check_delivery

_HOUSE_CODES = {house_id: code for code, house_id in HOUSES.items()}
# Delivery.kind -> <soort>; a decision whose code is a sepot becomes "sepot".
_KINDS = {
    "decision": "beslissing",
    "signal": "signaal",
    "referral": "aanmelding",
    "advice-request": "adviesaanvraag",
    "retraction": "intrekking",
    "advice-request-cancelled": "adviesaanvraag-ingetrokken",
    "match": "matching",
}
# TargetGroup token -> doelgroep code, the first code of a token as the export reads it.
_TARGET_GROUP_CODES = {token: code for code, token in reversed(list(TARGET_GROUPS.items()))}
_SEPOT = "sepot-"
# A key made of these characters (and not longer) is the file name's kenmerk as it is; any other
# key is replaced character by character and gets a hash after a dot, which a kept key never
# contains, so different keys never share a file name.
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TEMP_SUFFIX = re.compile(r"\.[0-9a-f]{16}\.tmp")
# Beside the import folder's files, where a file is written before it is renamed into place.
PARTIAL = ".partial"
_KENMERK = re.compile(r'<gcos-terugkoppeling [^>]*kenmerk="([^"]*)"')


def deliver(directory: Path, delivery: Delivery) -> Path | None:
    """Write `delivery` as one terugkoppeling file into `directory` (the house's GCOS import
    folder) and return its path, or return None when the file for its key is there already.

    The file appears whole or not at all: it is written under a temporary name in the
    folder's `.partial/` (on the same file system, out of the import's sight), synced, renamed
    into place and the folder synced. Temporary files a crash left for the same key are removed
    first; `.partial/` holds only deliveries under way, so finding them does not read the
    folder, however many files the import leaves there. Raises ValueError naming the field for
    an item GCOS cannot take (see `render`).

    A retraction (intrekking) first removes the retracted item's file if the import has not
    taken it yet (GCOS then never sees it), and is itself written as a file naming the
    retracted kenmerk, for GCOS to strike the item it did import; its own file makes it
    once."""
    content = render(delivery)
    name = file_name(delivery.key)
    target = directory / name
    partial = directory / PARTIAL
    partial.mkdir(mode=0o700, exist_ok=True)
    _remove_leftovers(partial, name)
    if target.exists():
        return None
    if delivery.retracts is not None:
        retracted = directory / file_name(delivery.retracts)
        if retracted.exists():
            retracted.unlink()
            sync_directory(directory)
    replace_atomically(target, content, partial / f"{name}.{secrets.token_hex(8)}.tmp")
    return target


def delivered_keys(directory: Path) -> list[str]:
    """The kenmerk of every terugkoppeling file in the house's import folder, repeats included."""
    texts = (p.read_text("utf-8") for p in sorted(directory.glob("terugkoppeling-*.xml")))
    return [found[1] for found in map(_KENMERK.search, texts) if found]


def file_name(key: str) -> str:
    """`terugkoppeling-{kenmerk}.xml`; the kenmerk is the key when it is safe in a file name,
    otherwise the key with unsafe characters replaced, cut, and a hash of the whole key."""
    if _SAFE_KEY.fullmatch(key):
        return f"terugkoppeling-{key}.xml"
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"terugkoppeling-{_UNSAFE.sub('_', key)[:48]}.{digest}.xml"


def render(delivery: Delivery) -> bytes:
    """The terugkoppeling XML of `delivery`, UTF-8. Raises ValueError naming the field for a
    house not in GCOS, an unknown kind, a decision without code or a technisch sepot 01 (which
    never produces feedback), a referral without person, an item about a marked person without
    its clientnummer, an advice request without term, a time without time zone, or text XML
    cannot carry, a match without its other house or a way to reach it. Only a referral and an
    enrichment request (an adviesaanvraag about a person the house does not know, with its
    reden) carry personal data; every other kind names the house's own record, but a
    retraction, which names only the kenmerk it withdraws, and the cancellation of an
    enrichment request, which names only the request."""
    code = _HOUSE_CODES.get(delivery.house_id)
    if code is None:
        raise ValueError(f"house_id: {delivery.house_id!r} does not keep its markers in GCOS")
    check_delivery(delivery)
    soort = _KINDS[delivery.kind]
    if delivery.kind == "decision" and (delivery.decision or "").strip().lower().startswith(_SEPOT):
        soort = "sepot"

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<gcos-terugkoppeling veiligheidshuis={quoteattr(code)}"
        f" kenmerk={_attribute(delivery.key, 'key')}"
        f" aangemaakt={quoteattr(_moment(delivery.occurred, 'occurred'))}>",
        f"  <soort>{soort}</soort>",
    ]
    if delivery.kind == "retraction":
        assert delivery.retracts is not None
        lines += [
            f"  <ingetrokken-kenmerk>{_text(delivery.retracts, 'retracts')}</ingetrokken-kenmerk>",
            f"  <reden>{_text(RETRACTION_REASON, 'retracts')}</reden>",
            "</gcos-terugkoppeling>",
            "",
        ]
        return "\n".join(lines).encode("utf-8")
    if delivery.kind == "referral" or delivery.is_enrichment:
        # A person the house does not know.
        assert delivery.person is not None
        lines += _person(delivery.person)
    elif delivery.source_record_id is not None:
        # Not for the cancellation of an enrichment request, which names only the request.
        record = _text(delivery.source_record_id, "source_record_id")
        lines.append(f"  <clientnummer>{record}</clientnummer>")
    if soort == "matching":
        assert delivery.other_house is not None
        lines += _matching(delivery.other_house, delivery.occurred)
    else:
        lines += _zsm(delivery)
    if soort == "beslissing":
        lines += _decision(delivery)
    elif soort == "aanmelding" and delivery.referral_reason:
        lines.append(f"  <reden>{_text(delivery.referral_reason, 'referral_reason')}</reden>")
    elif soort == "adviesaanvraag":
        assert delivery.due is not None
        lines.append(f"  <termijn tot={quoteattr(_moment(delivery.due, 'due'))}/>")
        if delivery.question:
            lines.append(f"  <vraag>{_text(delivery.question, 'question')}</vraag>")
        if delivery.is_enrichment and delivery.referral_reason:
            lines.append(f"  <reden>{_text(delivery.referral_reason, 'referral_reason')}</reden>")
    elif soort == "adviesaanvraag-ingetrokken":
        assert delivery.advice_request is not None
        name = _text(delivery.advice_request, "advice_request")
        lines.append(f"  <adviesaanvraag>{name}</adviesaanvraag>")
    lines += ["</gcos-terugkoppeling>", ""]
    return "\n".join(lines).encode("utf-8")


def _person(person: Person) -> list[str]:
    if not (person.bsn or person.surname or person.birth_date):
        raise ValueError("person: no personal data")
    lines = ["  <persoon>"]
    if person.bsn:
        lines.append(f"    <bsn>{_text(person.bsn, 'person.bsn')}</bsn>")
    if person.surname:
        lines.append(f"    <achternaam>{_text(person.surname, 'person.surname')}</achternaam>")
    if person.birth_date:
        lines.append(f"    <geboortedatum>{person.birth_date.isoformat()}</geboortedatum>")
    lines.append("  </persoon>")
    return lines


def _zsm(delivery: Delivery) -> list[str]:
    lines = ["  <zsm>"]
    if delivery.zsm_location:
        lines.append(f"    <locatie>{_text(delivery.zsm_location, 'zsm_location')}</locatie>")
    if delivery.case_reference:  # a signal of an intake lookup may have no case yet
        lines.append(f"    <zaak>{_text(delivery.case_reference, 'case_reference')}</zaak>")
    lines += [f"    <datum>{delivery.occurred.date().isoformat()}</datum>", "  </zsm>"]
    return lines


def _matching(other: OtherHouse, occurred: dt.datetime) -> list[str]:
    """The other house that marks the person too, whom to call there and its doelgroep;
    nothing of its marker else, and nothing of ZSM."""
    name = _text(other.display_name, "other_house.display_name")
    lines = [
        f"  <matching datum={quoteattr(occurred.date().isoformat())}>",
        f"    <veiligheidshuis id={_attribute(other.house_id, 'other_house.house_id')}>{name}"
        "</veiligheidshuis>",
    ]
    if other.target_group:
        code = _TARGET_GROUP_CODES.get(other.target_group)
        if code is None:
            raise ValueError("other_house.target_group: not a doelgroep GCOS knows")
        lines.append(f"    <doelgroep>{code}</doelgroep>")
    lines.append("    <contact>")
    for element, value, field in (
        ("functie", other.contact_role, "contact_role"),
        ("telefoon", other.phone, "phone"),
        ("telefoon-piket", other.after_hours_phone, "after_hours_phone"),
        ("email", other.email, "email"),
    ):
        if value:
            lines.append(f"      <{element}>{_text(value, f'other_house.{field}')}</{element}>")
    lines += ["    </contact>", "  </matching>"]
    return lines


def _decision(delivery: Delivery) -> list[str]:
    code = (delivery.decision or "").strip().upper()
    attributes = f"code={_attribute(code, 'decision')}"
    if delivery.final is not None:
        attributes += f' soort="{"AFDOENING" if delivery.final else "ROUTERING"}"'
    if delivery.decision_text:
        text = _text(delivery.decision_text, "decision_text")
        lines = [f"  <beslissing {attributes}>{text}</beslissing>"]
    else:
        lines = [f"  <beslissing {attributes}/>"]
    if delivery.minor is not None:
        lines.append(f"  <minderjarig>{_yes_no(delivery.minor)}</minderjarig>")
    if delivery.advice_followed is not None or delivery.deviation_reason:
        lines.append("  <advies>")
        if delivery.advice_followed is not None:
            lines.append(f"    <gevolgd>{_yes_no(delivery.advice_followed)}</gevolgd>")
        if delivery.deviation_reason:
            reason = _text(delivery.deviation_reason, "deviation_reason")
            lines.append(f"    <reden-afwijking>{reason}</reden-afwijking>")
        lines.append("  </advies>")
    if delivery.other_houses is not None:
        lines.append(
            f"  <andere-veiligheidshuizen>{delivery.other_houses}</andere-veiligheidshuizen>"
        )
    if delivery.probation_report_requested is not None:
        requested = _yes_no(delivery.probation_report_requested)
        lines.append(
            f"  <reclasseringsrapportage-gevraagd>{requested}</reclasseringsrapportage-gevraagd>"
        )
    return lines


def _yes_no(value: bool) -> str:
    return "ja" if value else "nee"


def _moment(value: dt.datetime, field: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field}: needs a time zone")
    return value.isoformat(timespec="seconds")


def _text(value: str, field: str) -> str:
    if NOT_XML.search(value):
        raise ValueError(f"{field}: holds a character XML 1.0 cannot carry")
    return escape(value)


def _attribute(value: str, field: str) -> str:
    if NOT_XML.search(value):
        raise ValueError(f"{field}: holds a character XML 1.0 cannot carry")
    return quoteattr(value)


def _remove_leftovers(partial: Path, name: str) -> None:
    """Remove the temporary files an interrupted delivery of the same key left behind."""
    prefix = name
    with os.scandir(partial) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and _TEMP_SUFFIX.fullmatch(entry.name[len(prefix) :]):
                Path(entry.path).unlink(missing_ok=True)
