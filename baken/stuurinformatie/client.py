"""Draws up a Report: asks the registry and the feedback service for each month's figures under
the caller's own certificate, and puts the answers together."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import grpc

from baken.client import connect
from baken.errors import UserError
from baken.houses import house_id_of, house_name, load_houses
from baken.pki import TlsFiles
from baken.report.v1 import report_service_pb2 as pb
from baken.report.v1 import report_service_pb2_grpc
from baken.stuurinformatie.figures import Month
from baken.stuurinformatie.report import (
    SMALL,
    Cell,
    Report,
    add_figures,
    months_back,
    ordered_houses,
)
from baken.type.v1 import purpose_pb2


@dataclass(frozen=True, slots=True)
class Request:
    month: Month
    months: int = 1
    region: str = ""
    house: str = ""
    on_behalf_of: str = ""
    timeout: float = 30.0


def fetch_report(registry: str, feedback: str, tls: TlsFiles, request: Request) -> Report:
    """The figures of `request.months` months up to `request.month`, from both services.

    Raises grpc.RpcError as the service answered it; UserError when a service is not reachable."""
    houses = load_houses()
    region_names = {h.region: h.region_display_name for h in houses.values()}
    months = months_back(request.month, request.months)
    with contextlib.ExitStack() as stack:
        stubs = {
            name: report_service_pb2_grpc.ReportServiceStub(stack.enter_context(connect(t, tls)))
            for name, t in (("registry", registry), ("feedback service", feedback))
        }
        answers: list[tuple[Month, pb.GetMonthlyFiguresResponse]] = []
        for month in months:
            for name, stub in stubs.items():
                answers.append((month, _ask(name, stub, month, request)))
    regions = sorted({f.region for _, a in answers for f in a.figures})
    shown = {house_id_of(f.house) for _, a in answers for f in a.figures if f.house}
    report = Report(
        months=months,
        regions={
            r: [h for h in hs if h in shown] for r, hs in ordered_houses(houses, regions).items()
        },
        region_names=region_names,
        houses=houses,
    )
    withheld = {w.region: w.reason for _, a in answers for w in a.withheld}
    report.withheld = sorted(withheld.items())
    for month, answer in answers:
        add_figures(
            report,
            month,
            ((f.metric, f.region, house_id_of(f.house), _cell(f)) for f in answer.figures),
        )
    return report


def _ask(
    name: str, stub: report_service_pb2_grpc.ReportServiceStub, month: Month, request: Request
) -> pb.GetMonthlyFiguresResponse:
    try:
        response: pb.GetMonthlyFiguresResponse = stub.GetMonthlyFigures(
            pb.GetMonthlyFiguresRequest(
                month=str(month),
                region=request.region,
                house=house_name(request.house) if request.house else "",
                purpose=purpose_pb2.PURPOSE_MONITORING,
                on_behalf_of=request.on_behalf_of,
            ),
            timeout=request.timeout,
        )
        return response
    except grpc.RpcError as error:
        code = error.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            raise UserError(f"the {name} is not reachable (UNAVAILABLE)") from None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise UserError(f"the {name} did not answer within {request.timeout:g} s") from None
        raise


def _cell(f: pb.Figure) -> Cell:
    if f.small:
        return SMALL
    return Cell(float(f.count) if f.WhichOneof("value") == "count" else f.seconds)
