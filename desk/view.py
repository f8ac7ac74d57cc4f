"""What the page gets: the services' answers as plain JSON-able data, holding only what the
answer held for the signed-in user. Never a pseudonym: the browser names an inflow entry by its
name, and the screen's server keeps the subject."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import timestamp_pb2

from baken import enums
from baken.clock import AMSTERDAM
from baken.feedback.v1 import feedback_service_pb2 as fb
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2
from baken.render import office_hours_text, withheld_reason

OUTCOMES = {
    registry_service_pb2.LOOKUP_OUTCOME_HIT: "HIT",
    registry_service_pb2.LOOKUP_OUTCOME_NO_HIT: "NO HIT",
    registry_service_pb2.LOOKUP_OUTCOME_WITHHELD: "WITHHELD",
    registry_service_pb2.LOOKUP_OUTCOME_MINOR_AT_INTAKE: "MINOR AT INTAKE",
}
FRESHNESS = {
    marker_pb2.ADVICE_FRESHNESS_CURRENT: "CURRENT",
    marker_pb2.ADVICE_FRESHNESS_AGED: "AGED",
    marker_pb2.ADVICE_FRESHNESS_EXPIRED: "EXPIRED",
    marker_pb2.ADVICE_FRESHNESS_NO_ADVICE: "NO ADVICE",
}
# The advice a decision must say it followed or not, per house (RecordDecisionRequest).
NEEDS_LINE = frozenset({marker_pb2.ADVICE_FRESHNESS_CURRENT, marker_pb2.ADVICE_FRESHNESS_AGED})
MATCH = {
    marker_pb2.MATCH_QUALITY_BSN: "BSN",
    marker_pb2.MATCH_QUALITY_NAME_BIRTH_DATE: "surname + date of birth only: verify identity",
}
AGES = {
    registry_service_pb2.SUBJECT_AGE_MINOR: "minor",
    registry_service_pb2.SUBJECT_AGE_ADULT: "adult",
}
CODES = enums.tokens(fb.DecisionCode, "DECISION_CODE_", "-")
STAGES = enums.tokens(fb.DecisionStage, "DECISION_STAGE_", "-")
STATES = enums.tokens(fb.AdviceRequestState, "ADVICE_REQUEST_STATE_", "-")
TARGET_GROUPS = enums.tokens(marker_pb2.TargetGroup, "TARGET_GROUP_", " ")
PLAN_STATUSES = enums.tokens(marker_pb2.PlanStatus, "PLAN_STATUS_", " ")


def when(stamp: timestamp_pb2.Timestamp) -> str:
    """Amsterdam time, "2026-11-28 21:45"; empty when unset."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=dt.UTC).astimezone(AMSTERDAM).strftime("%Y-%m-%d %H:%M")


def _date(d: Any) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _withheld(w: registry_service_pb2.WithheldField) -> dict[str, str]:
    return {
        "field": w.field,
        "reason": withheld_reason(w.reason),
        "covenant": w.covenant,
        "grant": w.grant,
    }


def _contact(c: house_pb2.ContactPoint) -> dict[str, str]:
    return {
        "role": c.role,
        "email": c.email,
        "phone": c.phone,
        "office_hours": office_hours_text(c.office_hours) if c.HasField("office_hours") else "",
        "after_hours_phone": c.after_hours_phone,
        "call_now_phone": c.call_now_phone,
    }


def lookup(response: registry_service_pb2.LookupResponse) -> dict[str, Any]:
    """A lookup answer as the page shows it; every value present is one the answer held."""
    markers = []
    for m in response.markers:
        marker: dict[str, Any] = {
            "name": m.name,
            "house": m.house.name,
            "house_display_name": m.house.display_name or m.house.name,
            "region": m.house.region_display_name,
            "target_group": TARGET_GROUPS.get(m.target_group, ""),
            "plan_status": PLAN_STATUSES.get(m.plan_status, ""),
            "mark_date": _date(m.mark_date) if m.HasField("mark_date") else "",
            "match": MATCH.get(m.match_quality, ""),
            "advice": None,
            "at_information": {},
            "contact": _contact(m.house.contact) if m.house.HasField("contact") else None,
            "withheld": [_withheld(w) for w in response.withheld if w.marker == m.name],
        }
        if m.HasField("advice"):
            marker["advice"] = {
                "freshness": FRESHNESS.get(m.advice.freshness, ""),
                "date": _date(m.advice.advice_date) if m.advice.HasField("advice_date") else "",
                "text": m.advice.text,
            }
        if m.HasField("at_information"):
            marker["at_information"] = {
                f.name.replace("_", " "): v for f, v in m.at_information.ListFields()
            }
        markers.append(marker)
    # One advice line per house whose CURRENT or AGED advice this answer showed.
    needs_line = sorted(
        {m.house.name for m in response.markers if m.advice.freshness in NEEDS_LINE}
    )
    return {
        "outcome": OUTCOMES.get(response.outcome, "?"),
        "match": MATCH.get(response.match_quality, ""),
        "access_log_entry": response.access_log_entry,
        "break_glass": response.break_glass,
        "markers": markers,
        "withheld": [_withheld(w) for w in response.withheld if not w.marker],
        "needs_line": needs_line,
        "houses": sorted({m.house.name for m in response.markers}),
    }


def inflow_entry(e: fb.InflowEntry) -> dict[str, Any]:
    held = None
    if e.HasField("held_decision"):
        h = e.held_decision
        held = {
            "code": CODES.get(h.code, ""),
            "sepot_code": h.sepot_code,
            "stage": STAGES.get(h.stage, ""),
            "problem": h.problem,
            "probation_report_requested": h.probation_report_requested,
        }
    return {
        "name": e.name,
        "case_reference": e.case_reference,
        "open": bool(e.subject.pseudonyms),
        "arrest_time": when(e.arrest_time),
        "subject_age": AGES.get(e.subject_age, ""),
        "offence_category": e.offence_category,
        "checked_time": when(e.checked_time),
        "known": e.known,
        "held_decision": held,
        "decision": e.decision,
        "decision_stage": STAGES.get(e.decision_stage, ""),
        "recorded_by": e.recorded_by,
    }


def advice_request(r: fb.AdviceRequest) -> dict[str, Any]:
    return {
        "name": r.name,
        "case_reference": r.case_reference,
        "house": r.house,
        "state": STATES.get(r.state, ""),
        "requested_time": when(r.requested_time),
        "due_time": when(r.due_time),
        "answered_time": when(r.answered_time),
        "requested_by": r.requested_by,
    }


def decision(r: fb.RecordDecisionResponse) -> dict[str, Any]:
    return {
        "name": r.name,
        "items": [
            {"house": i.house, "kind": enums.token(fb.DeliveryKind, i.kind, "DELIVERY_KIND_", "-")}
            for i in r.items
        ],
        "not_routed": [{"house": n.house, "reason": n.reason} for n in r.not_routed],
        "purged_items": r.purged_items,
    }
