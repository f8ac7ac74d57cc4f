"""AuditService.GetSignedHead: the newest signed checkpoint of a service's access log, for the
privacy officer's witness (cli/witness.py). The registry answers it for its log, the feedback
service for its own. It shows no personal data, so an answer is not an entry of the log (a poll
every few seconds would otherwise move the head it asks for); a refusal is not either, like
GetHouse's."""

from __future__ import annotations

from typing import NoReturn

import grpc
from sqlalchemy import Engine

from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.clock import Clock
from baken.pki import Identity
from baken.purposes import AUDIT
from services.accesslog import store as access_log
from services.accesslog.store import SignedHead
from services.common.access import AccessPolicy
from services.common.grpc_server import caller_of

pb = audit_service_pb2


class SignedHeads:
    def __init__(self, engine: Engine, clock: Clock, *, policy: AccessPolicy) -> None:
        self._engine = engine
        self._clock = clock
        self._policy = policy

    def newest(self, caller: Identity) -> SignedHead | None:
        """The newest checkpoint, for a caller admitted for purpose audit (PermissionDenied)."""
        self._policy.authorise(caller, AUDIT, self._clock.today())
        with self._engine.connect() as connection:
            return access_log.signed_head(connection)


def signed_head_message(head: SignedHead | None) -> pb.SignedHead:
    if head is None:
        return pb.SignedHead()
    message = pb.SignedHead(
        sequence=head.seq, entry_hash=head.entry_hash, key_id=head.key_id, signature=head.signature
    )
    message.signed_time.FromDatetime(head.signed_time)
    return message


class SignedHeadServicer(audit_service_pb2_grpc.AuditServiceServicer):
    """AuditService with GetSignedHead only; the feedback service's EntriesServicer adds
    ListAccessEntries, the registry's AuditServicer the rest."""

    def __init__(self, heads: SignedHeads) -> None:
        self._heads = heads

    def GetSignedHead(
        self, request: pb.GetSignedHeadRequest, context: grpc.ServicerContext
    ) -> pb.SignedHead:
        return signed_head_message(self._heads.newest(caller_of(context)))

    def ListAccessEntries(
        self, request: pb.ListAccessEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListAccessEntriesResponse:
        _elsewhere(context)

    def ListAnomalies(
        self, request: pb.ListAnomaliesRequest, context: grpc.ServicerContext
    ) -> pb.ListAnomaliesResponse:
        _elsewhere(context)

    def ListPendingReviews(
        self, request: pb.ListPendingReviewsRequest, context: grpc.ServicerContext
    ) -> pb.ListPendingReviewsResponse:
        _elsewhere(context)

    def ReviewBreakGlass(
        self, request: pb.ReviewBreakGlassRequest, context: grpc.ServicerContext
    ) -> pb.AccessEntry:
        _elsewhere(context)


def _elsewhere(context: grpc.ServicerContext) -> NoReturn:
    context.abort(grpc.StatusCode.UNIMPLEMENTED, "the registry answers this call, not this service")
