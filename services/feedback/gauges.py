"""What the feedback service's metrics endpoint reads from its database at a scrape
(services/common/metrics_endpoint.py): the outbox's counts per house and its oldest waiting
item's age, and the access log's; never an item's content, key or case."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator

from prometheus_client.core import Metric
from sqlalchemy import Connection, func, select

from services.accesslog.gauges import access_log_gauges
from services.common.db import utc
from services.common.metrics_endpoint import Gauges, gauge, labelled_gauge
from services.feedback.outbox import DEAD, PENDING, deliveries


def feedback_gauges(houses: Collection[str]) -> Gauges:
    """The gauges, every house of `houses` named (0 when it has nothing), so that a series
    does not vanish when a house's last item goes."""

    def read(connection: Connection, now: dt.datetime) -> Iterator[Metric]:
        for state, name, documentation in (
            (PENDING, "baken_outbox_pending", "Items not yet acknowledged by the house."),
            (DEAD, "baken_outbox_dead_letters", "Items given up on, for an operator to requeue."),
        ):
            # One partial index per state (models.DeliveryRow): acknowledged items are skipped.
            counts = dict.fromkeys(houses, 0) | {
                str(house): int(n)
                for house, n in connection.execute(
                    select(deliveries.c.house_id, func.count())
                    .where(deliveries.c.state == state)
                    .group_by(deliveries.c.house_id)
                )
            }
            yield labelled_gauge(name, documentation, "house", counts)
        oldest = connection.execute(
            select(func.min(deliveries.c.created_time)).where(deliveries.c.state == PENDING)
        ).scalar()
        yield gauge(
            "baken_outbox_oldest_pending_age_seconds",
            "Seconds the oldest item not yet acknowledged has waited (0: none waits).",
            0.0 if oldest is None else max(0.0, (now - utc(oldest)).total_seconds()),
        )
        yield from access_log_gauges(connection, now)

    return read
