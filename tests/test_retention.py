"""The retention schedule: where a period ends."""

from __future__ import annotations

import datetime as dt

import pytest

from baken.clock import AMSTERDAM
from services.common.retention import day_cutoff, month_cutoff
from services.common.settings import RetentionSettings


def test_a_period_in_months_ends_at_a_month_start_in_dutch_time() -> None:
    now = dt.datetime(2026, 12, 15, 10, tzinfo=dt.UTC)
    assert month_cutoff(now, 24) == dt.datetime(2024, 12, 1, tzinfo=AMSTERDAM)
    assert month_cutoff(now, 12) == dt.datetime(2025, 12, 1, tzinfo=AMSTERDAM)
    # 23:30 UTC on 31 January is 1 February in the Netherlands.
    assert month_cutoff(dt.datetime(2027, 1, 31, 23, 30, tzinfo=dt.UTC), 1) == dt.datetime(
        2027, 1, 1, tzinfo=AMSTERDAM
    )
    assert day_cutoff(now, 90) == now - dt.timedelta(days=90)


def test_the_schedule_refuses_a_period_of_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAKEN_RETENTION_ACCESS_LOG_MONTHS", "0")
    with pytest.raises(ValueError, match="access_log_months"):
        RetentionSettings()
    with pytest.raises(ValueError, match="at least 1"):
        month_cutoff(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 0)
