"""Time, injected: freshness rules and deadlines are tested to the day and second."""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Aware UTC time."""
        ...

    def today(self) -> dt.date:
        """The calendar date in the Netherlands."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def today(self) -> dt.date:
        return self.now().astimezone(AMSTERDAM).date()


class FixedClock:
    """A clock that stands still until moved; for tests and the reproducible demo."""

    def __init__(self, now: dt.datetime) -> None:
        self._now = now

    def now(self) -> dt.datetime:
        return self._now

    def today(self) -> dt.date:
        return self._now.astimezone(AMSTERDAM).date()

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta
