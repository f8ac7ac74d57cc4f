"""The feedback service's expiry (docs/RETENTION.md): a month that had its period goes whole,
the months kept count as before, the run is an access-log entry of its own saying what kind and
how many went, and the log still verifies. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, insert, select, text

import services.common.db
from baken.clock import AMSTERDAM, FixedClock
from services.accesslog import signing
from services.accesslog import verify as log_verify
from services.accesslog.expiry import Expirer
from services.accesslog.store import AccessLog, CheckpointPolicy
from services.common.settings import RetentionSettings
from services.feedback import retention
from services.feedback.retention import decisions, inflow
from services.feedback.server import MIGRATIONS

MONTHS = [dt.datetime(2026, m, 10, 12, tzinfo=AMSTERDAM) for m in (7, 8, 9, 10)]


@pytest.fixture
def engine(database_url: str, engines: Callable[[str], Engine]) -> Engine:
    engine = engines(database_url)
    services.common.db.upgrade_to_head(MIGRATIONS, engine)
    return engine


def play(engine: Engine) -> None:
    """Decisions and inflow in July to October, a different number each month."""
    with engine.begin() as connection:
        for m, month in enumerate(MONTHS):
            for n in range(m + 2):
                key = f"d{m}-{n}"
                connection.execute(
                    insert(decisions).values(
                        id=key,
                        request_key=None,
                        case_reference=f"ZSM-{key}",
                        party_id="zsm-midden-nederland-ovj",
                        recorded_time=month,
                        code=1,
                        stage=1,
                        minor=False,
                        known=True,
                        advice_current=True,
                        advice_followed=1,
                        complex_problems=False,
                        deviation_reason_given=False,
                    )
                )
                connection.execute(
                    insert(inflow).values(
                        id=key,
                        region="midden-nederland",
                        case_reference=f"ZSM-{key}",
                        recorded_by="zsm-midden-nederland-kpc",
                        recorded_time=month,
                        subject=None,
                        arrest_time=month,
                        minor=False,
                        offence_category="x",
                        checked_time=None,
                        known=False,
                        held_decision=None,
                        decision_id=None,
                        decision_stage=None,
                    )
                )


def per_month(engine: Engine) -> dict[int, tuple[int, int]]:
    """Decisions and inflow per month, counted as the report counts them (by month start)."""
    counted = {}
    with engine.connect() as connection:
        for month in MONTHS:
            start = month.replace(day=1, hour=0)
            end = (start + dt.timedelta(days=32)).replace(day=1)
            d = connection.execute(
                select(func.count()).where(
                    decisions.c.recorded_time >= start, decisions.c.recorded_time < end
                )
            ).scalar_one()
            i = connection.execute(
                select(func.count()).where(
                    inflow.c.arrest_time >= start, inflow.c.arrest_time < end
                )
            ).scalar_one()
            counted[month.month] = (d, i)
    return counted


def test_an_expired_month_goes_whole_and_the_months_kept_count_as_before(engine: Engine) -> None:
    play(engine)
    before = per_month(engine)
    signer = signing.generate("cp1")
    log = AccessLog(signer, checkpoint_every=1000, checkpoint_seconds=30)
    schedule = RetentionSettings(decision_months=2, inflow_months=2)
    clock = FixedClock(dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC))  # keeps September on
    expirer = Expirer(
        engine,
        log,
        clock,
        schedule,
        party_id="feedback",
        kinds=retention.expire,
    )

    assert expirer.expire() == {"decisions": 2 + 3, "inflow": 2 + 3}
    assert expirer.expire() == {}  # nothing more had its period

    after = per_month(engine)
    assert after == {7: (0, 0), 8: (0, 0), 9: before[9], 10: before[10]}
    with engine.connect() as connection:
        body = json.loads(connection.execute(text("SELECT body FROM access_log")).scalar_one())
        result = log_verify.verify(connection, {"cp1": signer.public_key()}, CheckpointPolicy())
    assert body["processing_activity"] == "baken:bewaartermijn"
    assert body["expired"] == {"decisions": 5, "inflow": 5}
    assert "ZSM-" not in json.dumps(body)
    assert result.ok
