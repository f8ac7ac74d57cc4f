"""The houses' reference data: every desk has a number, office hours and a piket number, and the
loader refuses a house that lacks one or writes it wrong, naming the house and the field."""

from __future__ import annotations

import datetime as dt
import re
from importlib import resources

import pytest

from baken.clock import AMSTERDAM
from baken.holidays import easter_sunday, is_public_holiday
from baken.houses import load_houses, parse_houses
from baken.registry.v1 import house_pb2

SHIPPED = resources.files("baken").joinpath("houses.toml").read_text("utf-8")
BREDA = "[houses.vh-breda]"
WEEKDAYS = '["monday", "tuesday", "wednesday", "thursday", "friday"]'
HOURS = f'contact_office_hours = {{ days = {WEEKDAYS}, opens = "08:30", closes = "17:00" }}'
# A Wednesday, a Sunday, and Christmas Day on a Friday.
WEDNESDAY, SUNDAY, CHRISTMAS = dt.date(2026, 12, 2), dt.date(2026, 12, 6), dt.date(2026, 12, 25)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=AMSTERDAM)


def breda_with(old: str, new: str) -> str:
    """The shipped houses.toml with `old` replaced by `new` in Breda's table only."""
    start = SHIPPED.index(BREDA)
    end = SHIPPED.index("[houses.", start + 1)
    table = SHIPPED[start:end]
    assert old in table, old
    return SHIPPED[:start] + table.replace(old, new, 1) + SHIPPED[end:]


def test_every_shipped_house_has_a_number_office_hours_and_a_piket_number() -> None:
    houses = load_houses()
    assert len(houses) == 17
    for house in houses.values():
        contact = house.to_proto().contact
        assert contact.phone.startswith("+31 88 999 01"), house.id
        assert contact.after_hours_phone.startswith("+31 88 999 09"), house.id
        assert contact.after_hours_phone != contact.phone
        assert contact.office_hours.time_zone == "Europe/Amsterdam"
        assert list(contact.office_hours.days) == [1, 2, 3, 4, 5]  # MONDAY to FRIDAY
        # A reference answer says nothing of the time it is.
        assert contact.call_now == house_pb2.CONTACT_LINE_UNSPECIFIED
        assert not contact.call_now_phone
    assert len({h.contact_after_hours_phone for h in houses.values()}) == len(houses)


def test_the_office_number_answers_within_office_hours_and_the_piket_outside() -> None:
    breda = load_houses()["vh-breda"]
    office = (house_pb2.CONTACT_LINE_OFFICE, breda.contact_phone)
    piket = (house_pb2.CONTACT_LINE_AFTER_HOURS, breda.contact_after_hours_phone)
    assert breda.call_now(at(WEDNESDAY, 14)) == office
    assert breda.call_now(at(WEDNESDAY, 8, 30)) == office  # opening is inclusive
    assert breda.call_now(at(WEDNESDAY, 8, 29)) == piket
    assert breda.call_now(at(WEDNESDAY, 17)) == piket  # closing is not
    assert breda.call_now(at(WEDNESDAY, 2)) == piket
    assert breda.call_now(at(SUNDAY, 14)) == piket
    assert breda.call_now(at(CHRISTMAS, 14)) == piket


def test_office_hours_are_amsterdam_time_in_summer_and_in_winter() -> None:
    breda = load_houses()["vh-breda"]
    # 16:30 UTC is 17:30 in winter (closed) and 18:30 in summer (closed); 07:00 UTC is 08:00
    # in winter (closed) and 09:00 in summer (open).
    assert breda.call_now(dt.datetime(2026, 1, 14, 7, tzinfo=dt.UTC))[0] == (
        house_pb2.CONTACT_LINE_AFTER_HOURS
    )
    assert breda.call_now(dt.datetime(2026, 7, 15, 7, tzinfo=dt.UTC))[0] == (
        house_pb2.CONTACT_LINE_OFFICE
    )
    assert breda.call_now(dt.datetime(2026, 7, 15, 15, 30, tzinfo=dt.UTC))[0] == (
        house_pb2.CONTACT_LINE_AFTER_HOURS
    )


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2026, 1, 1),  # New Year's Day, a Thursday
        dt.date(2026, 4, 6),  # Easter Monday
        dt.date(2025, 4, 26),  # King's Day, a Saturday: the 27th was a Sunday
        dt.date(2026, 4, 27),  # King's Day, a Monday
        dt.date(2026, 5, 5),  # Liberation Day, every year
        dt.date(2026, 5, 14),  # Ascension Day
        dt.date(2026, 5, 25),  # Whit Monday
        dt.date(2026, 12, 25),
        dt.date(2026, 12, 26),
    ],
)
def test_the_dutch_public_holidays_are_outside_office_hours(day: dt.date) -> None:
    assert is_public_holiday(day)


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2026, 4, 3),  # Good Friday: not a holiday of the Algemene termijnenwet
        dt.date(2025, 4, 27),  # the Sunday King's Day moved away from
        dt.date(2026, 12, 24),
        dt.date(2026, 12, 31),
        dt.date(2026, 12, 2),
    ],
)
def test_other_days_are_no_public_holidays(day: dt.date) -> None:
    assert not is_public_holiday(day)


def test_easter_falls_on_its_known_sundays() -> None:
    assert [easter_sunday(y) for y in (2024, 2025, 2026, 2027, 2038)] == [
        dt.date(2024, 3, 31),
        dt.date(2025, 4, 20),
        dt.date(2026, 4, 5),
        dt.date(2027, 3, 28),
        dt.date(2038, 4, 25),
    ]


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            'contact_after_hours_phone = "+31 88 999 0905"\n',
            "",
            "houses.toml: house 'vh-breda': contact_after_hours_phone: missing (the piket number",
        ),
        (
            '"+31 88 999 0905"',
            '"088-9990905"',
            "house 'vh-breda': contact_after_hours_phone: '088-9990905' is not a Dutch number",
        ),
        (
            'contact_phone = "+31 88 999 0105"',
            'contact_phone = ""',
            "house 'vh-breda': contact_phone: must be a non-empty string",
        ),
        (HOURS + "\n", "", "house 'vh-breda': contact_office_hours: missing"),
        (
            'opens = "08:30"',
            'opens = "8.30"',
            "house 'vh-breda': contact_office_hours.opens: '8.30' is not a time of day as HH:MM",
        ),
        (
            'closes = "17:00"',
            'closes = "24:00"',
            "house 'vh-breda': contact_office_hours.closes: '24:00' is not a time of day",
        ),
        (
            'closes = "17:00"',
            'closes = "08:00"',
            "house 'vh-breda': contact_office_hours.closes: 08:00 is not later than opens 08:30",
        ),
        (
            '"friday"]',
            '"vrijdag"]',
            "house 'vh-breda': contact_office_hours.days: 'vrijdag' is not one of monday,",
        ),
        (
            WEEKDAYS,
            "[]",
            "house 'vh-breda': contact_office_hours.days: must be a non-empty list",
        ),
        (
            '"friday"]',
            '"friday", "monday"]',
            "house 'vh-breda': contact_office_hours.days: names a day twice",
        ),
        (
            'closes = "17:00"',
            'close = "17:00"',
            "house 'vh-breda': contact_office_hours: unknown key(s) close",
        ),
    ],
)
def test_the_loader_refuses_a_house_without_a_piket_number_or_with_malformed_hours(
    old: str, new: str, error: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_houses(breda_with(old, new))


def test_the_shipped_text_parses_as_the_loader_reads_it() -> None:
    assert parse_houses(SHIPPED) == load_houses()
