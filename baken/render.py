"""Lookup answers as a prosecutor reads them at night: the signal first, then each house."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence

from google.protobuf import json_format

from baken import enums
from baken.audit.v1 import audit_service_pb2
from baken.clock import AMSTERDAM
from baken.feedback.v1 import feedback_service_pb2
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2

_FRESHNESS = {
    marker_pb2.ADVICE_FRESHNESS_CURRENT: "CURRENT",
    marker_pb2.ADVICE_FRESHNESS_AGED: "AGED",
    marker_pb2.ADVICE_FRESHNESS_EXPIRED: "EXPIRED",
    marker_pb2.ADVICE_FRESHNESS_NO_ADVICE: "no advice given",
}
_FRESHNESS_NOTE = {
    marker_pb2.ADVICE_FRESHNESS_AGED: ": older than 6 months, weighs less",
    marker_pb2.ADVICE_FRESHNESS_EXPIRED: ": older than a year; ask the house",
}
_MATCH = {
    marker_pb2.MATCH_QUALITY_BSN: "BSN",
    marker_pb2.MATCH_QUALITY_NAME_BIRTH_DATE: "surname + date of birth only: verify identity",
}


# What a terminal acts on rather than shows: C0 and C1 controls, DEL, and the bidi marks,
# embeddings, overrides and isolates. The registry refuses them at sync; this is the second
# line, for whatever reached the answer all the same.
_STEERING = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# What JSON leaves as it is (it escapes the C0 controls in strings itself).
_BEYOND_JSON = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_INDENT = " " * 18


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str, indent: str | None = None) -> str:
    """Text from an answer as a terminal may show it: every control character as a visible
    escape ("\\x1b"), so that no text can clear the screen, move the cursor or forge a line;
    with `indent`, a line feed starts a new line at that indent (never at the margin, where
    the verdict stands) and a tab is a space."""
    if indent is not None:
        text = text.replace("\t", " ")
        lines = text.split("\n")
        return ("\n" + indent).join(_STEERING.sub(_escape, line) for line in lines)
    return _STEERING.sub(_escape, text)


def _token(enum: object, value: int, prefix: str) -> str:
    return enums.token(enum, value, prefix, " ")


def _date(d: object) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"  # type: ignore[attr-defined]


_WITHHELD = {
    registry_service_pb2.WITHHOLD_REASON_NO_COVENANT: "no covenant grants it",
    registry_service_pb2.WITHHOLD_REASON_PURPOSE_NOT_GRANTED: "not granted for this purpose",
    registry_service_pb2.WITHHOLD_REASON_OUTSIDE_REGION: "outside your covenant's region",
    registry_service_pb2.WITHHOLD_REASON_ADVICE_EXPIRED: "advice older than a year",
    registry_service_pb2.WITHHOLD_REASON_MINOR_AT_INTAKE: "minor: not at intake",
    registry_service_pb2.WITHHOLD_REASON_COVENANT_EXPIRED: "the covenant has expired",
}


def withheld_reason(reason: registry_service_pb2.WithholdReason.ValueType) -> str:
    """Why a field was withheld, in the words every screen uses."""
    return _WITHHELD.get(reason, "?")


def _withheld(fields: Sequence[registry_service_pb2.WithheldField]) -> list[str]:
    """One line per reason and citation, naming its fields."""
    grouped: dict[tuple[registry_service_pb2.WithholdReason.ValueType, str, str], list[str]] = {}
    for w in fields:
        grouped.setdefault((w.reason, w.covenant, w.grant), []).append(w.field)
    return [
        f"{shown(', '.join(names))} ({withheld_reason(reason)})"
        + (f" [{shown(covenant)} {shown(grant)}]".rstrip() if covenant else "")
        for (reason, covenant, grant), names in grouped.items()
    ]


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # google.type.DayOfWeek 1 to 7


def _hhmm(time: object) -> str:
    return f"{time.hours:02d}:{time.minutes:02d}"  # type: ignore[attr-defined]


def office_hours_text(hours: house_pb2.OfficeHours) -> str:
    """ "Mon-Fri 08:30-17:00": three or more consecutive days as a range, others listed."""
    days = sorted({d for d in hours.days if 1 <= d <= 7})
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        named = f"{_DAYS[days[0] - 1]}-{_DAYS[days[-1] - 1]}"
    else:
        named = ", ".join(_DAYS[d - 1] for d in days) or "no days"
    return f"{named} {_hhmm(hours.open_time)}-{_hhmm(hours.close_time)}"


def _contact(contact: house_pb2.ContactPoint) -> list[str]:
    """The desk; the number to call now (the piket outside office hours), then the other one.
    An answer that does not say which line answers now gets both, office first."""
    office = (
        f"{shown(contact.phone)} (office hours {office_hours_text(contact.office_hours)};"
        " closed on public holidays)"
    )
    piket = f"{shown(contact.after_hours_phone)} (piket: nights, weekends, public holidays)"
    lines = [f"    contact       {shown(contact.role)} <{shown(contact.email)}>"]
    if contact.call_now == house_pb2.CONTACT_LINE_OFFICE:
        until = _hhmm(contact.office_hours.close_time)
        lines.append(f"    call now      {shown(contact.call_now_phone)} (office, until {until})")
        others = [("after hours", piket, contact.after_hours_phone)]
    elif contact.call_now == house_pb2.CONTACT_LINE_AFTER_HOURS:
        lines.append(
            f"    call now      {shown(contact.call_now_phone)} (piket: outside office hours)"
        )
        others = [("office", office, contact.phone)]
    else:
        others = [
            ("office", office, contact.phone),
            ("after hours", piket, contact.after_hours_phone),
        ]
    lines += [f"    {label:<13} {text}" for label, text, number in others if number]
    return lines


def lookup_text(response: registry_service_pb2.LookupResponse) -> str:
    entry = f"  (access log entry {response.access_log_entry})" if response.access_log_entry else ""
    if response.outcome == registry_service_pb2.LOOKUP_OUTCOME_MINOR_AT_INTAKE:
        return (
            "MINOR AT INTAKE: for a minor, nothing of the Safety Houses is shown at "
            "intake-en-selectie, whether or not one knows him." + entry
        )
    if response.outcome == registry_service_pb2.LOOKUP_OUTCOME_NO_HIT:
        return "NO HIT: not known at any Safety House." + entry
    if response.outcome == registry_service_pb2.LOOKUP_OUTCOME_WITHHELD:
        reasons = "; ".join(_withheld(response.withheld))
        return f"WITHHELD: known, but no covenant lets you see where: {reasons}{entry}"
    houses = len({m.house.name for m in response.markers})
    lines = [
        f"HIT: known at {houses} Safety House{'s' if houses > 1 else ''} "
        f"(match: {_MATCH.get(response.match_quality, '?')}){entry}"
    ]
    if response.break_glass:
        lines.append("  BREAK-GLASS: shown beyond the covenant; the privacy officer will review it")
    for m in response.markers:
        region = f"  [{shown(m.house.region_display_name)}]" if m.house.region else ""
        lines.append(f"  {shown(m.house.display_name)}{region}")
        facts = []
        if m.target_group:
            facts.append(
                f"target group {_token(marker_pb2.TargetGroup, m.target_group, 'TARGET_GROUP_')}"
            )
        if m.plan_status:
            facts.append(f"plan {_token(marker_pb2.PlanStatus, m.plan_status, 'PLAN_STATUS_')}")
        if m.HasField("mark_date"):
            facts.append(f"marked {_date(m.mark_date)}")
        if facts:
            lines.append("    " + "; ".join(facts))
        if m.HasField("advice"):
            advice = _FRESHNESS.get(m.advice.freshness, "?")
            if m.advice.HasField("advice_date"):
                advice += f" ({_date(m.advice.advice_date)})"
            advice += _FRESHNESS_NOTE.get(m.advice.freshness, "")
            lines.append(f"    advice        {advice}")
            if m.advice.text:
                lines.append(_INDENT + shown(m.advice.text, _INDENT))
        if m.HasField("at_information"):
            for field, value in m.at_information.ListFields():
                name = field.name.replace("_", " ")
                lines.append(f"    A&T {name:<22} {shown(value, ' ' * 31)}")
        if m.house.HasField("contact"):
            lines += _contact(m.house.contact)
        lines.append(
            f"    source        {shown(m.name)} (match: {_MATCH.get(m.match_quality, '?')})"
        )
        withheld = _withheld([w for w in response.withheld if w.marker == m.name])
        if withheld:
            lines.append("    withheld      " + "\n                  ".join(withheld))
    whole = _withheld([w for w in response.withheld if not w.marker])
    count = sum(1 for w in response.withheld if not w.marker)
    if count:
        lines.append(f"  {count} more marker(s) withheld: " + "; ".join(whole))
    return "\n".join(lines)


def lookup_json(response: registry_service_pb2.LookupResponse) -> str:
    """JSON escapes C0 controls itself; C1 controls and bidi marks are escaped here too."""
    text = json.dumps(json_format.MessageToDict(response), indent=2, ensure_ascii=False)
    return _BEYOND_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


_OUTCOME = {
    audit_service_pb2.ACCESS_OUTCOME_HIT: "hit",
    audit_service_pb2.ACCESS_OUTCOME_NO_HIT: "no hit",
    audit_service_pb2.ACCESS_OUTCOME_WITHHELD: "withheld",
    audit_service_pb2.ACCESS_OUTCOME_DENIED: "DENIED",
    audit_service_pb2.ACCESS_OUTCOME_BREAK_GLASS: "BREAK-GLASS",
    audit_service_pb2.ACCESS_OUTCOME_AUDIT_READ: "audit read",
    audit_service_pb2.ACCESS_OUTCOME_REVIEW: "review",
    audit_service_pb2.ACCESS_OUTCOME_SIGNALS_DISCLOSED: "signals disclosed",
    audit_service_pb2.ACCESS_OUTCOME_AGGREGATES_DISCLOSED: "aggregates disclosed",
    audit_service_pb2.ACCESS_OUTCOME_EXPIRED: "expired",
}
_STATES = enums.tokens(feedback_service_pb2.AdviceRequestState, "ADVICE_REQUEST_STATE_", "-")


def access_entry(e: audit_service_pb2.AccessEntry) -> str:
    """One entry as the data subject's report shows it: who, when, why, what."""
    when = (
        e.entry_time.ToDatetime(tzinfo=dt.UTC).astimezone(AMSTERDAM).strftime("%Y-%m-%d %H:%M:%S")
    )
    who = e.party + (f" ({e.organisation}, {e.role})" if e.organisation else "")
    who += f" for {shown(e.on_behalf_of)}" if e.on_behalf_of else ""
    # A service's own entry (an expiry) has a processing activity, no purpose of a caller.
    why = (e.purpose or e.processing_activity) + (
        f", case {shown(e.case_reference)}" if e.case_reference else ""
    )
    lines = [f"#{e.sequence}  {when}  {_OUTCOME.get(e.outcome, '?')}  {who}", f"    purpose  {why}"]
    if e.denial_reason:
        lines.append(f"    denied   {shown(e.denial_reason)}")
    if e.break_glass_reason:
        lines.append(f"    break-glass reason  {shown(e.break_glass_reason)}")
    for d in e.disclosed:
        lines.append(f"    saw      {d.marker}: {', '.join(d.fields)}")
    if e.withheld:
        lines.append(f"    withheld {len(e.withheld)} field(s)")
    if e.audit_query:
        lines.append(f"    query    {shown(e.audit_query)}")
    if e.reviews_sequence:
        lines.append(f"    reviews  #{e.reviews_sequence}: {shown(e.review_finding)}")
    if e.covenants:
        lines.append(f"    covenant {', '.join(e.covenants)}")
    if e.expired:
        gone = ", ".join(f"{kind} {count}" for kind, count in sorted(e.expired.items()))
        lines.append(f"    removed  {gone}")
    return "\n".join(lines)


def advice_request_line(r: feedback_service_pb2.AdviceRequest) -> str:
    """One advice request, on one line: the desk's list and the demo's."""
    due = r.due_time.ToDatetime(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    return (
        f"{r.name}  {_STATES.get(r.state, '?'):<8} case {shown(r.case_reference)}  {r.house}"
        f"  due {due}  asked by {shown(r.requested_by)}"
    )
