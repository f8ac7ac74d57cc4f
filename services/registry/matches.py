"""Matchingsmelding: two houses mark the same person, and each is to hear of the other.

In the SyncMarkers transaction that makes a marker live or changes it, the registry looks for
live markers of OTHER houses that carry one of its BSN pseudonyms. Each pair of markers not
matched before is recorded (`matches`, keyed by the pair of marker ids) and becomes two signals of
kind MATCH, one for each house, naming the other house and its target group, with the house's
own record id (so its source can attach the note to the right client); nothing else of the
other marker. A tombstone deletes the marker's pairs, so a marker that ends and returns is matched
anew. A resync, a re-keying or a new version of a matched marker tells nobody again.

Only BSN pseudonyms match. A name + birth-date pseudonym is good enough for a lookup, where a
person at ZSM stands before the KPC'er and the answer says it is the weaker match; a
matchingsmelding goes unasked to two houses, and two persons who share a normalised surname
(tussenvoegsels dropped) and a birth date would each have his marker disclosed to the other's
house.

Each pair is an access-log entry (processing activity `baken:matchingsmelding`, the caller the
adapter whose sync made the match, the shared pseudonyms as its subject, so the privacy
officer's data-subject report shows it), and its signals are written after it, under the log's
append lock, like a lookup's (services/registry/signals.py): they become visible in sequence
order.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, insert, or_, select

from services.accesslog.inquiry import MATCH_ACTIVITY, Inquiry, entry
from services.accesslog.store import AccessLog
from services.registry.markers import MarkerData, RecordKey, Tombstone
from services.registry.models import MarkerPseudonymRow, MarkerRow, MatchRow, SignalRow

markers = cast(Table, MarkerRow.__table__)
pseudonyms = cast(Table, MarkerPseudonymRow.__table__)
matches = cast(Table, MatchRow.__table__)
signals = cast(Table, SignalRow.__table__)

# baken.type.v1.PseudonymKind.PSEUDONYM_KIND_BSN (tests/test_matching.py holds them equal).
BSN_KIND = 1
# baken.registry.v1.SignalKind.
FLOWED_IN = 1
MATCH = 2
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class _Live:
    id: int
    house_id: str
    source_record_id: str
    target_group: str


def record(
    connection: Connection,
    changes: Iterable[MarkerData | Tombstone],
    *,
    log: AccessLog,
    inquiry: Inquiry,
    now: dt.datetime,
) -> int:
    """After a sync batch was written: forget the pairs of the markers it ended, record the new
    pairs of the markers it made live or changed, each with its entry and two MATCH signals.
    How many new pairs."""
    ended = [c.key for c in changes if isinstance(c, Tombstone)]
    live = [c for c in changes if isinstance(c, MarkerData)]
    if ended:
        forget(connection, list(_ids(connection, ended)))
    values = sorted({p.value for c in live for p in c.pseudonyms if p.kind == BSN_KIND})
    if not values:
        return 0
    carriers: dict[bytes, list[_Live]] = defaultdict(list)
    for start in range(0, len(values), _CHUNK):
        query = (
            select(
                pseudonyms.c.value,
                markers.c.id,
                markers.c.house_id,
                markers.c.source_record_id,
                markers.c.target_group,
            )
            .select_from(pseudonyms.join(markers, markers.c.id == pseudonyms.c.marker_id))
            .where(
                pseudonyms.c.value.in_(values[start : start + _CHUNK]),
                pseudonyms.c.kind == BSN_KIND,
                markers.c.deleted.is_(False),
            )
        )
        for value, *row in connection.execute(query):
            carriers[bytes(value)].append(_Live(*row))
    changed = {(c.key.house_id, c.key.source_record_id) for c in live}
    pairs: dict[tuple[int, int], tuple[_Live, _Live, set[bytes]]] = {}
    for value, found in carriers.items():
        for a in found:
            if (a.house_id, a.source_record_id) not in changed:
                continue
            for b in found:
                if b.house_id == a.house_id:
                    continue
                low, high = (a, b) if a.id < b.id else (b, a)
                pairs.setdefault((low.id, high.id), (low, high, set()))[2].add(value)
    if not pairs:
        return 0
    known = _known(connection, {i for pair in pairs for i in pair})
    new = [(ids, pair) for ids, pair in sorted(pairs.items()) if ids not in known]
    if not new:
        return 0
    connection.execute(
        insert(matches),
        [{"marker_low": low, "marker_high": high, "matched_time": now} for (low, high), _ in new],
    )
    entries = [
        entry(
            inquiry,
            now,
            "matched",
            activity=MATCH_ACTIVITY,
            subject=sorted(shared),
            houses=sorted({a.house_id, b.house_id}),
        )
        for _, (a, b, shared) in new
    ]
    sequences = log.append(connection, entries, now)
    rows: list[dict[str, Any]] = []
    for seq, (_, (a, b, _shared)) in zip(sequences, new, strict=True):
        for this, other in ((a, b), (b, a)):
            rows.append(
                {
                    "house_id": this.house_id,
                    "source_record_id": this.source_record_id,
                    "case_reference": None,
                    "zsm_location": "",
                    "lookup_time": now,
                    "access_log_seq": seq,
                    "kind": MATCH,
                    "other_house_id": other.house_id,
                    "other_target_group": other.target_group,
                }
            )
    connection.execute(insert(signals), rows)
    return len(new)


def forget(connection: Connection, ids: Sequence[int]) -> None:
    """Forget the pairs of the markers `ids` (they ended): a marker that returns is matched
    anew."""
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        connection.execute(
            delete(matches).where(
                or_(matches.c.marker_low.in_(chunk), matches.c.marker_high.in_(chunk))
            )
        )


def _ids(connection: Connection, keys: Sequence[RecordKey]) -> Iterable[int]:
    by_house: dict[tuple[str, str], list[str]] = defaultdict(list)
    for k in keys:
        by_house[k.source_system, k.house_id].append(k.source_record_id)
    for (system, house), records in by_house.items():
        for start in range(0, len(records), _CHUNK):
            yield from connection.execute(
                select(markers.c.id).where(
                    markers.c.source_system == system,
                    markers.c.house_id == house,
                    markers.c.source_record_id.in_(records[start : start + _CHUNK]),
                )
            ).scalars()


def _known(connection: Connection, ids: set[int]) -> set[tuple[int, int]]:
    """The recorded pairs among these markers."""
    listed = sorted(ids)
    known: set[tuple[int, int]] = set()
    for start in range(0, len(listed), _CHUNK):
        chunk = listed[start : start + _CHUNK]
        known |= {
            (low, high)
            for low, high in connection.execute(
                select(matches.c.marker_low, matches.c.marker_high).where(
                    matches.c.marker_low.in_(chunk)
                )
            )
        }
    return known
