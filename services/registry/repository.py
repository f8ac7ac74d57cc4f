"""SQL for the registry, in SQLAlchemy Core: the hot paths (lookup, sync) stay off the ORM."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, tuple_, update

from services.registry.markers import MarkerData, PseudonymRef, RecordKey, Tombstone
from services.registry.models import MarkerPseudonymRow, MarkerRow
from services.registry.sync import StoredState

markers = cast(Table, MarkerRow.__table__)
pseudonyms = cast(Table, MarkerPseudonymRow.__table__)
KEY_CHUNK = 500

_LOOKUP = (
    select(
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
        pseudonyms.c.kind,
    )
    .select_from(pseudonyms.join(markers, markers.c.id == pseudonyms.c.marker_id))
    .where(pseudonyms.c.value.in_(bindparam("values", expanding=True)))
)


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    state: StoredState


@dataclass(frozen=True, slots=True)
class Write:
    """The final state of one record after a batch, and whether its row exists yet."""

    stored_id: int | None
    change: MarkerData | Tombstone


class Found(NamedTuple):
    """A live marker carrying a looked-up pseudonym, and that pseudonym's kind."""

    uid: str
    source_system: str
    house_id: str
    source_record_id: str
    source_version: int
    target_group: str
    plan_status: str
    mark_date: dt.date
    advice: str | None
    advice_date: dt.date | None
    at_information: str | None
    kind: int


def find(connection: Connection, values: Sequence[bytes]) -> list[Found]:
    """One row per (marker, matching pseudonym) for every live marker of the values."""
    return [Found._make(row) for row in connection.execute(_LOOKUP, {"values": list(values)})]


def load_states(connection: Connection, keys: Iterable[RecordKey]) -> dict[RecordKey, Stored]:
    wanted = [(k.source_system, k.house_id, k.source_record_id) for k in keys]
    found: dict[RecordKey, Stored] = {}
    columns = (markers.c.source_system, markers.c.house_id, markers.c.source_record_id)
    for start in range(0, len(wanted), KEY_CHUNK):
        rows = connection.execute(
            select(
                *columns,
                markers.c.id,
                markers.c.source_version,
                markers.c.deleted,
                markers.c.content_digest,
                markers.c.pseudonyms_digest,
            ).where(tuple_(*columns).in_(wanted[start : start + KEY_CHUNK]))
        )
        for system, house, record, id_, version, deleted, content, pseudo in rows:
            found[RecordKey(system, house, record)] = Stored(
                id_, StoredState(version, deleted, content, pseudo)
            )
    return found


def _values(change: MarkerData | Tombstone, now: dt.datetime) -> dict[str, object]:
    base: dict[str, object] = {
        "source_version": change.source_version,
        "synced_time": now,
    }
    if isinstance(change, Tombstone):
        return base | {
            "deleted": True,
            "target_group": None,
            "plan_status": None,
            "mark_date": None,
            "advice": None,
            "advice_date": None,
            "at_information": None,
            "content_digest": b"",
            "pseudonyms_digest": b"",
        }
    return base | {
        "deleted": False,
        "target_group": change.target_group,
        "plan_status": change.plan_status,
        "mark_date": change.mark_date,
        "advice": change.advice,
        "advice_date": change.advice_date,
        "at_information": change.at_information_json(),
        "content_digest": change.content_digest(),
        "pseudonyms_digest": change.pseudonyms_digest(),
    }


def _pseudonym_rows(marker_id: int, refs: Iterable[PseudonymRef]) -> list[dict[str, object]]:
    return [
        {"marker_id": marker_id, "value": p.value, "kind": p.kind, "key_id": p.key_id} for p in refs
    ]


def write(connection: Connection, writes: Sequence[Write], now: dt.datetime) -> None:
    """Insert new records, update changed ones, and replace the pseudonyms of both."""
    new = [w for w in writes if w.stored_id is None]
    existing = [w for w in writes if w.stored_id is not None]
    pseudonym_rows: list[dict[str, object]] = []
    if new:
        rows = [
            {
                "uid": secrets.token_hex(10),
                "source_system": w.change.key.source_system,
                "house_id": w.change.key.house_id,
                "source_record_id": w.change.key.source_record_id,
                **_values(w.change, now),
            }
            for w in new
        ]
        ids = (
            connection.execute(
                insert(markers).returning(markers.c.id, sort_by_parameter_order=True), rows
            )
            .scalars()
            .all()
        )
        for marker_id, w in zip(ids, new, strict=True):
            if isinstance(w.change, MarkerData):
                pseudonym_rows += _pseudonym_rows(marker_id, w.change.pseudonyms)
    if existing:
        connection.execute(
            update(markers).where(markers.c.id == bindparam("marker_id")),
            [{"marker_id": w.stored_id, **_values(w.change, now)} for w in existing],
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
    if pseudonym_rows:
        connection.execute(insert(pseudonyms), pseudonym_rows)


def at_information(text: str | None) -> dict[str, str] | None:
    return json.loads(text) if text else None
