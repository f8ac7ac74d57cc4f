"""Test data: persons, their pseudonyms under a test key ring, and the protos an adapter sends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2
from google.type import date_pb2
from grpc_status import rpc_status

from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pseudonym import person_pseudonyms
from baken.registry.v1 import house_pb2, marker_pb2
from baken.type.v1 import pseudonym_pb2

HOUSES = load_houses()
# The FixedClock of the registry fixture starts here: 28 November 2026, noon in Amsterdam.
NOW = dt.datetime(2026, 11, 28, 11, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 11, 28)
WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2)


def bsn_from(eight_digits: str) -> str | None:
    """The valid BSN that starts with these 8 digits, if there is one."""
    check = sum(int(d) * w for d, w in zip(eight_digits, WEIGHTS, strict=True)) % 11
    bsn = eight_digits + str(check)
    return bsn if check < 10 and bsn != "000000000" else None


def valid_bsns(start: int = 10_000_000) -> Iterator[str]:
    """Valid BSNs in increasing order; 8-digit prefixes from `start`."""
    for prefix in range(start, 100_000_000):
        bsn = bsn_from(f"{prefix:08d}")
        if bsn is not None:
            yield bsn


@dataclass(frozen=True)
class Person:
    bsn: str | None = None
    surname: str | None = None
    birth_date: dt.date | None = None


def pseudonyms(ring: KeyRing, person: Person) -> list[pseudonym_pb2.Pseudonym]:
    return [
        pseudonym_pb2.Pseudonym(kind=p.kind, key_id=p.key_id, value=p.value)
        for p in person_pseudonyms(
            ring,
            bsn=person.bsn,
            surname=person.surname,
            birth_date=person.birth_date,
            today=TODAY,
        )
    ]


def subject(ring: KeyRing, person: Person) -> pseudonym_pb2.Subject:
    return pseudonym_pb2.Subject(pseudonyms=pseudonyms(ring, person))


def date_pb(day: dt.date | None) -> date_pb2.Date | None:
    return None if day is None else date_pb2.Date(year=day.year, month=day.month, day=day.day)


def day_of(value: date_pb2.Date) -> dt.date:
    return dt.date(value.year, value.month, value.day)


@dataclass
class Marking:
    """What a house knows about a person; `record()` is how its adapter sends it."""

    person: Person
    record_id: str
    house: str = "vh-rotterdam-rijnmond"
    version: int = 1
    target_group: marker_pb2.TargetGroup.ValueType = marker_pb2.TARGET_GROUP_VEELPLEGER
    plan_status: marker_pb2.PlanStatus.ValueType = marker_pb2.PLAN_STATUS_ACTIVE
    mark_date: dt.date = dt.date(2026, 9, 1)
    advice: str = "dagvaarden met het doel een voorwaardelijke straf met meldplicht"
    advice_date: dt.date | None = dt.date(2026, 9, 1)
    at_information: Mapping[str, str] = field(default_factory=dict)
    # A minor until this day, as the source knows him.
    minor_until: dt.date | None = None

    def record(self, ring: KeyRing) -> marker_pb2.MarkerRecord:
        return marker_pb2.MarkerRecord(
            source_system=_source_system(self.house),
            source_record_id=self.record_id,
            source_version=self.version,
            house=f"houses/{self.house}",
            subject=subject(ring, self.person),
            target_group=self.target_group,
            plan_status=self.plan_status,
            mark_date=date_pb(self.mark_date),
            advice=self.advice,
            advice_date=date_pb(self.advice_date),
            at_information=(
                marker_pb2.AtInformation(**self.at_information) if self.at_information else None
            ),
            minor_until=date_pb(self.minor_until),
        )

    def upsert(self, ring: KeyRing) -> marker_pb2.MarkerChange:
        return marker_pb2.MarkerChange(upsert=self.record(ring))

    def tombstone(self, version: int | None = None) -> marker_pb2.MarkerChange:
        return tombstone(self.house, self.record_id, self.version if version is None else version)


def _source_system(house: str) -> house_pb2.SourceSystem.ValueType:
    """The house's own source system; PGA for a house that does not exist."""
    return HOUSES[house].source_system if house in HOUSES else house_pb2.SOURCE_SYSTEM_PGA


def upsert(record: marker_pb2.MarkerRecord) -> marker_pb2.MarkerChange:
    return marker_pb2.MarkerChange(upsert=record)


def tombstone(house: str, record_id: str, version: int) -> marker_pb2.MarkerChange:
    return marker_pb2.MarkerChange(
        tombstone=marker_pb2.MarkerTombstone(
            source_system=_source_system(house),
            source_record_id=record_id,
            source_version=version,
            house=f"houses/{house}",
        )
    )


@dataclass(frozen=True)
class Problem:
    """A refusal as the client sees it: code, ErrorInfo reason and the BadRequest field paths,
    and the dynamic values of the message, as ErrorInfo.metadata."""

    code: grpc.StatusCode
    reason: str | None
    domain: str | None
    fields: list[str]
    metadata: dict[str, str] = field(default_factory=dict)
    # What each BadRequest field violation says, in the order of `fields`.
    descriptions: list[str] = field(default_factory=list)


def problem_of_status(status: status_pb2.Status) -> Problem:
    reason = domain = None
    fields: list[str] = []
    descriptions: list[str] = []
    metadata: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
            descriptions += [v.description for v in bad.field_violations]
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    return Problem(code, reason, domain, fields, metadata, descriptions)


def problem(error: grpc.RpcError) -> Problem:
    """Decode the rich status of a failed call (grpc_status.rpc_status.from_call)."""
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    if status is None:
        return Problem(error.code(), None, None, [])
    return problem_of_status(status)
