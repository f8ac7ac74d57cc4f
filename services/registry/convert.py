"""Domain values to wire messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from google.type import date_pb2

from baken.houses import House
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2
from services.registry.markers import AT_FIELDS, MarkerHit, SyncCounts
from services.registry.validation import enum_number

_FRESHNESS = {
    "current": marker_pb2.ADVICE_FRESHNESS_CURRENT,
    "aged": marker_pb2.ADVICE_FRESHNESS_AGED,
    "expired": marker_pb2.ADVICE_FRESHNESS_EXPIRED,
    "no_advice": marker_pb2.ADVICE_FRESHNESS_NO_ADVICE,
}


def date_proto(day: dt.date | None) -> date_pb2.Date | None:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day) if day else None


class MarkerConverter:
    """Builds Marker messages; house messages are made once and copied in."""

    def __init__(self, houses: Mapping[str, House]) -> None:
        self._houses = {house_id: h.to_proto() for house_id, h in houses.items()}

    def marker(self, hit: MarkerHit) -> marker_pb2.Marker:
        marker = marker_pb2.Marker(
            name=hit.name,
            source_system=enum_number(
                house_pb2.SourceSystem, hit.key.source_system, "SOURCE_SYSTEM_"
            ),
            source_record_id=hit.key.source_record_id,
            source_version=hit.source_version,
            house=self._houses.get(hit.key.house_id),
            target_group=enum_number(marker_pb2.TargetGroup, hit.target_group, "TARGET_GROUP_"),
            plan_status=enum_number(marker_pb2.PlanStatus, hit.plan_status, "PLAN_STATUS_"),
            mark_date=date_proto(hit.mark_date),
            advice=marker_pb2.Advice(
                text=hit.advice or "",
                advice_date=date_proto(hit.advice_date),
                freshness=_FRESHNESS[hit.freshness.value],
            ),
            # MatchQuality numbers mirror PseudonymKind.
            match_quality=marker_pb2.MatchQuality.ValueType(hit.match_kind),
        )
        if hit.at_information:
            marker.at_information.CopyFrom(
                marker_pb2.AtInformation(**{f: hit.at_information.get(f, "") for f in AT_FIELDS})
            )
        return marker

    def lookup_response(self, hits: list[MarkerHit]) -> registry_service_pb2.LookupResponse:
        if not hits:
            return registry_service_pb2.LookupResponse(
                outcome=registry_service_pb2.LOOKUP_OUTCOME_NO_HIT
            )
        return registry_service_pb2.LookupResponse(
            outcome=registry_service_pb2.LOOKUP_OUTCOME_HIT,
            markers=[self.marker(h) for h in hits],
            match_quality=marker_pb2.MatchQuality.ValueType(hits[0].match_kind),
        )


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
                house_id=r.house_id,
                source_record_id=r.source_record_id,
                reason=r.reason,
                field_violations=[v.to_proto() for v in r.violations],
            )
            for r in counts.rejections[:MAX_REJECTIONS]
        ],
    )
