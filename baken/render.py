"""Lookup answers as a prosecutor reads them at night: the signal first, then each house."""

from __future__ import annotations

import json

from google.protobuf import json_format

from baken.registry.v1 import marker_pb2, registry_service_pb2

_FRESHNESS = {
    marker_pb2.ADVICE_FRESHNESS_CURRENT: "CURRENT",
    marker_pb2.ADVICE_FRESHNESS_AGED: "AGED",
    marker_pb2.ADVICE_FRESHNESS_EXPIRED: "EXPIRED",
    marker_pb2.ADVICE_FRESHNESS_NO_ADVICE: "no advice given",
}
_FRESHNESS_NOTE = {
    marker_pb2.ADVICE_FRESHNESS_AGED: ": older than 6 months, weighs less",
    marker_pb2.ADVICE_FRESHNESS_EXPIRED: ": older than a year, text withheld; ask the house",
}
_MATCH = {
    marker_pb2.MATCH_QUALITY_BSN: "BSN",
    marker_pb2.MATCH_QUALITY_NAME_BIRTH_DATE: "surname + date of birth only: verify identity",
}


def _token(enum: object, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower().replace("_", " ")  # type: ignore[attr-defined]


def _date(d: object) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"  # type: ignore[attr-defined]


def lookup_text(response: registry_service_pb2.LookupResponse) -> str:
    if response.outcome != registry_service_pb2.LOOKUP_OUTCOME_HIT:
        return "NO HIT: not known at any Safety House."
    houses = len({m.house.name for m in response.markers})
    lines = [
        f"HIT: known at {houses} Safety House{'s' if houses > 1 else ''} "
        f"(match: {_MATCH.get(response.match_quality, '?')})"
    ]
    for m in response.markers:
        lines += [
            f"  {m.house.display_name}  [{m.house.region_display_name}]",
            f"    target group  {_token(marker_pb2.TargetGroup, m.target_group, 'TARGET_GROUP_')}"
            f"; plan {_token(marker_pb2.PlanStatus, m.plan_status, 'PLAN_STATUS_')}"
            f"; marked {_date(m.mark_date)}",
        ]
        advice = _FRESHNESS.get(m.advice.freshness, "?")
        if m.advice.HasField("advice_date"):
            advice += f" ({_date(m.advice.advice_date)})"
        advice += _FRESHNESS_NOTE.get(m.advice.freshness, "")
        lines.append(f"    advice        {advice}")
        if m.advice.text:
            lines.append(f"                  {m.advice.text}")
        if m.HasField("at_information"):
            for field, value in m.at_information.ListFields():
                lines.append(f"    A&T {field.name.replace('_', ' '):<22} {value}")
        lines.append(f"    contact       {m.house.contact.role} <{m.house.contact.email}>")
        lines.append(f"    source        {m.name} (match: {_MATCH.get(m.match_quality, '?')})")
    return "\n".join(lines)


def lookup_json(response: registry_service_pb2.LookupResponse) -> str:
    return json.dumps(json_format.MessageToDict(response), indent=2, ensure_ascii=False)
