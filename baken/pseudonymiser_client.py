"""The edge's side of the pseudonymisation service: blind, ask the service, finalize
(baken/oprf.py). What leaves the edge is a blinded element per input, nothing else."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from baken import oprf
from baken.pseudonymiser.v1 import pseudonymiser_service_pb2 as pb
from baken.pseudonymiser.v1 import pseudonymiser_service_pb2_grpc as pb_grpc
from baken.type.v1 import purpose_pb2

# The service's limit on one call.
PER_CALL = 1000


class ServiceOprf:
    """An OprfEvaluator (baken/pseudonym.py) over the party's channels to the services named
    by its key ring; `channel_to(address)` opens one (baken.client.connect with the party's
    TLS files)."""

    def __init__(
        self,
        channel_to: Callable[[str], grpc.Channel],
        *,
        on_behalf_of: str,
        purpose: purpose_pb2.Purpose.ValueType = purpose_pb2.PURPOSE_UNSPECIFIED,
        timeout_s: float = 10.0,
    ) -> None:
        self._channel_to = channel_to
        self._stubs: dict[str, pb_grpc.PseudonymiserServiceStub] = {}
        self._user = on_behalf_of
        self._purpose = purpose
        self._timeout_s = timeout_s

    def _stub(self, service: str) -> pb_grpc.PseudonymiserServiceStub:
        stub = self._stubs.get(service)
        if stub is None:
            stub = pb_grpc.PseudonymiserServiceStub(self._channel_to(service))
            self._stubs[service] = stub
        return stub

    def outputs(self, key_id: str, service: str, inputs: Sequence[bytes]) -> list[bytes]:
        """One Evaluate call per PER_CALL inputs, pipelined: the next slice is blinded, and the
        last finalized, while the service evaluates (the waiting releases the GIL)."""
        stub = self._stub(service)
        slices = [inputs[at : at + PER_CALL] for at in range(0, len(inputs), PER_CALL)]
        found: list[bytes] = []
        in_flight: tuple[list[oprf.Blinded], grpc.Future[pb.EvaluateResponse]] | None = None
        for part in [*slices, None]:
            call = None
            if part is not None:
                blinded = [oprf.blind(x) for x in part]
                future = stub.Evaluate.future(
                    pb.EvaluateRequest(
                        key_id=key_id,
                        blinded_elements=[b.element for b in blinded],
                        purpose=self._purpose,
                        on_behalf_of=self._user,
                    ),
                    timeout=self._timeout_s,
                )
                call = (blinded, future)
            if in_flight is not None:
                found += _finalized(*in_flight)
            in_flight = call
        return found


def _finalized(
    blinded: list[oprf.Blinded], future: grpc.Future[pb.EvaluateResponse]
) -> list[bytes]:
    response = future.result()
    if len(response.evaluated_elements) != len(blinded):
        raise oprf.InvalidElement("the service answered another number of elements")
    return oprf.finalize_batch(blinded, response.evaluated_elements)
