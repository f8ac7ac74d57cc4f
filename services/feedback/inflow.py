"""A ZSM desk's inflow (instroom): every suspect its case system registered, recorded by the
desk's inflow adapter or screen, with whether and when Baken checked him. The inflow is the
denominator of the coverage figures (services/feedback/figures.py), counted apart from the
look-ups it should cause.

One entry per region's desk and case. Recording it again fills in what was missing (the check,
a decision held for the desk, the offence category) and never takes back what was recorded. The
pseudonyms serve the desk's screen while the case is worked: they go with the case's final
decision, or SUBJECT_KEPT after the entry was recorded (shown no longer from then on, erased by
the next retention run). Every record and every list is written to the access log with the
pseudonyms concerned, in the transaction that reads or writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from sqlalchemy.exc import IntegrityError

from baken.errors import FailedPrecondition
from services.accesslog.inquiry import Inquiry
from services.common import db
from services.feedback import repository
from services.feedback.context import Context, pseudonym_values
from services.feedback.values import DecisionStage, InflowRecord, InflowView, SubjectAge

INFLOW_ACTIVITY = "baken:zsm-instroom"
SUBJECT_KEPT = dt.timedelta(days=14)
# ListInflow without `since`: the last day, a shift and then some.
DEFAULT_WINDOW = dt.timedelta(hours=24)


class Inflow:
    def __init__(self, context: Context) -> None:
        self._context = context

    def record(self, inquiry: Inquiry, record: InflowRecord) -> InflowView:
        region = self._context.desk_region(inquiry.caller)
        try:
            return self._record(inquiry, region, record)
        except IntegrityError:
            # The same case, recorded by a concurrent call a moment ago: merge into it.
            return self._record(inquiry, region, record)

    def _record(self, inquiry: Inquiry, region: str, record: InflowRecord) -> InflowView:
        context = self._context
        now = context.now()
        with db.write_transaction(context.engine) as connection:
            context.check_not_purged(connection, record.case_reference)
            earlier = repository.inflow_entry(connection, region, record.case_reference)
            if earlier is None:
                view = _new(record, region, inquiry.caller.id, now)
                repository.add_inflow(connection, view)
                outcome = "recorded"
            else:
                view = _merged(earlier, record)
                outcome = "unchanged" if view == earlier else "updated"
                if outcome == "updated":
                    repository.update_inflow(connection, view)
            context.append(
                connection,
                inquiry,
                now,
                outcome,
                activity=INFLOW_ACTIVITY,
                subject=pseudonym_values(record.subject),
                case_reference=record.case_reference,
            )
        return _shown(view, now)

    def since(self, inquiry: Inquiry, since: dt.datetime | None) -> list[InflowView]:
        """The caller's region's entries, newest arrest first; the listing is logged with the
        pseudonyms it shows."""
        context = self._context
        region = context.desk_region(inquiry.caller)
        now = context.now()
        with db.write_transaction(context.engine) as connection:
            views = [
                _shown(v, now)
                for v in repository.inflow_since(connection, region, since or now - DEFAULT_WINDOW)
            ]
            context.append(
                connection,
                inquiry,
                now,
                "listed",
                activity=INFLOW_ACTIVITY,
                subject=[value for v in views for value in pseudonym_values(v.subject)],
                entries=len(views),
            )
        return views


def _shown(view: InflowView, now: dt.datetime) -> InflowView:
    """The entry as a desk may see it: without pseudonyms once SUBJECT_KEPT has passed, even
    before the retention run (services/feedback/retention.py) erased them."""
    if view.subject and view.recorded_time < now - SUBJECT_KEPT:
        return dataclasses.replace(view, subject=())
    return view


def _new(record: InflowRecord, region: str, party_id: str, now: dt.datetime) -> InflowView:
    return InflowView(
        id=uuid.uuid4().hex[:20],
        region=region,
        case_reference=record.case_reference,
        subject=record.subject,
        arrest_time=record.arrest_time,
        minor=record.subject_age == SubjectAge.MINOR,
        offence_category=record.offence_category,
        checked_time=record.checked_time,
        known=record.known and record.checked_time is not None,
        held_decision=record.held_decision,
        decision_id=None,
        decision_stage=None,
        recorded_by=party_id,
        recorded_time=now,
    )


def _merged(earlier: InflowView, record: InflowRecord) -> InflowView:
    """What was recorded, with what it lacked filled in from `record`. The case stays one
    person's: pseudonyms with nothing in common with the entry's are refused."""
    if earlier.subject and not {p.value for p in earlier.subject} & {
        p.value for p in record.subject
    }:
        raise FailedPrecondition(
            "INFLOW_OTHER_SUBJECT",
            "case {caseReference} is in the inflow for another person",
            metadata={"caseReference": earlier.case_reference},
        )
    merged = earlier
    if earlier.checked_time is None and record.checked_time is not None:
        merged = dataclasses.replace(merged, checked_time=record.checked_time, known=record.known)
    if not earlier.offence_category and record.offence_category:
        merged = dataclasses.replace(merged, offence_category=record.offence_category)
    decided = earlier.decision_stage == DecisionStage.FINAL
    if record.held_decision is not None and earlier.held_decision is None and not decided:
        merged = dataclasses.replace(merged, held_decision=record.held_decision)
    return merged
