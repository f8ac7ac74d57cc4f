"""How current a house's advice is (docs/PROCESS.md §3 step 0).

CURRENT until 6 calendar months after the advice date; AGED from then up to and including the
day 12 months after it ("not older than 1 year"); EXPIRED after that.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import functools


class Freshness(enum.Enum):
    CURRENT = "current"
    AGED = "aged"
    EXPIRED = "expired"
    NO_ADVICE = "no_advice"


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later, clamped to the month's end (31 Aug + 6 = 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


# Asked for every marker found, of a few thousand advice dates a day.
@functools.lru_cache(maxsize=8192)
def freshness(advice_date: dt.date | None, today: dt.date) -> Freshness:
    if advice_date is None:
        return Freshness.NO_ADVICE
    if today < add_months(advice_date, 6):
        return Freshness.CURRENT
    if today <= add_months(advice_date, 12):
        return Freshness.AGED
    return Freshness.EXPIRED
