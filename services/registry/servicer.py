"""RegistryService on the wire: proto in, one call into the domain, proto out."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from baken.errors import InvalidArgument, NotFound
from baken.registry.v1 import house_pb2, registry_service_pb2, registry_service_pb2_grpc
from services.registry import validation
from services.registry.convert import MarkerConverter, sync_response
from services.registry.markers import SyncCounts
from services.registry.registry import Registry

pb = registry_service_pb2


class RegistryServicer(registry_service_pb2_grpc.RegistryServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._convert = MarkerConverter(registry.houses)
        self._house_list = [h.to_proto() for h in registry.houses.values()]

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.LookupResponse:
        values = validation.lookup_values(request.subject)
        return self._convert.lookup_response(self._registry.lookup(values))

    def BatchLookup(
        self, request_iterator: Iterator[pb.BatchLookupRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.BatchLookupResponse]:
        for request in request_iterator:
            validation.batch_entries(request)
            response = pb.BatchLookupResponse()
            valid: list[tuple[pb.BatchLookupResult, list[bytes]]] = []
            for entry in request.entries:
                result = response.results.add(ref=entry.ref)
                try:
                    validation.batch_ref(entry.ref)
                    values = validation.lookup_values(entry.subject)
                except InvalidArgument as error:
                    result.error.CopyFrom(error.to_status())
                    continue
                valid.append((result, values))
            # One query for every valid entry of the message.
            found = self._registry.lookup_many([values for _, values in valid])
            for (result, _), hits in zip(valid, found, strict=True):
                self._convert.fill_lookup_response(result.lookup, hits)
            yield response

    def SyncMarkers(
        self, request_iterator: Iterator[pb.SyncMarkersRequest], context: grpc.ServicerContext
    ) -> pb.SyncMarkersResponse:
        total, seen = SyncCounts(), 0
        for request in request_iterator:
            validation.sync_request(request)
            total.add(self._registry.sync(seen, request.changes))
            seen += len(request.changes)
        return sync_response(total)

    def GetHouse(
        self, request: pb.GetHouseRequest, context: grpc.ServicerContext
    ) -> house_pb2.House:
        house = self._registry.houses.get(request.name.removeprefix("houses/"))
        if not request.name.startswith("houses/") or house is None:
            raise NotFound("HOUSE_NOT_FOUND", "no such Safety House")
        return house.to_proto()

    def ListHouses(
        self, request: pb.ListHousesRequest, context: grpc.ServicerContext
    ) -> pb.ListHousesResponse:
        start, end = validation.page(request.page_size, request.page_token, self._house_list)
        return pb.ListHousesResponse(
            houses=self._house_list[start:end],
            next_page_token=str(end) if end < len(self._house_list) else "",
        )
