"""The one place where registry requests are checked and turned into domain values.

Every check names the offending field (AIP-193); nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.type import date_pb2

from baken.age import ADULT_AGE
from baken.errors import FieldViolation, InvalidArgument
from baken.houses import House
from baken.keyring import KEY_ID
from baken.pseudonym import looks_like_bsn
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2
from baken.type.v1 import pseudonym_pb2
from services.common.covenants import INTAKE, Formats
from services.registry.markers import MarkerData, PseudonymRef, RecordKey, Tombstone

MAX_PSEUDONYMS = 16
MAX_RECORD_ID = 128
MAX_TEXT = 2000
MAX_BATCH_ENTRIES = 1000
MAX_SYNC_CHANGES = 5000
MAX_REF = 64
PSEUDONYM_BYTES = 32
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+\Z")
# Characters that steer a terminal or the direction of text rather than being text: C0 and C1
# controls and DEL, and the bidi embeddings, overrides and isolates. A text of several lines
# (an advice, a reason) may hold line feeds and tabs, nothing else of these.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_IN_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
LOOKS_LIKE_A_BSN = "looks like a BSN (nine digits passing the 11-proef): no personal data here"


def text_fault(value: str, *, lines: bool = False) -> str | None:
    """What is wrong with free text as Baken takes it in, or None: a control character (a line
    feed or tab only where `lines`), or a run of digits that passes for a BSN."""
    if (_CONTROL_IN_LINES if lines else _CONTROL).search(value):
        return "contains a control character"
    if looks_like_bsn(value):
        return LOOKS_LIKE_A_BSN
    return None


def enum_token(enum: Any, value: int, prefix: str) -> str:
    """TARGET_GROUP_HUISELIJK_GEWELD -> "huiselijk_geweld": how enums are stored."""
    return str(enum.Name(value)).removeprefix(prefix).lower()


@functools.cache
def enum_tokens(enum: Any, prefix: str) -> dict[int, str]:
    """Number -> stored token for every defined value but UNSPECIFIED (0)."""
    return {
        v.number: enum_token(enum, v.number, prefix) for v in enum.DESCRIPTOR.values if v.number
    }


class Checker:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def enum(self, field: str, enum: Any, value: int, prefix: str) -> str | None:
        token = enum_tokens(enum, prefix).get(value)
        if token is None:
            self.fail(field, "required; must be one of the defined values")
        return token

    def text(
        self, field: str, value: str, *, required: bool, limit: int, lines: bool = False
    ) -> str | None:
        """Free text of at most `limit` characters; several lines where `lines`."""
        if not value:
            if required:
                self.fail(field, "required")
            return None
        if len(value) > limit:
            self.fail(field, f"at most {limit} characters")
        elif fault := text_fault(value, lines=lines):
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
        if not subject.pseudonyms:
            self.fail(f"{field}.pseudonyms", "required: at least one pseudonym")
            return ()
        if len(subject.pseudonyms) > MAX_PSEUDONYMS:
            self.fail(f"{field}.pseudonyms", f"at most {MAX_PSEUDONYMS} pseudonyms")
            return ()
        refs = set()
        kinds: set[tuple[int, str]] = set()
        for i, p in enumerate(subject.pseudonyms):
            at = f"{field}.pseudonyms[{i}]"
            ok = True
            if p.kind not in (
                pseudonym_pb2.PSEUDONYM_KIND_BSN,
                pseudonym_pb2.PSEUDONYM_KIND_NAME_BIRTH_DATE,
            ):
                self.fail(f"{at}.kind", "required: BSN or NAME_BIRTH_DATE")
                ok = False
            if not KEY_ID.match(p.key_id):
                self.fail(f"{at}.key_id", "required: lowercase letters, digits and '-', at most 32")
                ok = False
            if len(p.value) != PSEUDONYM_BYTES:
                self.fail(f"{at}.value", f"must be exactly {PSEUDONYM_BYTES} bytes (HMAC-SHA256)")
                ok = False
            if ok and (p.kind, p.key_id) in kinds:
                # One person has one BSN and one name with date of birth: more pseudonyms of a
                # kind under a key probe other persons under the cover of this one.
                self.fail(at, "a second pseudonym of this kind under this key id: one person only")
                ok = False
            if ok:
                kinds.add((p.kind, p.key_id))
                refs.add(PseudonymRef(p.value, p.kind, p.key_id))
        return tuple(sorted(refs))

    def user(self, field: str, value: str, formats: Formats) -> None:
        """A user id of the party's format (covenants/parties.toml)."""
        if not 0 < len(value) <= MAX_USER:
            self.fail(field, f"required: 1 to {MAX_USER} characters")
        elif fault := text_fault(value):
            self.fail(field, fault)
        elif not formats.user.fullmatch(value):
            self.fail(field, "not a user id of the format the party register gives your party")

    def case_reference(self, field: str, value: str, formats: Formats, *, required: bool) -> None:
        """A ZSM case reference of the party's format (covenants/parties.toml)."""
        if not value:
            if required:
                self.fail(field, "required: the ZSM case reference")
        elif len(value) > MAX_CASE_REFERENCE:
            self.fail(field, f"at most {MAX_CASE_REFERENCE} characters")
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


def batch_entries(request: registry_service_pb2.BatchLookupRequest) -> None:
    """Checks the message as a whole; entries are checked one by one, each with its own answer."""
    if not request.entries:
        raise InvalidArgument([FieldViolation("entries", "required: at least one entry")])
    if len(request.entries) > MAX_BATCH_ENTRIES:
        raise InvalidArgument(
            [FieldViolation("entries", f"at most {MAX_BATCH_ENTRIES} per message")]
        )


def batch_ref(ref: str) -> None:
    if not 0 < len(ref) <= MAX_REF:
        raise InvalidArgument([FieldViolation("ref", f"required, at most {MAX_REF} characters")])
    if fault := text_fault(ref):
        raise InvalidArgument([FieldViolation("ref", fault)])


def sync_request(request: registry_service_pb2.SyncMarkersRequest) -> None:
    if not request.changes:
        raise InvalidArgument([FieldViolation("changes", "required: at least one change")])
    if len(request.changes) > MAX_SYNC_CHANGES:
        raise InvalidArgument(
            [FieldViolation("changes", f"at most {MAX_SYNC_CHANGES} per message")]
        )


def claimed_key(
    change: marker_pb2.MarkerChange, houses: Mapping[str, House], served: str
) -> RecordKey | None:
    """The record key a change names, before the rest of it is validated: for finding what is
    stored. None when the key itself is not valid or not of the `served` source system (it is
    then never sent to the database)."""
    record = change.upsert if change.HasField("upsert") else change.tombstone
    system = enum_tokens(house_pb2.SourceSystem, "SOURCE_SYSTEM_").get(record.source_system)
    record_id = record.source_record_id
    if (
        system != served
        or record.house_id not in houses
        or len(record_id) > MAX_RECORD_ID
        or not _PRINTABLE.match(record_id)
    ):
        return None
    return RecordKey(system, record.house_id, record_id)


def _record_key(
    check: Checker,
    field: str,
    houses: Mapping[str, House],
    source_system: int,
    house_id: str,
    source_record_id: str,
    source_version: int,
) -> RecordKey | None:
    system = check.enum(
        f"{field}.source_system", house_pb2.SourceSystem, source_system, "SOURCE_SYSTEM_"
    )
    if (
        not source_record_id
        or len(source_record_id) > MAX_RECORD_ID
        or not _PRINTABLE.match(source_record_id)
    ):
        check.fail(
            f"{field}.source_record_id", f"required: 1 to {MAX_RECORD_ID} printable characters"
        )
    if source_version <= 0:
        check.fail(f"{field}.source_version", "required: a positive version")
    house = houses.get(house_id)
    if house is None:
        check.fail(f"{field}.house_id", "not a known Safety House")
    elif system is not None and house.source_system != source_system:
        check.fail(
            f"{field}.house_id", "this house does not keep its markers in this source system"
        )
    if check.violations or system is None:
        return None
    return RecordKey(system, house_id, source_record_id)


def marker_change(
    change: marker_pb2.MarkerChange, houses: Mapping[str, House], today: dt.date, served: str
) -> MarkerData | Tombstone:
    """A valid upsert or tombstone of the `served` source system, or InvalidArgument naming
    every bad field (reason SOURCE_NOT_SERVED for a record of another source system)."""
    check = Checker()
    which = change.WhichOneof("change")
    if which in ("upsert", "tombstone"):
        record = change.upsert if which == "upsert" else change.tombstone
        system = enum_tokens(house_pb2.SourceSystem, "SOURCE_SYSTEM_").get(record.source_system)
        if system is not None and system != served:
            raise InvalidArgument(
                [FieldViolation(f"{which}.source_system", f"this adapter serves {served} only")],
                "SOURCE_NOT_SERVED",
            )
    if which == "tombstone":
        t = change.tombstone
        key = _record_key(
            check,
            "tombstone",
            houses,
            t.source_system,
            t.house_id,
            t.source_record_id,
            t.source_version,
        )
        check.raise_if_failed("INVALID_MARKER")
        assert key is not None
        return Tombstone(key, t.source_version)
    if which != "upsert":
        raise InvalidArgument(
            [FieldViolation("change", "required: an upsert or a tombstone")], "INVALID_MARKER"
        )
    r = change.upsert
    key = _record_key(
        check, "upsert", houses, r.source_system, r.house_id, r.source_record_id, r.source_version
    )
    pseudonyms = check.subject("upsert.subject", r.subject)
    target_group = check.enum(
        "upsert.target_group", marker_pb2.TargetGroup, r.target_group, "TARGET_GROUP_"
    )
    plan_status = check.enum(
        "upsert.plan_status", marker_pb2.PlanStatus, r.plan_status, "PLAN_STATUS_"
    )
    mark_date = check.date("upsert.mark_date", r.mark_date, today, required=True)
    advice = check.text("upsert.advice", r.advice, required=False, limit=MAX_TEXT, lines=True)
    advice_date = check.date(
        "upsert.advice_date", r.advice_date, today, required=advice is not None
    )
    if advice is None and advice_date is not None:
        check.fail("upsert.advice_date", "given without advice")
    at_information = {
        field.name: text
        for field, value in r.at_information.ListFields()  # only the fields that are set
        if (
            text := check.text(
                f"upsert.at_information.{field.name}",
                value,
                required=False,
                limit=MAX_TEXT,
                lines=True,
            )
        )
    }
    minor_until = check.minor_until("upsert.minor_until", r.minor_until, today)
    check.raise_if_failed("INVALID_MARKER")
    assert key and target_group and plan_status and mark_date
    return MarkerData(
        key=key,
        source_version=r.source_version,
        target_group=target_group,
        plan_status=plan_status,
        mark_date=mark_date,
        advice=advice,
        advice_date=advice_date,
        at_information=at_information or None,
        pseudonyms=pseudonyms,
        minor_until=minor_until,
    )


def page(page_size: int, page_token: str, items: Sequence[object]) -> tuple[int, int]:
    """(start, end) of the page; page tokens are opaque offsets."""
    if page_size < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    size = min(page_size or 50, 200)
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        start = -1
    if not 0 <= start <= len(items):
        raise InvalidArgument([FieldViolation("page_token", "not a token this service gave out")])
    return start, min(start + size, len(items))


DEFAULT_SIGNALS_PAGE = 500
MAX_SIGNALS_PAGE = 5000


def pull_signals(request: registry_service_pb2.PullSignalsRequest) -> tuple[int, int]:
    """(after_sequence, page size): 0 asks for the default page, more than the maximum gets
    the maximum."""
    check = Checker()
    if request.after_sequence < 0:
        check.fail("after_sequence", "must not be negative")
    if request.page_size < 0:
        check.fail("page_size", "must not be negative")
    check.raise_if_failed()
    size = min(request.page_size or DEFAULT_SIGNALS_PAGE, MAX_SIGNALS_PAGE)
    return request.after_sequence, size


MAX_CASE_REFERENCE = 64
MAX_USER = 64
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


def _unset(value: date_pb2.Date) -> bool:
    return bool(value.year == value.month == value.day == 0)


_AGES: dict[int, str] = {
    registry_service_pb2.SUBJECT_AGE_MINOR: "minor",
    registry_service_pb2.SUBJECT_AGE_ADULT: "adult",
}


def question_fields(
    subject: pseudonym_pb2.Subject,
    case_reference: str,
    subject_age: int,
    purpose: str,
    formats: Formats,
    prefix: str = "",
) -> tuple[tuple[bytes, ...], str | None, str]:
    """(pseudonym values, case reference, the age claimed: "minor", "adult" or "") of one
    person asked about."""
    check = Checker()
    refs = check.subject(f"{prefix}subject", subject)
    check.case_reference(f"{prefix}case_reference", case_reference, formats, required=False)
    ages = (registry_service_pb2.SUBJECT_AGE_MINOR, registry_service_pb2.SUBJECT_AGE_ADULT)
    if subject_age not in ages and (subject_age or purpose == INTAKE):
        check.fail(f"{prefix}subject_age", f"required at {INTAKE}: MINOR or ADULT")
    check.raise_if_failed()
    return tuple(r.value for r in refs), case_reference or None, _AGES.get(subject_age, "")
