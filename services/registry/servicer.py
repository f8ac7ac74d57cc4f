"""RegistryService on the wire: proto in, one call into the domain, proto out."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from baken.errors import InvalidArgument, NotFound
from baken.houses import house_id_of
from baken.purposes import PURPOSE_TOKENS, TERUGKOPPELING
from baken.registry.v1 import house_pb2, registry_service_pb2, registry_service_pb2_grpc
from services.accesslog.inquiry import Inquiry, inquiry_of
from services.common import checks
from services.common.covenants import CovenantSet
from services.common.grpc_server import caller_of, current_request_id, trace_id_of
from services.registry import validation
from services.registry.convert import MarkerConverter, signal_message, sync_response
from services.registry.lookup import Lookups, Question
from services.registry.marker_sync import MarkerSync
from services.registry.markers import SyncCounts
from services.registry.signals import Signals

pb = registry_service_pb2
SERVICE = "/baken.registry.v1.RegistryService/"


class RegistryServicer(registry_service_pb2_grpc.RegistryServiceServicer):
    def __init__(
        self, sync: MarkerSync, lookups: Lookups, signals: Signals, *, register: CovenantSet
    ) -> None:
        self._register = register
        self._sync = sync
        self._lookups = lookups
        self._signals = signals
        self._convert = MarkerConverter(sync.houses)
        self._house_list = [h.to_proto() for h in sync.houses.values()]

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.LookupResponse:
        purpose = PURPOSE_TOKENS.get(request.purpose, "")
        inquiry = inquiry_of(
            context,
            SERVICE + "Lookup",
            purpose,
            request.on_behalf_of,
            checks.break_glass_reason(request.break_glass_reason),
            register=self._register,
        )
        question = Question(
            *validation.question_fields(
                request.subject,
                request.case_reference,
                request.subject_age,
                purpose,
                self._register.formats_of(inquiry.caller.id),
            )
        )
        (answer,) = self._lookups.answer(inquiry, [question])
        if answer.denial is not None:
            raise answer.denial
        response = pb.LookupResponse()
        self._convert.fill_lookup_response(response, answer)
        return response

    def BatchLookup(
        self, request_iterator: Iterator[pb.BatchLookupRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.BatchLookupResponse]:
        for request in request_iterator:
            purpose = PURPOSE_TOKENS.get(request.purpose, "")
            inquiry = inquiry_of(
                context,
                SERVICE + "BatchLookup",
                purpose,
                request.on_behalf_of,
                register=self._register,
            )
            formats = self._register.formats_of(inquiry.caller.id)
            response = pb.BatchLookupResponse()
            valid: list[tuple[pb.BatchLookupResult, Question]] = []
            for entry in request.entries:
                result = response.results.add(ref=entry.ref)
                try:
                    fields = validation.batch_entry(entry, purpose, formats)
                except InvalidArgument as error:
                    result.error.CopyFrom(error.to_status())
                    continue
                valid.append((result, Question(*fields)))
            # One query and one access-log transaction for every valid entry of the message.
            answers = self._lookups.answer(inquiry, [q for _, q in valid])
            for (result, _), answer in zip(valid, answers, strict=True):
                if answer.denial is not None:
                    result.error.CopyFrom(answer.denial.to_status())
                else:
                    self._convert.fill_lookup_response(result.lookup, answer)
            yield response

    def SyncMarkers(
        self, request_iterator: Iterator[pb.SyncMarkersRequest], context: grpc.ServicerContext
    ) -> pb.SyncMarkersResponse:
        caller = caller_of(context)
        served = self._sync.sync_scope(caller)
        # The adapter syncs on its own behalf; a match the sync makes is logged under its call.
        inquiry = Inquiry(
            caller,
            "",
            on_behalf_of=caller.id,
            operation=SERVICE + "SyncMarkers",
            request_id=current_request_id(),
            client_address=context.peer(),
            trace_id=trace_id_of(context),
        )
        total, seen = SyncCounts(), 0
        for request in request_iterator:
            batch = validation.sync_request(request, self._sync.houses, served)
            total.add(self._sync.sync(inquiry, seen, batch))
            seen += len(batch.changes)
        return sync_response(total)

    def GetHouse(
        self, request: pb.GetHouseRequest, context: grpc.ServicerContext
    ) -> house_pb2.House:
        self._sync.check_caller(caller_of(context))
        house = self._sync.houses.get(house_id_of(request.name))
        if house is None:
            raise NotFound("HOUSE_NOT_FOUND", "no such Safety House")
        return house.to_proto()

    def ListHouses(
        self, request: pb.ListHousesRequest, context: grpc.ServicerContext
    ) -> pb.ListHousesResponse:
        self._sync.check_caller(caller_of(context))
        start, end = checks.page(request.page_size, request.page_token, self._house_list)
        return pb.ListHousesResponse(
            houses=self._house_list[start:end],
            next_page_token=str(end) if end < len(self._house_list) else "",
        )

    def PullSignals(
        self, request: pb.PullSignalsRequest, context: grpc.ServicerContext
    ) -> pb.PullSignalsResponse:
        after_sequence, page_size = validation.pull_signals(request)
        caller = caller_of(context)
        # The feedback service pulls on its own behalf: no user at a desk asks.
        inquiry = inquiry_of(
            context, SERVICE + "PullSignals", TERUGKOPPELING, caller.id, register=self._register
        )
        found = self._signals.pull(inquiry, after_sequence, page_size)
        return pb.PullSignalsResponse(signals=[signal_message(s) for s in found])
