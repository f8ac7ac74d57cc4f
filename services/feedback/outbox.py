"""The delivery outbox: items committed with what caused them, handed to each house's adapter
until acknowledged, then kept without content for management information. An item's content
(a decision's deviation reason may describe the person) is sealed at rest (AES-GCM, bound to the
item's key) until then.

An item is sent when it is due and no earlier item for the same person at the same house is
still pending (per-person order). Each send counts an attempt and sets the next one a backoff
later, so an item nobody acknowledges comes again: 1x, 2x, 4x ... the base, up to the cap. An
item sent `max_attempts` times without acknowledgement becomes a dead letter, and so does one
whose adapter reported `max_failures` times that its source cannot take it (a refusal does not
change by waiting long); a dead letter no longer holds back later items for the person. Only
sends count: a house whose adapter is away for a week loses no attempts and gets everything, in
order, on return.

Waiting subscribers are woken when this process commits items (`notify`), and poll otherwise
(items committed by another process, backoffs that end).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Table,
    bindparam,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from baken.backoff import Backoff
from baken.clock import Clock
from baken.errors import NotFound
from services.common import db
from services.common.at_rest import Sealer
from services.common.db import utc
from services.feedback import wire
from services.feedback.models import DeliveryRow
from services.feedback.routing import Item, route_retraction

deliveries = cast(Table, DeliveryRow.__table__)
PENDING, ACKED, DEAD = "pending", "acked", "dead"
NOT_ACKNOWLEDGED = "NOT_ACKNOWLEDGED"
MAX_FAILURE = 200
# What a purged case's reference is hashed with (services/feedback/models.py PurgedCaseRow).
_CASE = b"baken/feedback/purged-case\0"


@dataclass(frozen=True, slots=True)
class Sent:
    key: str
    attempt: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: str
    house_id: str
    kind: int
    attempts: int
    created_time: dt.datetime
    last_attempt_time: dt.datetime | None
    last_failure: str


# A house's pending items in the order they were made, a page at a time (its index walks them
# in order, so a take reads the head of the queue, not the whole backlog).
_PENDING = text(
    """
    SELECT seq, person_key, attempts, next_attempt_time <= :now AS due FROM deliveries
    WHERE house_id = :house AND state = 'pending' AND seq > :after
    ORDER BY seq LIMIT :page
    """
).bindparams(bindparam("now", type_=DateTime(timezone=True)))
_PAGE = 256
_PAYLOADS = select(deliveries.c.seq, deliveries.c.key, deliveries.c.payload).where(
    deliveries.c.seq.in_(bindparam("seqs", expanding=True))
)
# Sent, not yet acknowledged, and not yet due again: on their way to, or at, the adapter.
_IN_FLIGHT = text(
    """
    SELECT COUNT(*) FROM deliveries
    WHERE house_id = :house AND state = 'pending' AND attempts > 0 AND next_attempt_time > :now
    """
).bindparams(bindparam("now", type_=DateTime(timezone=True)))


_ATTEMPT = (
    update(deliveries)
    .where(deliveries.c.seq == bindparam("s"))
    .values(
        attempts=bindparam("a"),
        last_attempt_time=bindparam("t"),
        next_attempt_time=bindparam("n"),
    )
)

# A new item whose key is stored already is left as it is; the seqs of those stored.
_add_items = db.PerDialect(
    lambda dialect: (
        (postgresql if dialect.name == "postgresql" else sqlite)
        .insert(deliveries)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(deliveries.c.seq)
    )
)


def _due(connection: Connection, house_id: str, now: dt.datetime, room: int) -> list[Any]:
    """Up to `room` of the house's items that are due and have no earlier pending item for the
    same person, in order: the first pending item of each person, walked in order."""
    due: list[Any] = []
    persons: set[str] = set()
    after = 0
    while True:
        page = connection.execute(
            _PENDING, {"house": house_id, "now": now, "after": after, "page": _PAGE}
        ).all()
        for row in page:
            if row.person_key in persons:
                continue
            persons.add(row.person_key)
            if row.due:
                due.append(row)
                if len(due) == room:
                    return due
        if len(page) < _PAGE:
            return due
        after = page[-1].seq


_HOUSES_OF = select(deliveries.c.key, deliveries.c.house_id).where(
    deliveries.c.key.in_(bindparam("keys", expanding=True))
)
_APPLIED = (
    update(deliveries)
    .where(deliveries.c.key == bindparam("k"), deliveries.c.state != ACKED)
    .values(state=ACKED, acked_time=bindparam("t"), payload=None)
)
_FAILED = (
    update(deliveries)
    .where(deliveries.c.key == bindparam("k"), deliveries.c.state == PENDING)
    .values(last_failure=bindparam("f"), failures=deliveries.c.failures + 1)
)
_FAILED_TOO_OFTEN = (
    update(deliveries)
    .where(
        deliveries.c.key == bindparam("k"),
        deliveries.c.state == PENDING,
        deliveries.c.failures >= bindparam("m"),
    )
    .values(state=DEAD)
)


class Outbox:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        sealer: Sealer,
        backoff: Backoff,
        max_attempts: int,
        max_failures: int = 3,
        window: int,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._sealer = sealer
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._max_failures = max_failures
        self._window = window
        self._changed = threading.Condition()
        self._generation = 0
        self._streams: dict[str, int] = {}

    # -- writing items (inside the caller's transaction) --------------------------------------

    def add(
        self,
        connection: Connection,
        items: Sequence[Item],
        now: dt.datetime,
        *,
        case_reference: str | None,
        decision_id: str | None = None,
    ) -> int:
        """Store the items; an item whose key is stored already is left as it is (a signal for
        a case seen before). Returns how many are new. Call `notify` after the commit."""
        return self.add_all(connection, [(items, case_reference, decision_id)], now)

    def add_all(
        self,
        connection: Connection,
        groups: Sequence[tuple[Sequence[Item], str | None, str | None]],
        now: dt.datetime,
    ) -> int:
        """`add` for several groups of items, each with its case reference and decision id, in
        one statement."""
        rows = [
            {
                "key": item.key,
                "house_id": item.house_id,
                "person_key": item.person_key,
                "kind": int(item.kind),
                "case_reference": case_reference,
                "decision_id": decision_id,
                "state": PENDING,
                "attempts": 0,
                "failures": 0,
                "created_time": now,
                "next_attempt_time": now,
                "payload": self._sealer.seal_bytes(item.key, "payload", wire.encode(item.delivery)),
            }
            for items, case_reference, decision_id in groups
            for item in items
        ]
        if not rows:
            return 0
        result = connection.execute(_add_items(connection), rows)
        return len(result.all())

    def purge_case(
        self, connection: Connection, case_reference: str, now: dt.datetime
    ) -> tuple[int, int]:
        """Remove every item of the case, whatever its state, and queue a retraction for each
        one that was ever sent (acknowledged, on its way, or a dead letter): the house may
        hold it. An item never sent is only removed. Returns (removed, retractions).
        Retractions keep no case reference: nothing stored points at the case any more."""
        sent = connection.execute(
            select(deliveries.c.key, deliveries.c.house_id, deliveries.c.person_key)
            .where(
                deliveries.c.case_reference == case_reference,
                (deliveries.c.attempts > 0) | (deliveries.c.state == ACKED),
            )
            .order_by(deliveries.c.seq)
        ).all()
        result = connection.execute(
            delete(deliveries).where(deliveries.c.case_reference == case_reference)
        )
        retractions = [
            route_retraction(
                house_id=row.house_id, person_key=row.person_key, retracted_key=row.key, now=now
            )
            for row in sent
        ]
        self.add(connection, retractions, now, case_reference=None)
        return int(result.rowcount), len(retractions)

    def case_digest(self, case_reference: str) -> bytes:
        """The keyed hash by which a purged case is remembered (under the current key)."""
        return self._sealer.digest(_CASE + case_reference.encode("utf-8", "surrogatepass"))

    def case_digests(self, case_reference: str) -> list[bytes]:
        """The case's keyed hash under every key of the ring, to look it up by."""
        return self._sealer.digests(_CASE + case_reference.encode("utf-8", "surrogatepass"))

    # -- waking subscribers ---------------------------------------------------------------------

    def notify(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    @contextlib.contextmanager
    def stream(self, house_id: str) -> Iterator[None]:
        """Counts the house's open streams while it lasts."""
        with self._changed:
            self._streams[house_id] = self._streams.get(house_id, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                self._streams[house_id] -= 1

    def streams(self, house_id: str) -> int:
        """How many streams of the house are open now."""
        with self._changed:
            return self._streams.get(house_id, 0)

    def generation(self) -> int:
        with self._changed:
            return self._generation

    def wait(self, generation: int, timeout: float) -> None:
        """Until something changed since `generation`, or `timeout` seconds passed."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != generation, timeout)

    # -- sending and acknowledging --------------------------------------------------------------

    def take(self, house_id: str) -> list[Sent]:
        """The house's due items in order, each counted as an attempt now; an item out of
        attempts becomes a dead letter instead of being sent. At most `window` items are in
        flight per house: more would wait in the stream's buffers while their backoff runs
        out, and come again as duplicates the adapter must then skip."""
        now = self._clock.now()
        sent: list[Sent] = []
        with db.write_transaction(self._engine) as connection:
            in_flight = connection.execute(_IN_FLIGHT, {"house": house_id, "now": now}).scalar()
            room = self._window - int(in_flight or 0)
            if room <= 0:
                return []
            rows = _due(connection, house_id, now, room)
            dead = [r.seq for r in rows if r.attempts >= self._max_attempts]
            if dead:
                connection.execute(
                    update(deliveries)
                    .where(deliveries.c.seq.in_(dead), deliveries.c.last_failure.is_(None))
                    .values(last_failure=NOT_ACKNOWLEDGED)
                )
                connection.execute(
                    update(deliveries).where(deliveries.c.seq.in_(dead)).values(state=DEAD)
                )
            to_send = [r for r in rows if r.attempts < self._max_attempts]
            if to_send:
                sent = self._attempt(connection, to_send, now)
        if dead:
            self.notify()  # later items of those persons are free to go
        return sent

    def _attempt(self, connection: Connection, rows: Sequence[Any], now: dt.datetime) -> list[Sent]:
        """The items of `rows`, opened, each counted as an attempt now."""
        contents = {
            seq: (key, payload)
            for seq, key, payload in connection.execute(_PAYLOADS, {"seqs": [r.seq for r in rows]})
        }
        attempts = []
        sent = []
        for row in rows:
            attempt = row.attempts + 1
            attempts.append(
                {
                    "s": row.seq,
                    "a": attempt,
                    "t": now,
                    "n": now + dt.timedelta(seconds=self._backoff.delay(attempt)),
                }
            )
            key, payload = contents[row.seq]
            sent.append(Sent(key, attempt, self.opened(key, bytes(payload))))
        connection.execute(_ATTEMPT, attempts)
        return sent

    def opened(self, key: str, payload: bytes) -> bytes:
        """A stored payload, opened: the serialised Delivery."""
        return self._sealer.open_bytes(key, "payload", payload)

    def next_due(self, house_id: str) -> dt.datetime | None:
        with self._engine.connect() as connection:
            value = connection.execute(
                select(deliveries.c.next_attempt_time)
                .where(deliveries.c.house_id == house_id, deliveries.c.state == PENDING)
                .order_by(deliveries.c.next_attempt_time)
                .limit(1)
            ).scalar()
        return None if value is None else utc(value)

    def houses_of(self, keys: Sequence[str]) -> dict[str, str]:
        """The house of each item among `keys` that exists."""
        with self._engine.connect() as connection:
            return dict(connection.execute(_HOUSES_OF, {"keys": list(keys)}).all())

    def acknowledge(self, acknowledgements: Sequence[tuple[str, str | None]]) -> None:
        """Per (key, failure): the house applied the item (its content is dropped), or could
        not (it comes again after its backoff). A late acknowledgement of a dead letter still
        counts."""
        if not acknowledgements:
            return
        now = self._clock.now()
        applied = [{"k": key, "t": now} for key, failure in acknowledgements if failure is None]
        failed = [(key, failure) for key, failure in acknowledgements if failure is not None]
        with db.write_transaction(self._engine) as connection:
            if applied:
                connection.execute(_APPLIED, applied)
            if failed:
                connection.execute(_FAILED, [{"k": k, "f": f[:MAX_FAILURE]} for k, f in failed])
                connection.execute(
                    _FAILED_TOO_OFTEN, [{"k": k, "m": self._max_failures} for k, _ in failed]
                )
        self.notify()

    # -- dead letters -----------------------------------------------------------------------------

    def dead_letters(self, house_id: str | None) -> list[DeadLetter]:
        query = select(
            deliveries.c.key,
            deliveries.c.house_id,
            deliveries.c.kind,
            deliveries.c.attempts,
            deliveries.c.created_time,
            deliveries.c.last_attempt_time,
            deliveries.c.last_failure,
        ).where(deliveries.c.state == DEAD)
        if house_id is not None:
            query = query.where(deliveries.c.house_id == house_id)
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(deliveries.c.seq)).all()
        return [
            DeadLetter(
                r.key,
                r.house_id,
                r.kind,
                r.attempts,
                utc(r.created_time),
                None if r.last_attempt_time is None else utc(r.last_attempt_time),
                r.last_failure or NOT_ACKNOWLEDGED,
            )
            for r in rows
        ]

    def requeue(self, key: str) -> DeadLetter:
        """A dead letter goes out again as if new: attempts from zero, due now."""
        now = self._clock.now()
        with db.write_transaction(self._engine) as connection:
            result = connection.execute(
                update(deliveries)
                .where(deliveries.c.key == key, deliveries.c.state == DEAD)
                .values(
                    state=PENDING, attempts=0, failures=0, next_attempt_time=now, last_failure=None
                )
            )
            if result.rowcount != 1:
                raise NotFound("DEAD_LETTER_NOT_FOUND", "no dead letter has this key")
            row = connection.execute(
                select(deliveries.c.house_id, deliveries.c.kind, deliveries.c.created_time).where(
                    deliveries.c.key == key
                )
            ).one()
        self.notify()
        return DeadLetter(key, row.house_id, row.kind, 0, utc(row.created_time), None, "")


def state_counts(connection: Connection) -> dict[str, Any]:
    """Items per state (for tests and management information)."""
    rows = connection.execute(
        text("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state")
    ).all()
    return {r.state: r.n for r in rows}
