"""The retention schedule's arithmetic (docs/RETENTION.md): where a period ends, on the
services' clock."""

from __future__ import annotations

import datetime as dt

from baken.clock import AMSTERDAM


def month_cutoff(now: dt.datetime, months: int) -> dt.datetime:
    """The start (Dutch time, as UTC) of the month `months` months before the current one:
    what was recorded before it has had its period. The current month and the `months` whole
    months before it are kept."""
    if months < 1:
        raise ValueError("a period in months is at least 1")
    local = now.astimezone(AMSTERDAM)
    index = local.year * 12 + local.month - 1 - months
    start = dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=AMSTERDAM)
    return start.astimezone(dt.UTC)


def day_cutoff(now: dt.datetime, days: int) -> dt.datetime:
    """`days` days before `now`."""
    if days < 1:
        raise ValueError("a period in days is at least 1")
    return now.astimezone(dt.UTC) - dt.timedelta(days=days)
