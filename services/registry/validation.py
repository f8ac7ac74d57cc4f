"""The one place where registry requests are checked and turned into domain values.

A request message meets the contract's field rules before it gets here (the .proto's
protovalidate rules, held by the interceptor); BatchLookup's entries and SyncMarkers' changes,
answered one by one, are held to them here, each alone. What is left is what the contract cannot
say: the houses, the caller's party formats, today's date, free text, rules across fields. Every
check names the offending field (AIP-193); nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from baken import enums
from baken.errors import FieldViolation, InvalidArgument
from baken.houses import House, house_id_of
from baken.purposes import INTAKE
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2
from baken.type.v1 import pseudonym_pb2
from services.common import field_rules
from services.common.checks import PRINTABLE, Checker, text_fault
from services.common.covenants import Formats
from services.registry.markers import MarkerData, RecordKey, SyncBatch, SyncChange, Tombstone

MAX_RECORD_ID = 128


def batch_entry(
    entry: registry_service_pb2.BatchLookupEntry, purpose: str, formats: Formats
) -> tuple[tuple[bytes, ...], str | None, str]:
    """One entry of a BatchLookup message, as question_fields gives a person asked about."""
    found = field_rules.violations(entry)
    if found:
        raise InvalidArgument(found)
    if fault := text_fault(entry.ref):
        raise InvalidArgument([FieldViolation("ref", fault)])
    return question_fields(entry.subject, entry.case_reference, entry.subject_age, purpose, formats)


def sync_request(
    request: registry_service_pb2.SyncMarkersRequest, houses: Mapping[str, House], served: str
) -> SyncBatch:
    """One message of an adapter that serves the `served` source system, as MarkerSync.sync
    takes it; each change is checked when MarkerSync asks (a replay it already holds is not)."""
    changes = request.changes
    return SyncBatch(
        tuple([_sync_change(change, houses, served) for change in changes]),
        lambda position, today: marker_change(changes[position], houses, today, served),
    )


def _sync_change(
    change: marker_pb2.MarkerChange, houses: Mapping[str, House], served: str
) -> SyncChange:
    upsert = change.HasField("upsert")
    record = change.upsert if upsert else change.tombstone
    system, house, record_id = record.source_system, record.house, record.source_record_id
    return SyncChange(
        source_system=system,
        house=house,
        source_record_id=record_id,
        key=_claimed_key(system, house, record_id, houses, served),
        source_version=record.source_version if upsert else 0,
        record=record.SerializeToString(deterministic=True) if upsert else None,
    )


def _claimed_key(
    source_system: int, house: str, record_id: str, houses: Mapping[str, House], served: str
) -> RecordKey | None:
    """The record key a change names, before the rest of it is validated: for finding what is
    stored. None when the key itself is not valid or not of the `served` source system (it is
    then never sent to the database)."""
    system = enums.tokens(house_pb2.SourceSystem, "SOURCE_SYSTEM_").get(source_system)
    house_id = house_id_of(house)
    if (
        system != served
        or house_id not in houses
        or len(record_id) > MAX_RECORD_ID
        or not PRINTABLE.match(record_id)
    ):
        return None
    return RecordKey(system, house_id, record_id)


def _record_key(
    check: Checker,
    field: str,
    houses: Mapping[str, House],
    source_system: int,
    house_name: str,
    source_record_id: str,
) -> RecordKey | None:
    system = check.enum(
        f"{field}.source_system", house_pb2.SourceSystem, source_system, "SOURCE_SYSTEM_"
    )
    house_id = house_id_of(house_name)
    house = houses.get(house_id)
    if house is None:
        check.fail(f"{field}.house", 'not "houses/{house}" of a known Safety House')
    elif system is not None and house.source_system != source_system:
        check.fail(f"{field}.house", "this house does not keep its markers in this source system")
    if check.violations or system is None:
        return None
    return RecordKey(system, house_id, source_record_id)


def marker_change(
    change: marker_pb2.MarkerChange, houses: Mapping[str, House], today: dt.date, served: str
) -> MarkerData | Tombstone:
    """A valid upsert or tombstone of the `served` source system, or InvalidArgument naming
    every bad field (reason SOURCE_NOT_SERVED for a record of another source system)."""
    check = Checker(field_rules.violations(change))
    which = change.WhichOneof("change")
    if which in ("upsert", "tombstone"):
        record = change.upsert if which == "upsert" else change.tombstone
        system = enums.tokens(house_pb2.SourceSystem, "SOURCE_SYSTEM_").get(record.source_system)
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
            t.house,
            t.source_record_id,
        )
        check.raise_if_failed("INVALID_MARKER")
        assert key is not None
        return Tombstone(key, t.source_version)
    if which != "upsert":
        raise InvalidArgument(
            [FieldViolation("change", "required: an upsert or a tombstone")], "INVALID_MARKER"
        )
    r = change.upsert
    key = _record_key(check, "upsert", houses, r.source_system, r.house, r.source_record_id)
    pseudonyms = check.subject("upsert.subject", r.subject)
    target_group = check.enum(
        "upsert.target_group", marker_pb2.TargetGroup, r.target_group, "TARGET_GROUP_"
    )
    plan_status = check.enum(
        "upsert.plan_status", marker_pb2.PlanStatus, r.plan_status, "PLAN_STATUS_"
    )
    mark_date = check.date("upsert.mark_date", r.mark_date, today, required=True)
    advice = check.text("upsert.advice", r.advice, lines=True)
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


DEFAULT_SIGNALS_PAGE = 500
MAX_SIGNALS_PAGE = 5000


def pull_signals(request: registry_service_pb2.PullSignalsRequest) -> tuple[int, int]:
    """(after_sequence, page size): 0 asks for the default page, more than the maximum gets
    the maximum (the contract refuses negative numbers)."""
    size = min(request.page_size or DEFAULT_SIGNALS_PAGE, MAX_SIGNALS_PAGE)
    return request.after_sequence, size


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
