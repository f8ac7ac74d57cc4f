"""SQL for the registry, in SQLAlchemy Core: the hot paths (lookup, sync) stay off the ORM."""

from __future__ import annotations

import datetime as dt
import secrets
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    Table,
    bindparam,
    delete,
    insert,
    inspect,
    select,
    text,
    update,
)

from services.common import db
from services.common.at_rest import Sealer
from services.common.checks import PseudonymRef
from services.registry.markers import (
    MarkerData,
    RecordKey,
    Tombstone,
    content_bytes,
)
from services.registry.models import MarkerPseudonymRow, MarkerRow
from services.registry.sync import StoredState

markers = cast(Table, MarkerRow.__table__)
pseudonyms = cast(Table, MarkerPseudonymRow.__table__)
KEY_CHUNK = 1000

# Lookups are the hot path. Their SQL is compiled from Core once per dialect and number of values
# and runs straight on a pooled DBAPI connection: SQLAlchemy's per-execution work (connection
# wrapper, cache key, expanding IN, result object) cost three times the query itself. The number
# of values is padded to a power of two by repeating one (which changes nothing in an IN), so few
# statements exist, and one query serves a whole BatchLookup message.
_LOOKUP_COLUMNS = (
    markers.c.uid,
    markers.c.source_system,
    markers.c.house_id,
    markers.c.source_record_id,
    markers.c.source_version,
    markers.c.target_group,
    markers.c.plan_status,
    markers.c.mark_date,
    markers.c.advice,
    markers.c.advice_date,
    markers.c.at_information,
    markers.c.minor_until,
    pseudonyms.c.kind,
    pseudonyms.c.value,
)
MAX_LOOKUP_VALUES = 512


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    uid: str
    state: StoredState


@dataclass(frozen=True, slots=True)
class Write:
    """The final state of one record after a batch, and whether its row exists yet."""

    stored_id: int | None
    uid: str
    change: MarkerData | Tombstone
    state: StoredState  # the change's digests, computed once by the caller


class Found(NamedTuple):
    """A live marker carrying a looked-up pseudonym, that pseudonym's kind and value."""

    uid: str
    source_system: str
    house_id: str
    source_record_id: str
    source_version: int
    target_group: str
    plan_status: str
    mark_date: dt.date
    advice: bytes | None  # sealed (at_rest.Sealer)
    advice_date: dt.date | None
    at_information: bytes | None  # sealed JSON object
    minor_until: dt.date | None
    kind: int
    value: bytes


class _LookupSql:
    """The lookup statement as this dialect's SQL text, one per padded number of values."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._texts: dict[int, tuple[str, tuple[str, ...] | None]] = {}

    def statement(self, arity: int) -> tuple[str, tuple[str, ...] | None]:
        """(SQL, parameter names in positional order, or None for named parameters)."""
        text = self._texts.get(arity)
        if text is None:
            compiled = (
                select(*_LOOKUP_COLUMNS)
                .select_from(pseudonyms.join(markers, markers.c.id == pseudonyms.c.marker_id))
                .where(pseudonyms.c.value.in_([bindparam(f"v{i}") for i in range(arity)]))
                .compile(dialect=self._dialect)
            )
            names = tuple(compiled.positiontup) if compiled.positiontup is not None else None
            text = self._texts[arity] = (str(compiled), names)
        return text

    def run(self, cursor: Any, values: Sequence[bytes]) -> list[Found]:
        found: list[Found] = []
        for start in range(0, len(values), MAX_LOOKUP_VALUES):
            chunk = list(values[start : start + MAX_LOOKUP_VALUES])
            arity = 1 << (len(chunk) - 1).bit_length()
            chunk += chunk[-1:] * (arity - len(chunk))
            sql, names = self.statement(arity)
            params: Any = {f"v{i}": v for i, v in enumerate(chunk)}
            if names is not None:
                params = tuple(params[name] for name in names)
            cursor.execute(sql, params)
            found += [
                Found(
                    u,
                    ss,
                    h,
                    r,
                    ver,
                    tg,
                    ps,
                    _day(md),
                    _bytes(a),
                    _day(ad),
                    _bytes(at),
                    _day(mu),
                    k,
                    bytes(v),
                )
                for u, ss, h, r, ver, tg, ps, md, a, ad, at, mu, k, v in cursor.fetchall()
            ]
        return found


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    return bytes(value) if value is not None else None


def _day(value: dt.date | str | None) -> Any:
    """Dates as the driver returns them: a date (psycopg) or ISO text (SQLite)."""
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


class Finder:
    """Finds live markers by pseudonym value."""

    def __init__(self, engine: Engine) -> None:
        self._sql = _LookupSql(engine.dialect)

    def find(self, connection: Connection, values: Sequence[bytes]) -> list[Found]:
        """One row per (marker, matching pseudonym) for every live marker of the values, read
        within the connection's transaction."""
        if not values:
            return []
        cursor = connection.connection.cursor()
        try:
            return self._sql.run(cursor, values)
        finally:
            cursor.close()


def _by_key(
    connection: Connection, keys: Iterable[RecordKey], *columns: Any
) -> Iterator[tuple[RecordKey, Any]]:
    """(key, row of columns) for each key that has a row, in one query per house (and chunk),
    so that each runs on the unique index (source_record_id, house_id, source_system)."""
    by_house: dict[tuple[str, str], list[str]] = defaultdict(list)
    for k in keys:
        by_house[k.source_system, k.house_id].append(k.source_record_id)
    query = select(markers.c.source_record_id, *columns).where(
        markers.c.source_system == bindparam("system"),
        markers.c.house_id == bindparam("house"),
        markers.c.source_record_id.in_(bindparam("records", expanding=True)),
    )
    for (system, house), records in by_house.items():
        for start in range(0, len(records), KEY_CHUNK):
            chunk = records[start : start + KEY_CHUNK]
            for row in connection.execute(
                query, {"system": system, "house": house, "records": chunk}
            ):
                yield RecordKey(system, house, row[0]), row


# Any fixed number: the key of the PostgreSQL advisory lock that serialises sync transactions.
SYNC_LOCK_KEY = 0x6261_6B65_6E01


def serialise_sync(connection: Connection) -> None:
    """Hold off every other registry's sync on this database until this transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: db.write_transaction took the
    write lock at BEGIN already."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SYNC_LOCK_KEY})


def load_states(connection: Connection, keys: Iterable[RecordKey]) -> dict[RecordKey, Stored]:
    return {
        key: Stored(id_, uid, StoredState(version, deleted, content, pseudo, record))
        for key, (_, id_, uid, version, deleted, content, pseudo, record) in _by_key(
            connection,
            keys,
            markers.c.id,
            markers.c.uid,
            markers.c.source_version,
            markers.c.deleted,
            markers.c.content_digest,
            markers.c.pseudonyms_digest,
            markers.c.record_digest,
        )
    }


_TOMBSTONE_VALUES: dict[str, object] = {
    "deleted": True,
    "target_group": None,
    "plan_status": None,
    "mark_date": None,
    "advice": None,
    "advice_date": None,
    "at_information": None,
    "minor_until": None,
    "content_digest": b"",
    "pseudonyms_digest": b"",
    "record_digest": b"",
}


_VALUE_KEYS = ("source_version", "synced_time", *_TOMBSTONE_VALUES)
_KEY_KEYS = ("uid", "source_system", "house_id", "source_record_id")


class _WriteSql:
    """A sync's three bulk statements for one dialect (db.Bulk): of a batch of 1,000 changes,
    SQLAlchemy's per-row work took more time than the database."""

    def __init__(self, dialect: Dialect) -> None:
        self.insert_markers = db.Bulk(insert(markers), dialect, (*_KEY_KEYS, *_VALUE_KEYS))
        self.update_markers = db.Bulk(
            update(markers).where(markers.c.id == bindparam("marker_id")),
            dialect,
            ("marker_id", *_VALUE_KEYS),
        )
        self.insert_pseudonyms = db.Bulk(
            insert(pseudonyms), dialect, ("marker_id", "value", "kind", "key_id")
        )


_write_sql_for = db.PerDialect(_WriteSql)


def _values(w: Write, now: dt.datetime, sealer: Sealer) -> dict[str, object]:
    change = w.change
    if isinstance(change, Tombstone):
        return {"source_version": change.source_version, "synced_time": now, **_TOMBSTONE_VALUES}
    at_information = change.at_information_json()
    return {
        "source_version": change.source_version,
        "synced_time": now,
        "deleted": False,
        "target_group": change.target_group,
        "plan_status": change.plan_status,
        "mark_date": change.mark_date,
        "advice": sealer.seal(w.uid, "advice", change.advice) if change.advice else None,
        "advice_date": change.advice_date,
        "at_information": (
            sealer.seal(w.uid, "at_information", at_information) if at_information else None
        ),
        "minor_until": change.minor_until,
        "content_digest": w.state.content_digest,
        "pseudonyms_digest": w.state.pseudonyms_digest,
        "record_digest": w.state.record_digest,
    }


def _pseudonym_rows(marker_id: int, refs: Iterable[PseudonymRef]) -> list[dict[str, object]]:
    return [
        {"marker_id": marker_id, "value": p.value, "kind": p.kind, "key_id": p.key_id} for p in refs
    ]


def write(
    connection: Connection, writes: Sequence[Write], now: dt.datetime, sealer: Sealer
) -> None:
    """Insert new records, update changed ones (waarom-informatie sealed), and replace the
    pseudonyms of both."""
    sql = _write_sql_for(connection)
    new = [w for w in writes if w.stored_id is None]
    existing = [w for w in writes if w.stored_id is not None]
    pseudonym_rows: list[dict[str, object]] = []
    if new:
        rows = [
            {
                "uid": w.uid,
                "source_system": w.change.key.source_system,
                "house_id": w.change.key.house_id,
                "source_record_id": w.change.key.source_record_id,
                **_values(w, now, sealer),
            }
            for w in new
        ]
        # A plain executemany, then the new ids by key: RETURNING in parameter order made
        # SQLAlchemy run one INSERT per row on SQLite.
        sql.insert_markers.run(connection, rows)
        ids = {
            key: row[1]
            for key, row in _by_key(connection, (w.change.key for w in new), markers.c.id)
        }
        for w in new:
            if isinstance(w.change, MarkerData):
                pseudonym_rows += _pseudonym_rows(ids[w.change.key], w.change.pseudonyms)
    if existing:
        sql.update_markers.run(
            connection, [{"marker_id": w.stored_id, **_values(w, now, sealer)} for w in existing]
        )
        stale = [w.stored_id for w in existing]
        for start in range(0, len(stale), KEY_CHUNK):
            connection.execute(
                delete(pseudonyms).where(
                    pseudonyms.c.marker_id.in_(stale[start : start + KEY_CHUNK])
                )
            )
        for w in existing:
            if isinstance(w.change, MarkerData):
                assert w.stored_id is not None
                pseudonym_rows += _pseudonym_rows(w.stored_id, w.change.pseudonyms)
    sql.insert_pseudonyms.run(connection, pseudonym_rows)


def tombstone(connection: Connection, ids: Sequence[int], now: dt.datetime) -> None:
    """Make the markers `ids` tombstones at their stored version, as their source's delete
    would: all dat- and waarom-informatie and the pseudonyms go, the key and version stay, so a
    replay of that version does not bring the person back (only a new version does)."""
    for start in range(0, len(ids), KEY_CHUNK):
        chunk = ids[start : start + KEY_CHUNK]
        connection.execute(delete(pseudonyms).where(pseudonyms.c.marker_id.in_(chunk)))
        connection.execute(
            update(markers)
            .where(markers.c.id.in_(chunk))
            .values(synced_time=now, **_TOMBSTONE_VALUES)
        )


def refresh_digests(connection: Connection, states: Mapping[int, StoredState]) -> None:
    """Store new content and record digests for unchanged markers (by row id)."""
    if states:
        connection.execute(
            update(markers).where(markers.c.id == bindparam("marker_id")),
            [
                {
                    "marker_id": id_,
                    "content_digest": s.content_digest,
                    "record_digest": s.record_digest,
                }
                for id_, s in states.items()
            ],
        )


def sealed_key_sample(engine: Engine) -> str | None:
    """The at-rest key id of one live marker's content digest; None for no markers (or none
    stored before migration 0002 keyed them)."""
    if not inspect(engine).has_table("markers"):
        return None
    with engine.connect() as connection:
        digest = connection.execute(
            select(markers.c.content_digest).where(markers.c.deleted.is_(False)).limit(1)
        ).scalar()
    if not digest or len(digest) == 32:  # a plain SHA-256 from before revision 0002
        return None
    return Sealer.key_of(bytes(digest))


def new_uid() -> str:
    return secrets.token_hex(10)


def reseal(engine: Engine, sealer: Sealer, *, chunk: int = 1000) -> int:
    """Seal every marker's waarom-informatie, and key its content digest, under the sealer's
    current key, a chunk of markers per sync transaction; returns how many markers changed.
    The record digests of changed markers are cleared: the next resync stores them anew.
    Safe to interrupt and rerun, and to run while adapters sync."""
    changed, after = 0, 0
    while True:
        with db.write_transaction(engine) as connection:
            serialise_sync(connection)
            rows = connection.execute(
                select(
                    markers.c.id,
                    markers.c.uid,
                    markers.c.advice,
                    markers.c.at_information,
                    markers.c.content_digest,
                    markers.c.target_group,
                    markers.c.plan_status,
                    markers.c.mark_date,
                    markers.c.advice_date,
                    markers.c.minor_until,
                )
                .where(markers.c.id > after, markers.c.deleted.is_(False))
                .order_by(markers.c.id)
                .limit(chunk)
            ).all()
            if not rows:
                return changed
            updates = [values for row in rows if (values := _resealed(row, sealer)) is not None]
            if updates:
                connection.execute(
                    update(markers).where(markers.c.id == bindparam("marker_id")), updates
                )
            changed += len(updates)
            after = rows[-1][0]


def _resealed(row: Any, sealer: Sealer) -> dict[str, object] | None:
    id_, uid, advice, at, digest, target_group, plan_status, mark_date, advice_date, minor = row
    if all(
        value is None or Sealer.key_of(bytes(value)) == sealer.current
        for value in (advice, at, digest)
    ):
        return None
    advice_text = sealer.open(uid, "advice", bytes(advice)) if advice else None
    at_json = sealer.open(uid, "at_information", bytes(at)) if at else None
    content = content_bytes(
        target_group,
        plan_status,
        _day(mark_date).isoformat(),
        advice_text,
        _day(advice_date).isoformat() if advice_date else None,
        at_json,
        _day(minor).isoformat() if minor else None,
    )
    return {
        "marker_id": id_,
        "advice": sealer.seal(uid, "advice", advice_text) if advice_text else None,
        "at_information": sealer.seal(uid, "at_information", at_json) if at_json else None,
        "content_digest": sealer.digest(content),
        "record_digest": b"",
    }
