"""What the registry removes when its retention periods end (docs/RETENTION.md): a marker
whose plan ended lapses, as VIR lets a signal lapse; a signal nobody took over and a match go
after their periods."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Connection, Table, delete, select

from services.common.settings import RetentionSettings
from services.registry import matches, repository
from services.registry.models import MarkerRow, MatchRow, SignalRow

markers = cast(Table, MarkerRow.__table__)
signals = cast(Table, SignalRow.__table__)
match_rows = cast(Table, MatchRow.__table__)

PLAN_ENDED = "closed"


def expire(connection: Connection, now: dt.datetime, schedule: RetentionSettings) -> dict[str, int]:
    """One run's removals by kind, in the expirer's transaction."""
    repository.serialise_sync(connection)  # a sync in flight must not rewrite a lapsed marker
    ended = now - dt.timedelta(days=schedule.marker_lapse_days)
    lapsed = list(
        connection.execute(
            select(markers.c.id).where(
                markers.c.deleted.is_(False),
                markers.c.plan_status == PLAN_ENDED,
                markers.c.synced_time < ended,
            )
        ).scalars()
    )
    matches.forget(connection, lapsed)
    repository.tombstone(connection, lapsed, now)
    return {
        "markers_lapsed": len(lapsed),
        "signals": connection.execute(
            delete(signals).where(
                signals.c.lookup_time < now - dt.timedelta(days=schedule.signal_days)
            )
        ).rowcount,
        "matches": connection.execute(
            delete(match_rows).where(
                match_rows.c.matched_time < now - dt.timedelta(days=schedule.match_days)
            )
        ).rowcount,
    }
