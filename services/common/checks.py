"""Checks every service makes of what a caller sends, each naming the offending field (AIP-193):
free text, enums, dates, a subject's pseudonyms, a user id and a case reference of the caller's
party's format, paging. What only one service asks stays in that service's validation module."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.type import date_pb2

from baken import enums
from baken.age import ADULT_AGE
from baken.errors import FieldViolation, InvalidArgument
from baken.pseudonym import looks_like_bsn
from baken.type.v1 import pseudonym_pb2
from services.common.covenants import Formats


@dataclass(frozen=True, slots=True, order=True)
class PseudonymRef:
    """A pseudonym as the services keep it; kind is baken.type.v1.PseudonymKind's number."""

    value: bytes
    kind: int
    key_id: str


# Characters that steer a terminal or the direction of text rather than being text: C0 and C1
# controls and DEL, and the bidi embeddings, overrides and isolates. A text of several lines
# (an advice, a reason) may hold line feeds and tabs, nothing else of these.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_IN_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# One line of printable characters: a key or id a service issued or a source gave.
PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+\Z")
LOOKS_LIKE_A_BSN = "looks like a BSN (nine digits passing the 11-proef): no personal data here"


def text_fault(value: str, *, lines: bool = False) -> str | None:
    """What is wrong with free text as Baken takes it in, or None: a control character (a line
    feed or tab only where `lines`), or a run of digits that passes for a BSN."""
    if (_CONTROL_IN_LINES if lines else _CONTROL).search(value):
        return "contains a control character"
    if looks_like_bsn(value):
        return LOOKS_LIKE_A_BSN
    return None


class Checker:
    """Collects what is wrong, one violation per field: the first found (the contract's field
    rules, when they come first, then what only the service can tell)."""

    def __init__(self, violations: Iterable[FieldViolation] = ()) -> None:
        self.violations: list[FieldViolation] = []
        self._fields: set[str] = set()
        for v in violations:
            self.fail(v.field, v.description)

    def fail(self, field: str, description: str) -> None:
        if field not in self._fields:
            self._fields.add(field)
            self.violations.append(FieldViolation(field, description))

    def enum(self, field: str, enum: Any, value: int, prefix: str) -> str | None:
        token = enums.tokens(enum, prefix).get(value)
        if token is None:
            self.fail(field, "required; must be one of the defined values")
        return token

    def text(self, field: str, value: str, *, lines: bool = False) -> str | None:
        """Optional free text (its length is the contract's field rule); several lines where
        `lines`. None when empty."""
        if not value:
            return None
        if fault := text_fault(value, lines=lines):
            self.fail(field, fault)
        return value

    def date(
        self, field: str, value: date_pb2.Date, today: dt.date, *, required: bool
    ) -> dt.date | None:
        if _unset(value):
            if required:
                self.fail(field, "required")
            return None
        day = self._calendar_date(field, value)
        if day is None:
            return None
        if day > today:
            self.fail(field, "lies in the future")
        elif day.year < 1900:
            self.fail(field, "before 1900")
        return day

    def _calendar_date(self, field: str, value: date_pb2.Date) -> dt.date | None:
        try:
            return dt.date(value.year, value.month, value.day)
        except ValueError:
            self.fail(field, "not a calendar date")
            return None

    def minor_until(self, field: str, value: date_pb2.Date, today: dt.date) -> dt.date | None:
        """The first of a month, within the 18 years and a month ahead that a minor can be
        (it may lie in the past: a record replayed after he came of age)."""
        day = None if _unset(value) else self._calendar_date(field, value)
        if day is None:
            return None
        if day.day != 1:
            self.fail(field, "the first day of a month")
        elif day > today.replace(day=1) + dt.timedelta(days=366 * (ADULT_AGE + 1)):
            self.fail(field, f"more than {ADULT_AGE} years ahead")
        elif day.year < 1900:
            self.fail(field, "before 1900")
        return day

    def subject(self, field: str, subject: pseudonym_pb2.Subject) -> tuple[PseudonymRef, ...]:
        """The pseudonyms of a subject that meets the contract's field rules (their number,
        kinds, key ids and lengths), held to one person: one pseudonym per kind per key id."""
        refs = set()
        kinds: set[tuple[int, str]] = set()
        for i, p in enumerate(subject.pseudonyms):
            if (p.kind, p.key_id) in kinds:
                # One person has one BSN and one name with date of birth: more pseudonyms of a
                # kind under a key probe other persons under the cover of this one.
                self.fail(
                    f"{field}.pseudonyms[{i}]",
                    "a second pseudonym of this kind under this key id: one person only",
                )
                continue
            kinds.add((p.kind, p.key_id))
            refs.add(PseudonymRef(p.value, p.kind, p.key_id))
        return tuple(sorted(refs))

    def user(self, field: str, value: str, formats: Formats) -> None:
        """A user id of the party's format (covenants/parties.toml); its presence and length are
        the contract's field rules."""
        if fault := text_fault(value):
            self.fail(field, fault)
        elif not formats.user.fullmatch(value):
            self.fail(field, "not a user id of the format the party register gives your party")

    def case_reference(self, field: str, value: str, formats: Formats, *, required: bool) -> None:
        """A ZSM case reference of the party's format (covenants/parties.toml); its length is
        the contract's field rule."""
        if not value:
            if required:
                self.fail(field, "required: the ZSM case reference")
        elif fault := text_fault(value):
            self.fail(field, fault)
        elif not formats.case_reference.fullmatch(value):
            self.fail(
                field, "not a case reference of the format the party register gives your party"
            )

    def raise_if_failed(self, reason: str = "INVALID_ARGUMENT") -> None:
        if self.violations:
            raise InvalidArgument(self.violations, reason)


def lookup_values(subject: pseudonym_pb2.Subject, field: str = "subject") -> list[bytes]:
    """The pseudonym values to look up, or InvalidArgument."""
    check = Checker()
    refs = check.subject(field, subject)
    check.raise_if_failed()
    return [r.value for r in refs]


BREAK_GLASS_REASON = (20, 500)


def on_behalf_of(value: str, formats: Formats) -> str:
    """The responsible user at the caller's desk, a user id as the party register spells the
    party's."""
    check = Checker()
    check.user("on_behalf_of", value, formats)
    check.raise_if_failed()
    return value


def break_glass_reason(value: str) -> str | None:
    low, high = BREAK_GLASS_REASON
    if not value:
        return None
    if not low <= len(value.strip()) <= high:
        raise InvalidArgument(
            [
                FieldViolation(
                    "break_glass_reason", f"a written reason of {low} to {high} characters"
                )
            ]
        )
    if fault := text_fault(value, lines=True):
        raise InvalidArgument([FieldViolation("break_glass_reason", fault)])
    return value.strip()


DEFAULT_PAGE = 50
MAX_PAGE = 200


def page_size(value: int) -> int:
    """A request's page_size as served: 0 asks for the default, more than the maximum gets the
    maximum (AIP-158); the contract refuses a negative one."""
    return min(value or DEFAULT_PAGE, MAX_PAGE)


def page(requested_size: int, page_token: str, items: Sequence[object]) -> tuple[int, int]:
    """(start, end) of the page of `items`; page tokens are offsets into them."""
    size = page_size(requested_size)
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        start = -1
    if not 0 <= start <= len(items):
        raise InvalidArgument([FieldViolation("page_token", "not a token this service gave out")])
    return start, min(start + size, len(items))


def _unset(value: date_pb2.Date) -> bool:
    return bool(value.year == value.month == value.day == 0)
