"""Reference data: the Safety Houses, their regions and contact points (houses.toml)."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from google.type import dayofweek_pb2

from baken import enums
from baken.clock import AMSTERDAM
from baken.holidays import is_public_holiday
from baken.registry.v1 import house_pb2

HOUSES = "houses/"
# ISO weekdays: Monday is 1, as datetime.isoweekday and google.type.DayOfWeek number them.
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# A Dutch number written internationally: +31 and nine digits, grouped by single spaces.
_PHONE = re.compile(r"\+31(?: ?[0-9]){9}")
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def house_name(house_id: str) -> str:
    """A house's resource name on the wire: "houses/{house}"."""
    return HOUSES + house_id


def house_id_of(name: str) -> str:
    """The id in a house's resource name, "houses/{house}"; empty when `name` is not one."""
    return name.removeprefix(HOUSES) if name.startswith(HOUSES) else ""


@dataclass(frozen=True, slots=True)
class OfficeHours:
    """A desk is open on `days` (ISO weekdays) from `opens` until `closes` (exclusive), in
    Europe/Amsterdam, and closed on the Dutch public holidays (baken/holidays.py)."""

    days: frozenset[int]
    opens: dt.time
    closes: dt.time

    def open_at(self, moment: dt.datetime) -> bool:
        """Whether the desk answers at `moment` (an aware time, any zone)."""
        local = moment.astimezone(AMSTERDAM)
        return (
            local.isoweekday() in self.days
            and self.opens <= local.time() < self.closes
            and not is_public_holiday(local.date())
        )

    def to_proto(self) -> house_pb2.OfficeHours:
        hours = house_pb2.OfficeHours(
            days=[dayofweek_pb2.DayOfWeek.ValueType(d) for d in sorted(self.days)],
            time_zone=AMSTERDAM.key,
        )
        hours.open_time.hours, hours.open_time.minutes = self.opens.hour, self.opens.minute
        hours.close_time.hours, hours.close_time.minutes = self.closes.hour, self.closes.minute
        return hours


@dataclass(frozen=True, slots=True)
class House:
    id: str
    display_name: str
    region: str
    region_display_name: str
    location: str
    source_system: house_pb2.SourceSystem.ValueType
    contact_role: str
    contact_email: str
    contact_phone: str
    # The piket: whom ZSM calls outside the office hours.
    contact_after_hours_phone: str
    contact_office_hours: OfficeHours

    @property
    def source_system_token(self) -> str:
        """ "gcos", "amazone" or "pga": as the party register names an adapter's system."""
        return enums.token(house_pb2.SourceSystem, self.source_system, "SOURCE_SYSTEM_")

    @property
    def name(self) -> str:
        return HOUSES + self.id

    def to_proto(self) -> house_pb2.House:
        return house_pb2.House(
            name=self.name,
            display_name=self.display_name,
            region=self.region,
            region_display_name=self.region_display_name,
            location=self.location,
            source_system=self.source_system,
            contact=house_pb2.ContactPoint(
                role=self.contact_role,
                email=self.contact_email,
                phone=self.contact_phone,
                office_hours=self.contact_office_hours.to_proto(),
                after_hours_phone=self.contact_after_hours_phone,
            ),
        )

    def call_now(self, moment: dt.datetime) -> tuple[house_pb2.ContactLine.ValueType, str]:
        """The line that answers at `moment`, and its number."""
        if self.contact_office_hours.open_at(moment):
            return house_pb2.CONTACT_LINE_OFFICE, self.contact_phone
        return house_pb2.CONTACT_LINE_AFTER_HOURS, self.contact_after_hours_phone


def load_houses() -> Mapping[str, House]:
    """All houses by id, in the order of houses.toml."""
    return parse_houses(resources.files("baken").joinpath("houses.toml").read_text("utf-8"))


def parse_houses(text: str, source: str = "houses.toml") -> Mapping[str, House]:
    """Houses from the text of a houses.toml. A house without a field it needs, or with a
    phone number or office hours that do not parse, raises ValueError naming the house and the
    field: `houses.toml: house 'vh-breda': contact_after_hours_phone: missing (...)`."""
    data = tomllib.loads(text)
    regions = data["regions"]
    houses: dict[str, House] = {}
    for house_id, h in data["houses"].items():
        field = _Fields(source, house_id, h)
        region = field.text("region")
        if region not in regions:
            raise field.error("region", f"{region!r} is not a region of [regions]")
        houses[house_id] = House(
            id=house_id,
            display_name=field.text("display_name"),
            region=region,
            region_display_name=regions[region]["display_name"],
            location=field.text("location"),
            source_system=house_pb2.SourceSystem.Value(
                f"SOURCE_SYSTEM_{field.text('source_system')}"
            ),
            contact_role=field.text("contact_role"),
            contact_email=field.text("contact_email"),
            contact_phone=field.phone("contact_phone", "the desk's number in office hours"),
            contact_after_hours_phone=field.phone(
                "contact_after_hours_phone",
                "the piket number ZSM calls at night, in weekends and on public holidays",
            ),
            contact_office_hours=field.office_hours("contact_office_hours"),
        )
    return houses


class _Fields:
    """One house's table, read field by field; every error names the house and the field."""

    def __init__(self, source: str, house_id: str, table: Mapping[str, Any]) -> None:
        self._source, self._house_id, self._table = source, house_id, table

    def error(self, field: str, problem: str) -> ValueError:
        return ValueError(f"{self._source}: house {self._house_id!r}: {field}: {problem}")

    def text(self, field: str, what: str = "") -> str:
        value = self._table.get(field)
        if value is None:
            raise self.error(field, f"missing ({what})" if what else "missing")
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, "must be a non-empty string")
        return value

    def phone(self, field: str, what: str) -> str:
        number = self.text(field, what)
        if not _PHONE.fullmatch(number):
            raise self.error(field, f"{number!r} is not a Dutch number as +31 and nine digits")
        return number

    def office_hours(self, field: str) -> OfficeHours:
        table = self._table.get(field)
        if table is None:
            raise self.error(field, 'missing (e.g. { days = ["monday"], opens = "08:30", ... })')
        if not isinstance(table, dict):
            raise self.error(field, "must be a table of days, opens and closes")
        unknown = sorted(set(table) - {"days", "opens", "closes"})
        if unknown:
            raise self.error(field, f"unknown key(s) {', '.join(unknown)}")
        days = table.get("days")
        if not isinstance(days, list) or not days:
            raise self.error(f"{field}.days", "must be a non-empty list of weekday names")
        for day in days:
            if day not in DAYS:
                raise self.error(f"{field}.days", f"{day!r} is not one of {', '.join(DAYS)}")
        if len(set(days)) != len(days):
            raise self.error(f"{field}.days", "names a day twice")
        opens, closes = self._time(field, "opens", table), self._time(field, "closes", table)
        if closes <= opens:
            raise self.error(
                f"{field}.closes", f"{closes:%H:%M} is not later than opens {opens:%H:%M}"
            )
        return OfficeHours(frozenset(DAYS.index(d) + 1 for d in days), opens, closes)

    def _time(self, field: str, key: str, table: Mapping[str, Any]) -> dt.time:
        value = table.get(key)
        found = _TIME.fullmatch(value) if isinstance(value, str) else None
        if found is None:
            raise self.error(f"{field}.{key}", f"{value!r} is not a time of day as HH:MM")
        return dt.time(int(found[1]), int(found[2]))


def load_municipalities(houses: Mapping[str, House]) -> Mapping[str, str]:
    """Residence municipality (as CBS spells it, compared case-insensitively: lowercase keys)
    -> the id of the house that covers it (municipalities.toml)."""
    data = tomllib.loads(
        resources.files("baken").joinpath("municipalities.toml").read_text("utf-8")
    )
    covered = {name.casefold(): house_id for name, house_id in data["municipalities"].items()}
    unknown = set(covered.values()) - houses.keys()
    if unknown:
        raise ValueError(f"municipalities.toml names houses not in houses.toml: {sorted(unknown)}")
    return covered
