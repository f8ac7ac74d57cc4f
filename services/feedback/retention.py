"""What the feedback service removes when its retention periods end (docs/RETENTION.md). Each
kind goes by the month the report counts it in, so every month it can still show is whole;
nothing still at work goes (an item not acknowledged, a request not answered)."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Connection, Table, delete, exists, select

from services.common.retention import month_cutoff
from services.common.settings import RetentionSettings
from services.feedback import repository
from services.feedback.inflow import SUBJECT_KEPT
from services.feedback.models import (
    AdviceRequestRow,
    DecisionAdviceRow,
    DecisionRow,
    DeliveryRow,
    InflowRow,
    PurgedCaseRow,
)
from services.feedback.outbox import ACKED, DEAD

decisions = cast(Table, DecisionRow.__table__)
decision_advice = cast(Table, DecisionAdviceRow.__table__)
deliveries = cast(Table, DeliveryRow.__table__)
advice_requests = cast(Table, AdviceRequestRow.__table__)
inflow = cast(Table, InflowRow.__table__)
purged_cases = cast(Table, PurgedCaseRow.__table__)


def expire(connection: Connection, now: dt.datetime, schedule: RetentionSettings) -> dict[str, int]:
    def before(months: int) -> dt.datetime:
        return month_cutoff(now, months)

    done = deliveries.c.state.in_([ACKED, DEAD])
    at_work = exists().where(deliveries.c.decision_id == decisions.c.id, ~done)
    gone = select(decisions.c.id).where(
        decisions.c.recorded_time < before(schedule.decision_months), ~at_work
    )
    counts = {
        "decision_advice": connection.execute(
            delete(decision_advice).where(decision_advice.c.decision_id.in_(gone))
        ).rowcount,
        "decisions": connection.execute(delete(decisions).where(decisions.c.id.in_(gone))).rowcount,
        "advice_requests": connection.execute(
            delete(advice_requests).where(
                advice_requests.c.requested_time < before(schedule.advice_request_months),
                advice_requests.c.answered_time.is_not(None)
                | advice_requests.c.cancelled_time.is_not(None),
            )
        ).rowcount,
    }
    asked = exists().where(advice_requests.c.delivery_key == deliveries.c.key)
    counts["deliveries"] = connection.execute(
        delete(deliveries).where(
            deliveries.c.created_time < before(schedule.delivery_months), done, ~asked
        )
    ).rowcount
    counts["inflow"] = connection.execute(
        delete(inflow).where(inflow.c.arrest_time < before(schedule.inflow_months))
    ).rowcount
    # What stays of the inflow is a count: the pseudonyms go SUBJECT_KEPT after recording.
    counts["inflow_pseudonyms"] = repository.erase_inflow_subjects(connection, now - SUBJECT_KEPT)
    counts["purged_cases"] = connection.execute(
        delete(purged_cases).where(purged_cases.c.purged_time < before(schedule.purged_case_months))
    ).rowcount
    return counts
