"""Deadlines on working days (baken/holidays.py): weekends and the Dutch public holidays skip."""

from __future__ import annotations

import datetime as dt

import pytest

from baken.clock import AMSTERDAM
from baken.holidays import is_working_day, on_working_day

ONE = dt.time(13, 0)


def _local(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=AMSTERDAM)


@pytest.mark.parametrize(
    ("asked", "working_days", "due"),
    [
        # Friday evening: Monday.
        (_local(2026, 12, 4, 21, 30), 1, _local(2026, 12, 7, 13, 0)),
        # Just after midnight on a Tuesday: Wednesday, never the same day.
        (_local(2026, 12, 8, 0, 5), 1, _local(2026, 12, 9, 13, 0)),
        # The day before Christmas (a Thursday): Christmas, Boxing Day, Sunday; Monday.
        (_local(2026, 12, 24, 2, 0), 1, _local(2026, 12, 28, 13, 0)),
        # Good Friday is a working day, Easter Monday is not: Tuesday.
        (_local(2027, 3, 26, 22, 0), 1, _local(2027, 3, 30, 13, 0)),
        (_local(2027, 3, 25, 22, 0), 2, _local(2027, 3, 30, 13, 0)),
        # King's Day 2025 on a Sunday, so the 26th (a Saturday); Monday the 28th works.
        (_local(2025, 4, 25, 18, 0), 1, _local(2025, 4, 28, 13, 0)),
        # Ascension Day 2026 (Thursday 14 May): Friday.
        (_local(2026, 5, 13, 23, 0), 1, _local(2026, 5, 15, 13, 0)),
        # New Year's Eve is a working day, New Year's Day is not.
        (_local(2026, 12, 30, 20, 0), 1, _local(2026, 12, 31, 13, 0)),
        (_local(2026, 12, 31, 20, 0), 1, _local(2027, 1, 4, 13, 0)),
    ],
)
def test_a_time_on_the_nth_working_day(
    asked: dt.datetime, working_days: int, due: dt.datetime
) -> None:
    # Asked in UTC as the service has it; the day counts in Amsterdam.
    assert on_working_day(asked.astimezone(dt.UTC), ONE, working_days, AMSTERDAM) == due


def test_summer_time_is_local_time() -> None:
    due = on_working_day(_local(2026, 3, 27, 23, 0).astimezone(dt.UTC), ONE, 1, AMSTERDAM)
    assert due == _local(2026, 3, 30, 13, 0) and due.utcoffset() == dt.timedelta(hours=2)


def test_weekends_and_holidays_are_no_working_days() -> None:
    assert not is_working_day(dt.date(2026, 12, 5))  # Saturday
    assert not is_working_day(dt.date(2026, 5, 5))  # Liberation Day, every year
    assert not is_working_day(dt.date(2026, 5, 25))  # Whit Monday
    assert is_working_day(dt.date(2026, 12, 24))
    with pytest.raises(ValueError, match="working_days"):
        on_working_day(_local(2026, 12, 4, 21, 30), ONE, 0, AMSTERDAM)
