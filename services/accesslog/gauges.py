"""The access log's gauges for a service's metrics endpoint (services/common/metrics_endpoint.py):
its length and the age of its newest signed checkpoint, never an entry's content."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from prometheus_client.core import Metric
from sqlalchemy import Connection, func, select

from services.accesslog.store import checkpoints, entries
from services.common.db import utc
from services.common.metrics_endpoint import gauge


def access_log_gauges(connection: Connection, now: dt.datetime) -> Iterator[Metric]:
    """The access log's length, and the age of its newest signed checkpoint (when there is one):
    the registry's and the feedback service's."""
    head = connection.execute(select(func.max(entries.c.seq))).scalar()
    yield gauge(
        "baken_access_log_entries", "Entries in the access log (its head's number).", head or 0
    )
    signed = connection.execute(
        select(checkpoints.c.signed_time).order_by(checkpoints.c.seq.desc()).limit(1)
    ).scalar()
    if signed is not None:
        yield gauge(
            "baken_access_log_checkpoint_age_seconds",
            "Seconds since the access log's newest signed checkpoint.",
            max(0.0, (now - utc(signed)).total_seconds()),
        )
