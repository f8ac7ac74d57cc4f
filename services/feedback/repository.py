"""The feedback service's tables, other than the delivery outbox's (services/feedback/outbox.py):
decisions, advice requests, the desks' inflow, the signal cursor and the cases purged by
technisch sepot 01. Each function runs on the caller's connection, so the caller decides what
commits together.

The statements every decision runs are built once, with named parameters: building a statement
and its cache key cost SQLAlchemy more than running it did."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from services.common.db import utc
from services.feedback.models import (
    AdviceRequestRow,
    DecisionAdviceRow,
    DecisionRow,
    InflowRow,
    PurgedCaseRow,
    SignalCursorRow,
)
from services.feedback.outbox import deliveries
from services.feedback.values import (
    AdviceRequestView,
    DecisionCode,
    DecisionStage,
    HeldDecision,
    HouseAdvice,
    InflowView,
    Pseudonym,
)

decisions = cast(Table, DecisionRow.__table__)
decision_advice = cast(Table, DecisionAdviceRow.__table__)
advice_requests = cast(Table, AdviceRequestRow.__table__)
cursor_table = cast(Table, SignalCursorRow.__table__)
purged_cases = cast(Table, PurgedCaseRow.__table__)
inflow = cast(Table, InflowRow.__table__)


# -- decisions ------------------------------------------------------------------------------------

_ADD_DECISION = decisions.insert()
_ADD_DECISION_ADVICE = decision_advice.insert()
_DECISIONS_OF_KEYS = select(decisions.c.request_key, decisions.c.id).where(
    decisions.c.request_key.in_(bindparam("keys", expanding=True))
)
_ITEMS_OF_DECISIONS = (
    select(deliveries.c.decision_id, deliveries.c.key, deliveries.c.house_id, deliveries.c.kind)
    .where(deliveries.c.decision_id.in_(bindparam("ids", expanding=True)))
    .order_by(deliveries.c.seq)
)


@dataclass(frozen=True, slots=True)
class NewDecision:
    """A decision as management information counts it (services/feedback/figures.py), with its
    advice line per house."""

    id: str
    request_key: str | None
    case_reference: str
    party_id: str
    recorded_time: dt.datetime
    code: int
    stage: int
    minor: bool
    known: bool
    advice_current: bool
    advice_followed: int
    complex_problems: bool
    deviation_reason_given: bool
    house_advice: Sequence[HouseAdvice] = ()


def add_decisions(connection: Connection, new: Sequence[NewDecision]) -> None:
    connection.execute(
        _ADD_DECISION,
        [
            {
                "id": d.id,
                "request_key": d.request_key,
                "case_reference": d.case_reference,
                "party_id": d.party_id,
                "recorded_time": d.recorded_time,
                "code": int(d.code),
                "stage": int(d.stage),
                "minor": d.minor,
                "known": d.known,
                "advice_current": d.advice_current,
                "advice_followed": int(d.advice_followed),
                "complex_problems": d.complex_problems,
                "deviation_reason_given": d.deviation_reason_given,
            }
            for d in new
        ],
    )
    lines = [
        {
            "decision_id": d.id,
            "house_id": line.house_id,
            "advice_followed": int(line.followed),
            "deviation_reason_given": bool(line.deviation_reason),
        }
        for d in new
        for line in d.house_advice
    ]
    if lines:
        connection.execute(_ADD_DECISION_ADVICE, lines)


def earlier_decisions(
    connection: Connection, request_keys: Sequence[str]
) -> dict[str, tuple[str, list[tuple[str, str, int]]]]:
    """Per request key under which a decision was recorded: its id, and its items as (key,
    house id, kind number) in the order they were queued."""
    if not request_keys:
        return {}
    ids = dict(connection.execute(_DECISIONS_OF_KEYS, {"keys": list(request_keys)}).all())
    if not ids:
        return {}
    items: dict[str, list[tuple[str, str, int]]] = {i: [] for i in ids.values()}
    for row in connection.execute(_ITEMS_OF_DECISIONS, {"ids": list(ids.values())}):
        items[row.decision_id].append((row.key, row.house_id, row.kind))
    return {key: (decision_id, items[decision_id]) for key, decision_id in ids.items()}


def delete_decisions(connection: Connection, case_reference: str) -> int:
    of_case = select(decisions.c.id).where(decisions.c.case_reference == case_reference)
    connection.execute(delete(decision_advice).where(decision_advice.c.decision_id.in_(of_case)))
    return connection.execute(
        delete(decisions).where(decisions.c.case_reference == case_reference)
    ).rowcount


# -- advice requests ------------------------------------------------------------------------------

_HOUSES_ASKED = select(advice_requests.c.case_reference, advice_requests.c.house_id).where(
    advice_requests.c.case_reference.in_(bindparam("cases", expanding=True)),
    advice_requests.c.requested_by == bindparam("party_id"),
)
_ADVICE_IN_TERM = (
    select(advice_requests.c.case_reference, advice_requests.c.house_id, advice_requests.c.due_time)
    .where(
        advice_requests.c.case_reference.in_(bindparam("cases", expanding=True)),
        advice_requests.c.answered_time.is_(None),
        advice_requests.c.cancelled_time.is_(None),
        advice_requests.c.due_time > bindparam("now", type_=advice_requests.c.due_time.type),
    )
    .order_by(advice_requests.c.due_time.desc())
)


def houses_asked(
    connection: Connection, case_references: Collection[str], party_id: str
) -> dict[str, set[str]]:
    """Per case, the houses `party_id` asked for advice in it: their answer is advice it could
    weigh, whatever its covenant shows of the house at a look-up."""
    asked: dict[str, set[str]] = {case: set() for case in case_references}
    if asked:
        rows = connection.execute(_HOUSES_ASKED, {"cases": list(asked), "party_id": party_id})
        for case, house_id in rows:
            asked[case].add(house_id)
    return asked


def advice_in_term(
    connection: Connection, case_references: Collection[str], now: dt.datetime
) -> dict[str, tuple[str, dt.datetime]]:
    """Per case with an unanswered, uncancelled advice request still in term, the one whose
    term ends first: (house id, due time)."""
    if not case_references:
        return {}
    rows = connection.execute(_ADVICE_IN_TERM, {"cases": list(case_references), "now": now})
    # Latest term first, so that the earliest of a case is the one left.
    return {case: (house_id, utc(due_time)) for case, house_id, due_time in rows}


def add_advice_request(connection: Connection, view: AdviceRequestView) -> None:
    connection.execute(
        advice_requests.insert().values(
            id=view.id,
            case_reference=view.case_reference,
            house_id=view.house_id,
            delivery_key=view.delivery_key,
            requested_by=view.requested_by,
            requested_time=view.requested_time,
            due_time=view.due_time,
            source_record_id=view.source_record_id,
        )
    )


def advice_request(connection: Connection, request_id: str) -> AdviceRequestView | None:
    row = connection.execute(
        select(advice_requests).where(advice_requests.c.id == request_id)
    ).first()
    return None if row is None else _view(row)


def mark_answered(connection: Connection, request_id: str, now: dt.datetime) -> None:
    """Answered at `now`, unless it was answered or cancelled before."""
    connection.execute(
        update(advice_requests)
        .where(
            advice_requests.c.id == request_id,
            advice_requests.c.answered_time.is_(None),
            advice_requests.c.cancelled_time.is_(None),
        )
        .values(answered_time=now)
    )


def mark_cancelled(connection: Connection, request_id: str, now: dt.datetime) -> bool:
    """Cancelled at `now`, if it is still unanswered and uncancelled (a concurrent answer or
    cancellation wins); whether this call cancelled it."""
    result = connection.execute(
        update(advice_requests)
        .where(
            advice_requests.c.id == request_id,
            advice_requests.c.answered_time.is_(None),
            advice_requests.c.cancelled_time.is_(None),
        )
        .values(cancelled_time=now)
    )
    return result.rowcount == 1


def unanswered_advice_requests(
    connection: Connection, *, due_by: dt.datetime | None, house_id: str | None
) -> list[AdviceRequestView]:
    """Earliest term first, cancelled ones left out; only those due by `due_by` and of
    `house_id`, when given."""
    query = select(advice_requests).where(
        advice_requests.c.answered_time.is_(None),
        advice_requests.c.cancelled_time.is_(None),
    )
    if due_by is not None:
        query = query.where(advice_requests.c.due_time <= due_by)
    if house_id is not None:
        query = query.where(advice_requests.c.house_id == house_id)
    rows = connection.execute(query.order_by(advice_requests.c.due_time)).all()
    return [_view(r) for r in rows]


def delete_advice_requests(connection: Connection, case_reference: str) -> int:
    return connection.execute(
        delete(advice_requests).where(advice_requests.c.case_reference == case_reference)
    ).rowcount


def _view(r: Row[Any]) -> AdviceRequestView:
    return AdviceRequestView(
        r.id,
        r.case_reference,
        r.house_id,
        r.delivery_key,
        r.requested_by,
        utc(r.requested_time),
        utc(r.due_time),
        None if r.answered_time is None else utc(r.answered_time),
        None if r.cancelled_time is None else utc(r.cancelled_time),
        r.source_record_id or "",
    )


# -- the desks' inflow ----------------------------------------------------------------------------


def add_inflow(connection: Connection, view: InflowView) -> None:
    connection.execute(inflow.insert().values(id=view.id, **_inflow_values(view)))


def update_inflow(connection: Connection, view: InflowView) -> None:
    connection.execute(update(inflow).where(inflow.c.id == view.id).values(**_inflow_values(view)))


def _inflow_values(view: InflowView) -> dict[str, Any]:
    held = view.held_decision
    return {
        "region": view.region,
        "case_reference": view.case_reference,
        "recorded_by": view.recorded_by,
        "recorded_time": view.recorded_time,
        "subject": json.dumps([[p.kind, p.key_id, p.value.hex()] for p in view.subject])
        if view.subject
        else None,
        "arrest_time": view.arrest_time,
        "minor": view.minor,
        "offence_category": view.offence_category,
        "checked_time": view.checked_time,
        "known": view.known,
        "held_decision": None
        if held is None
        else json.dumps(
            {
                "code": int(held.code),
                "sepot_code": held.sepot_code,
                "stage": int(held.stage),
                "request_key": held.request_key,
                "problem": held.problem,
                "probation_report_requested": held.probation_report_requested,
            }
        ),
        "decision_id": view.decision_id,
        "decision_stage": None if view.decision_stage is None else int(view.decision_stage),
    }


def inflow_entry(connection: Connection, region: str, case_reference: str) -> InflowView | None:
    row = connection.execute(
        select(inflow).where(inflow.c.region == region, inflow.c.case_reference == case_reference)
    ).first()
    return None if row is None else _inflow_view(row)


def inflow_since(connection: Connection, region: str, since: dt.datetime) -> list[InflowView]:
    """The region's entries of suspects arrested at or after `since`, newest arrest first."""
    rows = connection.execute(
        select(inflow)
        .where(inflow.c.region == region, inflow.c.arrest_time >= since)
        .order_by(inflow.c.arrest_time.desc(), inflow.c.id)
    ).all()
    return [_inflow_view(r) for r in rows]


def erase_inflow_subjects(connection: Connection, recorded_before: dt.datetime) -> int:
    """Forget the pseudonyms of entries recorded before `recorded_before`: a count remains."""
    return connection.execute(
        update(inflow)
        .where(inflow.c.subject.is_not(None), inflow.c.recorded_time < recorded_before)
        .values(subject=None)
    ).rowcount


_LINK_DECISION = (
    update(inflow)
    .where(
        inflow.c.region == bindparam("of_region"),
        inflow.c.case_reference == bindparam("of_case"),
    )
    .values(decision_id=bindparam("decided"), decision_stage=bindparam("stage"), held_decision=None)
)
# A final decision ends the need for the pseudonyms.
_LINK_FINAL_DECISION = _LINK_DECISION.values(subject=None)


def link_inflow_decisions(
    connection: Connection, links: Sequence[tuple[str, str, str, DecisionStage]]
) -> None:
    """Each case's latest decision on its inflow entry, given as (region, case reference,
    decision id, stage) in the order decided: a decision held for the desk is settled, and a
    final one ends the need for the pseudonyms."""
    for final, run in itertools.groupby(links, lambda link: link[3] == DecisionStage.FINAL):
        connection.execute(
            _LINK_FINAL_DECISION if final else _LINK_DECISION,
            [
                {"of_region": region, "of_case": case, "decided": decision_id, "stage": int(stage)}
                for region, case, decision_id, stage in run
            ],
        )


def delete_inflow(connection: Connection, case_reference: str) -> int:
    return connection.execute(
        delete(inflow).where(inflow.c.case_reference == case_reference)
    ).rowcount


def _inflow_view(r: Row[Any]) -> InflowView:
    held = None
    if r.held_decision is not None:
        h = json.loads(r.held_decision)
        held = HeldDecision(
            code=DecisionCode(h["code"]),
            sepot_code=h["sepot_code"],
            stage=DecisionStage(h["stage"]),
            request_key=h["request_key"],
            problem=h["problem"],
            probation_report_requested=h["probation_report_requested"],
        )
    subject = tuple(
        Pseudonym(kind, key_id, bytes.fromhex(value))
        for kind, key_id, value in json.loads(r.subject or "[]")
    )
    return InflowView(
        id=r.id,
        region=r.region,
        case_reference=r.case_reference,
        subject=subject,
        arrest_time=utc(r.arrest_time),
        minor=r.minor,
        offence_category=r.offence_category,
        checked_time=None if r.checked_time is None else utc(r.checked_time),
        known=r.known,
        held_decision=held,
        decision_id=r.decision_id,
        decision_stage=None if r.decision_stage is None else DecisionStage(r.decision_stage),
        recorded_by=r.recorded_by,
        recorded_time=utc(r.recorded_time),
    )


# -- the signal cursor ----------------------------------------------------------------------------


def signal_cursor(connection: Connection) -> int:
    """The sequence of the last signal taken over (0: none yet)."""
    value = connection.execute(select(cursor_table.c.after_sequence)).scalar()
    return int(value or 0)


def set_signal_cursor(connection: Connection, after: int) -> None:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(
        dialect.insert(cursor_table)
        .values(id=1, after_sequence=after)
        .on_conflict_do_update(index_elements=["id"], set_={"after_sequence": after})
    )


# -- cases purged by technisch sepot 01 -----------------------------------------------------------


def add_purged_case(connection: Connection, case_digest: bytes, now: dt.datetime) -> None:
    """Remember the case (by its keyed hash) as purged; a second purge keeps the first time."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(
        dialect.insert(purged_cases)
        .values(case_digest=case_digest, purged_time=now)
        .on_conflict_do_nothing(index_elements=["case_digest"])
    )


_PURGED = select(purged_cases.c.case_digest).where(
    purged_cases.c.case_digest.in_(bindparam("digests", expanding=True))
)


def purged(connection: Connection, case_digests: Mapping[str, Sequence[bytes]]) -> set[str]:
    """The cases purged, of those given with their digests (one per key of the ring)."""
    digests = [d for of_case in case_digests.values() for d in of_case]
    if not digests:
        return set()
    found = set(connection.execute(_PURGED, {"digests": digests}).scalars())
    return {case for case, of_case in case_digests.items() if found.intersection(of_case)}
