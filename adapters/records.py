"""What every source adapter produces: source records before pseudonymisation, or bad records.

A mapping (adapters/gcos, adapters/amazone, adapters/pga) only parses its source's export into
these; the framework (adapters/framework.py) validates what all sources share, pseudonymises,
works out what changed since the last confirmed sync, and sends it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from baken.keyring import KeyRing
from baken.pseudonym import (
    Identifier,
    Pseudonym,
    person_identifiers,
    person_pseudonyms,
)


@dataclass(frozen=True, slots=True)
class Person:
    """As the source holds the person; never leaves the adapter."""

    bsn: str | None
    surname: str | None
    birth_date: dt.date | None

    def pseudonyms(self, ring: KeyRing, today: dt.date) -> list[Pseudonym]:
        """Under every key of the ring (its OPRF keys through its evaluator); InvalidIdentifier
        on a bad BSN or name."""
        return person_pseudonyms(
            ring,
            bsn=self.bsn,
            surname=self.surname,
            birth_date=self.birth_date,
            today=today,
        )

    def identifiers(self, today: dt.date) -> list[Identifier]:
        """What is pseudonymised of the person, checked (InvalidIdentifier), for a chunk of
        persons at once (baken.pseudonym.pseudonymise)."""
        return person_identifiers(
            bsn=self.bsn, surname=self.surname, birth_date=self.birth_date, today=today
        )


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One marker as its source holds it."""

    record_id: str
    house_id: str
    person: Person
    # Tokens of the wire enums, lowercase: "veelpleger", "hit", "huiselijk_geweld", "jeugd",
    # "top_x", "other"; "in_preparation", "active", "aftercare", "closed".
    target_group: str
    plan_status: str
    mark_date: dt.date
    advice: str | None
    advice_date: dt.date | None
    # A&T field name (marker.proto AtInformation) -> text.
    at_information: Mapping[str, str] = field(default_factory=dict)
    # Where it stands in the export, for reports: "export.jsonl:12".
    where: str = ""


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record the adapter cannot send: where it stands, its id if readable, and why.

    `incomplete` says the export itself cannot prove it is complete (cut off, no footer or
    trailer, a count or checksum that does not match, XML that breaks off, not this source's
    format, a header without the id column): this run changes nothing. A bad record without
    `record_id` may be any marker, so the run deletes none; `notice` marks a remark about the
    whole file (it looks like UTF-8) that is no record and withholds nothing.

    The reason names the field and never repeats a value of the export."""

    where: str
    record_id: str | None
    reason: str
    incomplete: bool = False
    notice: bool = False


class SourceFormat(Protocol):
    """One source system's export format."""

    source_system: str  # "gcos", "amazone" or "pga", as in the party register
    party: str  # the adapter's party id: its certificate

    def read(self, path: Path) -> Iterator[SourceRecord | BadRecord]:
        """Every record of the export at `path`, in order; a record that cannot be parsed is a
        BadRecord naming file and line (or record id) and the reason, and reading goes on."""
        ...


@dataclass(frozen=True, slots=True)
class OtherHouse:
    """A matchingsmelding's whole content: the other Veiligheidshuis that marks the person too,
    whom to call there (its ZSM contact point, from the reference data) and why it marks him
    (its target group token: "veelpleger", "huiselijk_geweld", ...). Nothing of its marker
    else: no advice, no A&T fields, not its record of him."""

    house_id: str  # e.g. "vh-rotterdam-rijnmond"
    display_name: str
    target_group: str | None = None  # None when the registry did not say
    contact_role: str | None = None
    email: str | None = None
    phone: str | None = None  # the desk in office hours
    after_hours_phone: str | None = None  # the piket outside them


@dataclass(frozen=True, slots=True)
class Delivery:
    """One feedback item for a house: the opened, source-neutral form of
    `baken.feedback.v1.Delivery` (adapters/receive.py `to_delivery` makes it from the item the
    feedback service streams, opening a referral's sealed person with the house's key), as the
    house's adapter writes it back into its source system, each source in its own form
    (adapters/<source>/deliver.py). `key` is the idempotency key: an item is applied once,
    however often it is delivered. A field the house's covenant withholds (named in the
    item's `withheld`), or that ZSM did not say, is None: unknown, never False."""

    key: str
    house_id: str
    # "decision" (terugkoppeling of a ZSM decision), "signal" (a marked person flowed in at
    # ZSM), "referral" (aanmelding of a person the house does not know yet), "advice-request"
    # (advies op aanvraag, answer by `due`), "match" (matchingsmelding: another house marks
    # the person too; `other_house` says which).
    kind: str
    # The ZSM case; may be empty for a signal of an intake lookup, and is empty for a match.
    case_reference: str
    occurred: dt.datetime
    # The house's own record of the person; None for a referral, an enrichment request (an
    # advice-request with `person`) and the cancellation of one.
    source_record_id: str | None = None
    zsm_location: str | None = None
    # decision: the code ("dagvaarding", "strafbeschikking", "sepot-02", "halt", ...) and text.
    decision: str | None = None
    decision_text: str | None = None
    final: bool | None = None  # final (afdoening) or routing decision
    advice_followed: bool | None = None
    deviation_reason: str | None = None
    # decision: how many other houses that mark the person were told of it too (never which);
    # 0 when this house alone marks him. None for a sepot or when the decision is withheld.
    other_houses: int | None = None
    probation_report_requested: bool | None = None
    minor: bool | None = None
    # referral, and an advice-request about a person the house does not know (enrichment,
    # verrijking): the person, opened by the adapter from the item sealed to the house, and
    # why ("complexe problematiek vermoed; ...", "verrijkingsverzoek; triagecriteria: ...").
    person: Person | None = None
    referral_reason: str | None = None
    # advice-request: the term, and why advice is needed (no personal data); and the request's
    # name ("adviceRequests/{id}"), by which the adapter answers it once the house advised.
    # advice-request-cancelled: only the name of the request ZSM withdrew.
    due: dt.datetime | None = None
    question: str | None = None
    advice_request: str | None = None
    # retraction (intrekking): the key of the earlier item a technisch sepot 01 withdraws; the
    # source removes or strikes it. A retraction carries nothing else: no case, no record, no
    # person; its one reason is RETRACTION_REASON.
    retracts: str | None = None

    # match: the other house, whom to call there and its target group; nothing else.
    other_house: OtherHouse | None = None

    @property
    def is_enrichment(self) -> bool:
        """An advice request about a person the house does not know (verrijking): no record
        of the house; it carries the person instead, and why (`referral_reason`)."""
        return self.kind == "advice-request" and not self.source_record_id


DELIVERY_KINDS = (
    "decision",
    "signal",
    "referral",
    "advice-request",
    "advice-request-cancelled",
    "retraction",
    "match",
)
# Why an item is withdrawn, as every source writes it: the only reason there is.
RETRACTION_REASON = "technisch sepot 01: ten onrechte als verdachte aangemerkt; verwijderen"
# The kinds about no ZSM case: a signal of an intake lookup may have none yet, a match has none.
_WITHOUT_CASE = frozenset({"signal", "match"})
_KEY = re.compile(r"(?=.*\S)[^\x00-\x1f\x7f]{1,128}")
_SEPOT_01 = re.compile(r"(technisch[- ]?)?sepot[- ]?0?1\Z")


def check_delivery(delivery: Delivery) -> None:
    """What every source's write-back needs of a delivery, or ValueError naming the field (of
    Delivery) and never a value: the one check before any source writes anything."""
    d = delivery
    if d.kind not in DELIVERY_KINDS:
        raise ValueError(f"kind: not one of {', '.join(DELIVERY_KINDS)}")
    if not _KEY.fullmatch(d.key):
        raise ValueError("key: required, 1 to 128 printable characters")
    if d.occurred.tzinfo is None:
        raise ValueError("occurred: needs a time zone")
    if d.kind == "retraction":
        if not _KEY.fullmatch(d.retracts or "") or d.retracts == d.key:
            raise ValueError("retracts: required, the key of another item")
        if d.person is not None:
            raise ValueError("person: a retraction carries no personal data")
        return
    # A signal of an intake lookup may have no case yet (the feedback service then signals
    # once per lookup), and a match is about no case; every other kind is about a case.
    if d.kind not in _WITHOUT_CASE and not d.case_reference.strip():
        raise ValueError("case_reference: required (but for a signal or a match)")
    if d.kind == "referral" or d.is_enrichment:
        what = "a referral" if d.kind == "referral" else "an enrichment request"
        person = d.person
        if person is None or not (person.bsn or (person.surname and person.birth_date)):
            raise ValueError(f"person: {what} needs a BSN, or a surname and a date of birth")
        if d.kind == "referral" and d.source_record_id:
            raise ValueError(
                "source_record_id: a referral is about a person the house does not know"
            )
        if d.is_enrichment and not (d.referral_reason or "").strip():
            raise ValueError("referral_reason: an enrichment request says for which criteria")
    elif d.kind == "advice-request-cancelled" and d.source_record_id is None:
        pass  # an enrichment request withdrawn: the house knows it by the request's name
    elif not (d.source_record_id or "").strip():
        raise ValueError("source_record_id: required: the house's own record of the person")
    if d.kind == "decision":
        code = (d.decision or "").strip().lower()
        if not code:
            raise ValueError("decision: required for a decision")
        if _SEPOT_01.match(code):
            raise ValueError("decision: technisch sepot 01 is never fed back")
        if d.advice_followed is False and not (d.deviation_reason or "").strip():
            raise ValueError("deviation_reason: required when the advice was not followed")
    if d.other_houses is not None:
        if d.kind != "decision":
            raise ValueError("other_houses: only a decision tells how many houses heard it")
        if d.other_houses < 0:
            raise ValueError("other_houses: not a number of houses")
    if d.kind == "advice-request" and (d.due is None or d.due.tzinfo is None):
        raise ValueError("due: an advice request needs its term, with a time zone")
    if d.kind == "advice-request-cancelled" and not (d.advice_request or "").startswith(
        "adviceRequests/"
    ):
        raise ValueError("advice_request: a cancellation names the request it withdraws")
    if d.kind == "match":
        _check_match(d)
    elif d.other_house is not None:
        raise ValueError("other_house: only a match names another house")


def _check_match(d: Delivery) -> None:
    """A match names the other house and a way to reach it, and carries nothing of a case."""
    other = d.other_house
    if other is None:
        raise ValueError("other_house: required for a match")
    if not other.house_id.strip():
        raise ValueError("other_house.house_id: required for a match")
    if not other.display_name.strip():
        raise ValueError("other_house.display_name: required for a match")
    if not any((x or "").strip() for x in (other.phone, other.after_hours_phone, other.email)):
        raise ValueError("other_house.phone: a match needs a way to reach the other house")
    if other.house_id == d.house_id:
        raise ValueError("other_house.house_id: a house is no match of itself")
    if d.case_reference.strip():
        raise ValueError("case_reference: a match is about no case")
