"""Signals for the feedback service: a ZSM desk's lookup found a house's marker, so that house is
to hear that its person flowed in at ZSM (the terugkoppeling).

A lookup by a ZSM desk (a party of the register with a region and one of the ZSM roles) for
intake-en-selectie or afdoeningsbeslissing that finds markers writes one signal per marker
found, whatever the caller may see of it, in the transaction of its access-log entry: no entry,
no signal. The feedback service alone (role `service`, admitted by a covenant for
terugkoppeling) pulls them with PullSignals, oldest first; every signal up to the sequence it
confirms (`after_sequence`) the registry forgets. A page of signals is an access-log entry.

Signals are written after the access-log append, while the transaction holds the log's append
lock (services/accesslog/store.py), so they become visible in sequence order: a pull never
sees signal n + 1 before signal n, and a confirmed sequence never passes an unseen signal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, delete, insert, select

from baken.clock import Clock
from baken.errors import PermissionDenied
from baken.purposes import INTAKE, TERUGKOPPELING
from services.accesslog.inquiry import SIGNALS_ACTIVITY, Inquiry, entry
from services.accesslog.store import AccessLog
from services.common import db
from services.common.access import AccessPolicy
from services.common.db import utc
from services.registry.models import SignalRow

signals = cast(Table, SignalRow.__table__)
_SIGNAL_KEYS = (
    "house_id",
    "source_record_id",
    "case_reference",
    "zsm_location",
    "lookup_time",
    "access_log_seq",
)
_insert_signals = db.PerDialect(lambda dialect: db.Bulk(insert(signals), dialect, _SIGNAL_KEYS))

# The lookups that make a signal, and who makes them: the ZSM desks.
SIGNAL_PURPOSES = frozenset({INTAKE, "afdoeningsbeslissing"})
# Who pulls them: a Baken service (the feedback service) that a covenant admits for
# terugkoppeling.
PULLING_ROLE = "service"


@dataclass(frozen=True, slots=True)
class Signal:
    seq: int
    house_id: str
    source_record_id: str
    case_reference: str | None
    zsm_location: str
    lookup_time: dt.datetime
    access_log_seq: int
    # 1 flowed in, 2 match (services/registry/matches.py): then the other house and its
    # target group; the time is the sync's.
    kind: int = 1
    other_house_id: str | None = None
    other_target_group: str | None = None


@dataclass(frozen=True, slots=True)
class FlowedIn:
    """One lookup's markers found: (house id, source record id) each, and the lookup: its
    case, and the ZSM desk that looked."""

    markers: Sequence[tuple[str, str]]
    case_reference: str | None
    zsm_location: str


def record(
    connection: Connection,
    flowed_in: Sequence[FlowedIn],
    sequences: Sequence[int],
    now: dt.datetime,
) -> None:
    """Write the signals of the lookups, each with its access-log entry's sequence, in the
    caller's transaction, after the entries were appended (one insert for all)."""
    rows: list[dict[str, Any]] = [
        {
            "house_id": house_id,
            "source_record_id": record_id,
            "case_reference": lookup.case_reference,
            "zsm_location": lookup.zsm_location,
            "lookup_time": now,
            "access_log_seq": seq,
        }
        for lookup, seq in zip(flowed_in, sequences, strict=True)
        for house_id, record_id in lookup.markers
    ]
    _insert_signals(connection).run(connection, rows)


class Signals:
    def __init__(
        self, engine: Engine, clock: Clock, *, policy: AccessPolicy, log: AccessLog
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._policy = policy
        self._log = log

    def pull(self, inquiry: Inquiry, after_sequence: int, limit: int) -> list[Signal]:
        """Forget every signal up to `after_sequence`, then the next `limit` signals in sequence
        order; a page that is not empty is an access-log entry, in the same transaction."""
        covenants = self._admit(inquiry)
        now = self._clock.now()
        with db.write_transaction(self._engine) as connection:
            if after_sequence:
                connection.execute(delete(signals).where(signals.c.seq <= after_sequence))
            query = (
                select(signals)
                .where(signals.c.seq > after_sequence)
                .order_by(signals.c.seq)
                .limit(limit)
            )
            page = [
                Signal(
                    seq=row.seq,
                    house_id=row.house_id,
                    source_record_id=row.source_record_id,
                    case_reference=row.case_reference,
                    zsm_location=row.zsm_location,
                    lookup_time=utc(row.lookup_time),
                    access_log_seq=row.access_log_seq,
                    kind=row.kind,
                    other_house_id=row.other_house_id,
                    other_target_group=row.other_target_group,
                )
                for row in connection.execute(query)
            ]
            if page:
                pulled = entry(
                    inquiry,
                    now,
                    "disclosed",
                    activity=SIGNALS_ACTIVITY,
                    covenants=covenants,
                    signal_count=len(page),
                    first_signal=page[0].seq,
                    last_signal=page[-1].seq,
                )
                self._log.append(connection, [pulled], now)
        return page

    def _admit(self, inquiry: Inquiry) -> tuple[str, ...]:
        """The covenants that admit the caller for terugkoppeling; a refusal is logged."""
        try:
            if inquiry.caller.role != PULLING_ROLE:
                self._policy.check_party(inquiry.caller)
                raise PermissionDenied(
                    "NOT_A_FEEDBACK_SERVICE", "only the feedback service pulls signals"
                )
            return self._policy.authorise(
                inquiry.caller, TERUGKOPPELING, self._clock.today()
            ).covenants
        except PermissionDenied as denied:
            now = self._clock.now()
            with db.write_transaction(self._engine) as connection:
                refusal = entry(
                    inquiry,
                    now,
                    "denied",
                    activity=SIGNALS_ACTIVITY,
                    denial_reason=denied.reason,
                )
                self._log.append(connection, [refusal], now)
            raise
