"""The Dutch public holidays, on which a Safety House's desk is closed whatever the weekday.

The algemeen erkende feestdagen of the Algemene termijnenwet (art. 3): New Year's Day, Easter
Sunday and Monday, King's Day (27 April, or the 26th when the 27th is a Sunday), 5 May
(Liberation Day, every year), Ascension Day, Whit Sunday and Monday, and Christmas Day and
Boxing Day. Good Friday is not one of them, nor are 24 and 31 December.
"""

from __future__ import annotations

import datetime as dt
import functools


def easter_sunday(year: int) -> dt.date:
    """Easter Sunday of the Gregorian calendar (the anonymous algorithm, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


@functools.cache
def public_holidays(year: int) -> frozenset[dt.date]:
    easter = easter_sunday(year)
    kings_day = dt.date(year, 4, 27)
    if kings_day.isoweekday() == 7:
        kings_day = dt.date(year, 4, 26)
    return frozenset(
        {
            dt.date(year, 1, 1),
            easter,
            easter + dt.timedelta(days=1),
            kings_day,
            dt.date(year, 5, 5),
            easter + dt.timedelta(days=39),  # Ascension Day
            easter + dt.timedelta(days=49),  # Whit Sunday
            easter + dt.timedelta(days=50),  # Whit Monday
            dt.date(year, 12, 25),
            dt.date(year, 12, 26),
        }
    )


def is_public_holiday(day: dt.date) -> bool:
    return day in public_holidays(day.year)


def is_working_day(day: dt.date) -> bool:
    """Monday to Friday, and not a public holiday."""
    return day.isoweekday() <= 5 and not is_public_holiday(day)


def on_working_day(
    moment: dt.datetime, time_of_day: dt.time, working_days: int, zone: dt.tzinfo
) -> dt.datetime:
    """`time_of_day` (local to `zone`) on the `working_days`-th working day after the day of
    `moment` there: "13:00 on the next working day" asked on a Friday evening is Monday 13:00,
    or Tuesday when Monday is Easter Monday. The day of `moment` itself never counts, so the
    deadline is always after it."""
    if working_days < 1:
        raise ValueError("working_days: 1 or more")
    day = moment.astimezone(zone).date()
    left = working_days
    while left:
        day += dt.timedelta(days=1)
        if is_working_day(day):
            left -= 1
    return dt.datetime.combine(day, time_of_day, tzinfo=zone)
