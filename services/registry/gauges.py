"""What the registry's metrics endpoint reads from its database at a scrape
(services/common/metrics_endpoint.py): counts and ages, never a row's content."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import cast

from prometheus_client.core import Metric
from sqlalchemy import Connection, Table, false, func, select

from services.accesslog.store import checkpoints, log, utc
from services.common.metrics_endpoint import gauge
from services.registry.models import MarkerRow, SignalRow

markers = cast(Table, MarkerRow.__table__)
signals = cast(Table, SignalRow.__table__)


def access_log_gauges(connection: Connection, now: dt.datetime) -> Iterator[Metric]:
    """The access log's length, and the age of its newest signed checkpoint (when there is one):
    the registry's and the feedback service's."""
    head = connection.execute(select(func.max(log.c.seq))).scalar()
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


def registry_gauges(connection: Connection, now: dt.datetime) -> Iterator[Metric]:
    held = connection.execute(
        select(func.count()).select_from(markers).where(markers.c.deleted == false())
    ).scalar()
    yield gauge("baken_markers", "Markers held (tombstones not counted).", held or 0)
    waiting = connection.execute(select(func.count()).select_from(signals)).scalar()
    yield gauge(
        "baken_signals_waiting",
        "Signals of ZSM look-ups the feedback service has not taken over yet.",
        waiting or 0,
    )
    yield from access_log_gauges(connection, now)
