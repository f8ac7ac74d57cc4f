"""Domain values to wire messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from google.type import date_pb2

from baken import enums
from baken.houses import House, house_name
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2
from services.common.access import Withhold
from services.registry.lookup import Answer
from services.registry.markers import MarkerHit, SyncCounts
from services.registry.signals import Signal

_FRESHNESS = {
    "current": marker_pb2.ADVICE_FRESHNESS_CURRENT,
    "aged": marker_pb2.ADVICE_FRESHNESS_AGED,
    "expired": marker_pb2.ADVICE_FRESHNESS_EXPIRED,
    "no_advice": marker_pb2.ADVICE_FRESHNESS_NO_ADVICE,
}
_TARGET_GROUPS = enums.numbers(marker_pb2.TargetGroup, "TARGET_GROUP_")
_WITHHOLD_REASONS = {
    reason: registry_service_pb2.WithholdReason.Value(f"WITHHOLD_REASON_{reason.value}")
    for reason in Withhold
}


def _set_date(target: date_pb2.Date, day: dt.date) -> None:
    target.year, target.month, target.day = day.year, day.month, day.day


class MarkerConverter:
    """Builds Marker messages; house messages are made once and copied in.

    Messages are filled in place (field by field, into the parent's submessages): building
    each submessage and passing it to a constructor copies it once more per level."""

    def __init__(self, houses: Mapping[str, House]) -> None:
        self._reference = houses
        self._houses = {house_id: h.to_proto() for house_id, h in houses.items()}
        self._systems = enums.numbers(house_pb2.SourceSystem, "SOURCE_SYSTEM_")
        self._groups = enums.numbers(marker_pb2.TargetGroup, "TARGET_GROUP_")
        self._statuses = enums.numbers(marker_pb2.PlanStatus, "PLAN_STATUS_")

    def marker(self, hit: MarkerHit, now: dt.datetime) -> marker_pb2.Marker:
        marker = marker_pb2.Marker()
        self.fill_marker(marker, hit, now)
        return marker

    def fill_marker(self, marker: marker_pb2.Marker, hit: MarkerHit, now: dt.datetime) -> None:
        """The fields the hit may show; disclosure.disclose decided which. `now` is the time
        of the look-up: the contact point says which of its numbers answers then."""
        shown = hit.fields
        marker.name = hit.name
        house = self._houses.get(hit.key.house_id)
        if house is not None:
            target = marker.house
            target.name, target.display_name = house.name, house.display_name
            target.location, target.source_system = house.location, house.source_system
            if "region" in shown:
                target.region, target.region_display_name = house.region, house.region_display_name
            if "contact" in shown:
                contact = target.contact
                contact.CopyFrom(house.contact)
                line, phone = self._reference[hit.key.house_id].call_now(now)
                contact.call_now, contact.call_now_phone = line, phone
        if "source_record" in shown:
            marker.source_system = house_pb2.SourceSystem.ValueType(
                self._systems[hit.key.source_system]
            )
            marker.source_record_id = hit.key.source_record_id
            marker.source_version = hit.source_version
        if "target_group" in shown:
            marker.target_group = marker_pb2.TargetGroup.ValueType(self._groups[hit.target_group])
        if "plan_status" in shown:
            marker.plan_status = marker_pb2.PlanStatus.ValueType(self._statuses[hit.plan_status])
        if "mark_date" in shown:
            _set_date(marker.mark_date, hit.mark_date)
        if "advice" in shown:
            advice = marker.advice
            advice.SetInParent()
            advice.text = hit.advice or ""
            if hit.advice_date:
                _set_date(advice.advice_date, hit.advice_date)
            advice.freshness = _FRESHNESS[hit.freshness.value]
        elif "advice_freshness" in shown:
            # Whether an advice is current, aged, expired or absent: no text, no date.
            advice = marker.advice
            advice.SetInParent()
            advice.freshness = _FRESHNESS[hit.freshness.value]
        if hit.at_information:
            at = marker.at_information
            at.SetInParent()
            for f, text in hit.at_information.items():
                setattr(at, f, text)
        # MatchQuality numbers mirror PseudonymKind.
        marker.match_quality = marker_pb2.MatchQuality.ValueType(hit.match_kind)

    def fill_lookup_response(
        self, response: registry_service_pb2.LookupResponse, answer: Answer
    ) -> None:
        disclosure = answer.disclosure
        assert disclosure is not None, "a denied answer has no lookup response"
        response.access_log_entry = answer.sequence
        response.break_glass = answer.break_glass
        for w in disclosure.withheld:
            response.withheld.add(
                marker=w.marker,
                field=w.field,
                reason=_WITHHOLD_REASONS[w.reason],
                covenant=w.covenant,
                grant=w.grant,
            )
        if disclosure.minor_at_intake:
            response.outcome = registry_service_pb2.LOOKUP_OUTCOME_MINOR_AT_INTAKE
            return
        if not disclosure.hits:
            response.outcome = (
                registry_service_pb2.LOOKUP_OUTCOME_WITHHELD
                if disclosure.found
                else registry_service_pb2.LOOKUP_OUTCOME_NO_HIT
            )
            return
        response.outcome = registry_service_pb2.LOOKUP_OUTCOME_HIT
        for hit in disclosure.hits:
            self.fill_marker(response.markers.add(), hit, answer.time)
        response.match_quality = marker_pb2.MatchQuality.ValueType(disclosure.hits[0].match_kind)


MAX_REJECTIONS = 1000


def sync_response(counts: SyncCounts) -> registry_service_pb2.SyncMarkersResponse:
    return registry_service_pb2.SyncMarkersResponse(
        created=counts.created,
        updated=counts.updated,
        deleted=counts.deleted,
        unchanged=counts.unchanged,
        rejected=counts.rejected,
        rejections=[
            registry_service_pb2.SyncRejection(
                index=r.index,
                source_system=house_pb2.SourceSystem.ValueType(r.source_system),
                house=r.house,
                source_record_id=r.source_record_id,
                reason=r.reason,
                field_violations=[v.to_proto() for v in r.violations],
            )
            for r in counts.rejections[:MAX_REJECTIONS]
        ],
    )


def signal_message(signal: Signal) -> registry_service_pb2.Signal:
    message = registry_service_pb2.Signal(
        sequence=signal.seq,
        house=house_name(signal.house_id),
        source_record_id=signal.source_record_id,
        case_reference=signal.case_reference or "",
        zsm_location=signal.zsm_location,
        access_log_entry=signal.access_log_seq,
        kind=registry_service_pb2.SignalKind.ValueType(signal.kind),
        other_house=house_name(signal.other_house_id) if signal.other_house_id else "",
    )
    message.lookup_time.FromDatetime(signal.lookup_time)
    if signal.other_target_group:
        message.other_target_group = marker_pb2.TargetGroup.ValueType(
            _TARGET_GROUPS[signal.other_target_group]
        )
    return message
