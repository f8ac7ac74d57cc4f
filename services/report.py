"""ReportService: a month's management information, as the registry and the feedback service each
count it from their own data (services/registry/figures.py, services/feedback/figures.py).

The covenants decide which regions a caller sees: a grant of `aggregates` for purpose
`monitoring` covering the region's houses. A count below 5, or a time from fewer than 5 items,
never leaves the service. The answer and every refusal for want of rights are logged."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import grpc
from sqlalchemy import Engine

from baken.clock import Clock
from baken.errors import FieldViolation, InvalidArgument, PermissionDenied
from baken.houses import House, house_id_of, house_name
from baken.purposes import MONITORING, PURPOSE_TOKENS
from baken.report.v1 import report_service_pb2 as pb
from baken.report.v1 import report_service_pb2_grpc
from baken.stuurinformatie.figures import BY_ID, Figure, Month, Unit
from services.accesslog.inquiry import Inquiry, entry, inquiry_of, log_refusal
from services.accesslog.store import AccessLog
from services.common import db
from services.common.access import AccessPolicy, Withhold

REPORT_ACTIVITY = "baken:stuurinformatie"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ReportService"].full_name
SERVICE = f"/{SERVICE_NAME}/"


@dataclass(frozen=True, slots=True)
class Selection:
    """What one request may count: the month, the regions and the houses shown."""

    month: Month
    regions: frozenset[str]
    houses: frozenset[str]

    def region_scopes(self) -> list[tuple[str, str]]:
        return [(region, "") for region in sorted(self.regions)]

    def house_scopes(self, houses: Mapping[str, House]) -> list[tuple[str, str]]:
        return [(houses[h].region, h) for h in sorted(self.houses)]


# Counts a service's figures for a selection, reading its own database.
Counter = Callable[[Selection], Sequence[Figure]]


class ReportServicer(report_service_pb2_grpc.ReportServiceServicer):
    def __init__(
        self,
        count: Counter,
        *,
        engine: Engine,
        policy: AccessPolicy,
        log: AccessLog,
        clock: Clock,
    ) -> None:
        self._count = count
        self._engine = engine
        self._policy = policy
        self._log = log
        self._clock = clock

    def GetMonthlyFigures(
        self, request: pb.GetMonthlyFiguresRequest, context: grpc.ServicerContext
    ) -> pb.GetMonthlyFiguresResponse:
        month = _check(request, self._policy.houses)
        inquiry = inquiry_of(
            context,
            SERVICE + "GetMonthlyFigures",
            PURPOSE_TOKENS[request.purpose],
            request.on_behalf_of,
            register=self._policy.covenants,
        )
        selection, withheld, covenants = self._admit(inquiry, request, month)
        figures = [
            f
            for f in self._count(selection)
            if (f.region in selection.regions and not f.house_id) or f.house_id in selection.houses
        ]
        now = self._clock.now()
        with db.write_transaction(self._engine) as connection:
            (seq,) = self._log.append(
                connection,
                [
                    entry(
                        inquiry,
                        now,
                        "aggregates",
                        activity=REPORT_ACTIVITY,
                        covenants=covenants,
                        month=str(month),
                        regions=sorted(selection.regions),
                        houses=sorted(selection.houses),
                        withheld_regions=[region for region, _ in withheld],
                    )
                ],
                now,
            )
        return pb.GetMonthlyFiguresResponse(
            month=str(month),
            figures=[_figure(f) for f in figures],
            withheld=[pb.WithheldRegion(region=r, reason=why) for r, why in withheld],
            access_log_entry=seq,
        )

    def _admit(
        self, inquiry: Inquiry, request: pb.GetMonthlyFiguresRequest, month: Month
    ) -> tuple[Selection, list[tuple[str, str]], tuple[str, ...]]:
        houses = self._policy.houses
        asked = [
            h
            for h in houses.values()
            if (not request.region or h.region == request.region)
            and (not request.house or h.name == request.house)
        ]
        try:
            if inquiry.purpose != MONITORING:
                raise PermissionDenied(
                    "PURPOSE_NOT_FOR_REPORT", "management information is for purpose monitoring"
                )
            scope = self._policy.authorise(inquiry.caller, MONITORING, self._clock.today())
            granted = {h.id for h in asked if scope.decide(h.id, "aggregates").disclosed}
            if not granted:
                raise PermissionDenied(
                    "AGGREGATES_NOT_GRANTED",
                    "no covenant in force grants aggregates of the asked regions to this party",
                )
        except PermissionDenied as denied:
            log_refusal(
                self._engine,
                self._log,
                inquiry,
                self._clock.now(),
                denied.reason,
                activity=REPORT_ACTIVITY,
                month=str(month),
            )
            raise
        regions = {houses[h].region for h in granted}
        withheld = [
            (region, (scope.decide(first, "aggregates").reason or Withhold.NO_COVENANT).value)
            for region, first in _first_house_per_region(asked).items()
            if region not in regions
        ]
        return Selection(month, frozenset(regions), frozenset(granted)), withheld, scope.covenants


def _first_house_per_region(houses: Collection[House]) -> dict[str, str]:
    first: dict[str, str] = {}
    for h in houses:
        first.setdefault(h.region, h.id)
    return first


def _check(request: pb.GetMonthlyFiguresRequest, houses: Mapping[str, House]) -> Month:
    violations: list[FieldViolation] = []
    month = None
    try:
        month = Month.parse(request.month)
    except ValueError as e:
        violations.append(FieldViolation("month", str(e)))
    regions = {h.region for h in houses.values()}
    if request.region and request.region not in regions:
        violations.append(
            FieldViolation("region", f"unknown region; one of {', '.join(sorted(regions))}")
        )
    if request.house:
        house = houses.get(house_id_of(request.house))
        if house is None:
            violations.append(
                FieldViolation("house", '"houses/{house}" of a known house (baken/houses.toml)')
            )
        elif request.region and house.region != request.region:
            violations.append(FieldViolation("house", "the house is not in the asked region"))
    if violations or month is None:
        raise InvalidArgument(violations)
    return month


def _figure(f: Figure) -> pb.Figure:
    message = pb.Figure(
        metric=f.metric, region=f.region, house=house_name(f.house_id) if f.house_id else ""
    )
    if f.small:
        message.small = True
    elif BY_ID[f.metric].unit is Unit.COUNT:
        message.count = int(f.value)
    else:
        message.seconds = f.value
    return message
