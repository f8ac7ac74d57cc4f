"""AuditService on the wire: proto in, one call into services.accesslog.audit, proto out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from baken.audit.v1 import audit_service_pb2
from baken.errors import FieldViolation, InvalidArgument
from baken.purposes import AUDIT
from baken.registry.v1 import registry_service_pb2
from services.accesslog.audit import Audit, EntryQuery
from services.accesslog.inquiry import inquiry_of
from services.accesslog.signed_heads import SignedHeads, SignedHeadServicer
from services.accesslog.store import StoredEntry
from services.common import checks
from services.common.covenants import CovenantSet

pb = audit_service_pb2
SERVICE = "/baken.audit.v1.AuditService/"
_OUTCOMES = {
    "hit": pb.ACCESS_OUTCOME_HIT,
    "no-hit": pb.ACCESS_OUTCOME_NO_HIT,
    "withheld": pb.ACCESS_OUTCOME_WITHHELD,
    "denied": pb.ACCESS_OUTCOME_DENIED,
    "break-glass": pb.ACCESS_OUTCOME_BREAK_GLASS,
    "audit-read": pb.ACCESS_OUTCOME_AUDIT_READ,
    "review": pb.ACCESS_OUTCOME_REVIEW,
    "disclosed": pb.ACCESS_OUTCOME_SIGNALS_DISCLOSED,
    "aggregates": pb.ACCESS_OUTCOME_AGGREGATES_DISCLOSED,
    "expired": pb.ACCESS_OUTCOME_EXPIRED,
}
MAX_PAGE = 1000
FINDING = (10, 2000)


def _time(value: timestamp_pb2.Timestamp, field: str) -> dt.datetime | None:
    if not value.seconds and not value.nanos:
        return None
    try:
        return value.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument([FieldViolation(field, "not a valid time")]) from None


def _page_token(token: str) -> tuple[int, int | None]:
    """(after, ceiling) from "after:ceiling"; (0, None) for the first page."""
    if not token:
        return 0, None
    try:
        after, ceiling = (int(part) for part in token.split(":"))
    except ValueError:
        after = ceiling = -1
    if not 0 <= after <= ceiling:
        raise InvalidArgument([FieldViolation("page_token", "not a token this service gave out")])
    return after, ceiling


def _after_token(token: str) -> int:
    """The sequence a page follows, from a token a previous page gave; 0 for the first page."""
    if not token:
        return 0
    if not token.isdigit():
        raise InvalidArgument([FieldViolation("page_token", "not a token this service gave out")])
    return int(token)


def access_entry(stored: StoredEntry) -> pb.AccessEntry:
    body: Mapping[str, Any] = stored.body
    message = pb.AccessEntry(
        name=f"accessEntries/{stored.seq}",
        sequence=stored.seq,
        trace_id=body.get("trace_id", ""),
        span_id=body.get("span_id", ""),
        processing_activity=body.get("processing_activity", ""),
        operation=body.get("operation", ""),
        party=stored.party_id,
        organisation=body.get("organisation", ""),
        role=body.get("role", ""),
        on_behalf_of=body.get("on_behalf_of", ""),
        purpose=body.get("purpose", ""),
        case_reference=body.get("case_reference") or "",
        data_subject=body.get("data_subject", []),
        outcome=_OUTCOMES.get(stored.outcome, pb.ACCESS_OUTCOME_UNSPECIFIED),
        denial_reason=body.get("denial_reason", ""),
        disclosed=[
            pb.Disclosure(marker=d["marker"], fields=sorted(d["fields"]), decided_by=d["fields"])
            for d in body.get("disclosed", [])
        ],
        withheld=[
            registry_service_pb2.WithheldField(
                marker=w["marker"],
                field=w["field"],
                reason=registry_service_pb2.WithholdReason.Value(f"WITHHOLD_REASON_{w['reason']}"),
                covenant=w["covenant"],
                grant=w["grant"],
            )
            for w in body.get("withheld", [])
        ],
        covenants=body.get("covenants", []),
        break_glass_reason=body.get("break_glass_reason", ""),
        reviews_sequence=stored.reviews_seq or 0,
        review_finding=body.get("review_finding", ""),
        audit_query=body.get("audit_query", ""),
        request_id=body.get("request_id", ""),
        client_address=body.get("client_address", ""),
        decision=body.get("decision", ""),
        routed=[pb.RoutedItem(house=i["house"], kind=i["kind"]) for i in body.get("items", [])],
        expired=body.get("expired", {}),
    )
    message.entry_time.FromDatetime(stored.time)
    return message


class EntriesServicer(SignedHeadServicer):
    """GetSignedHead and ListAccessEntries: the feedback service's; the registry's
    AuditServicer adds the rest."""

    def __init__(self, audit: Audit, heads: SignedHeads, *, register: CovenantSet) -> None:
        super().__init__(heads)
        self._audit = audit
        self._register = register

    def ListAccessEntries(
        self, request: pb.ListAccessEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListAccessEntriesResponse:
        inquiry = inquiry_of(
            context,
            SERVICE + "ListAccessEntries",
            AUDIT,
            request.on_behalf_of,
            register=self._register,
        )
        subject = tuple(checks.lookup_values(request.subject)) if request.subject.pseudonyms else ()
        size = min(request.page_size or 100, MAX_PAGE)
        after, ceiling = _page_token(request.page_token)
        query = EntryQuery(
            subject=subject,
            party=request.party or None,
            start=_time(request.start_time, "start_time"),
            end=_time(request.end_time, "end_time"),
            after_seq=after,
            until_seq=ceiling,
            limit=size,
        )
        found, ceiling = self._audit.entries(inquiry, query)
        more = len(found) == size and found[-1].seq < ceiling
        return pb.ListAccessEntriesResponse(
            entries=[access_entry(e) for e in found],
            next_page_token=f"{found[-1].seq}:{ceiling}" if more else "",
        )


class AuditServicer(EntriesServicer):
    def ListAnomalies(
        self, request: pb.ListAnomaliesRequest, context: grpc.ServicerContext
    ) -> pb.ListAnomaliesResponse:
        inquiry = inquiry_of(
            context, SERVICE + "ListAnomalies", AUDIT, request.on_behalf_of, register=self._register
        )
        found = self._audit.anomalies(
            inquiry,
            _time(request.start_time, "start_time"),
            _time(request.end_time, "end_time"),
        )
        # The findings of one window are computed whole; a page is a stretch of them.
        start, end = checks.page(request.page_size, request.page_token, found)
        return pb.ListAnomaliesResponse(
            anomalies=[
                pb.Anomaly(
                    rule=a.rule, party=a.party, description=a.description, sequences=a.sequences
                )
                for a in found[start:end]
            ],
            next_page_token=str(end) if end < len(found) else "",
        )

    def ListPendingReviews(
        self, request: pb.ListPendingReviewsRequest, context: grpc.ServicerContext
    ) -> pb.ListPendingReviewsResponse:
        inquiry = inquiry_of(
            context,
            SERVICE + "ListPendingReviews",
            AUDIT,
            request.on_behalf_of,
            register=self._register,
        )
        size = checks.page_size(request.page_size)
        after = _after_token(request.page_token)
        # One more than asked: whether another page follows.
        found = self._audit.pending_reviews(inquiry, after_seq=after, limit=size + 1)
        page = found[:size]
        return pb.ListPendingReviewsResponse(
            entries=[access_entry(e) for e in page],
            next_page_token=str(page[-1].seq) if len(found) > size else "",
        )

    def ReviewBreakGlass(
        self, request: pb.ReviewBreakGlassRequest, context: grpc.ServicerContext
    ) -> pb.AccessEntry:
        inquiry = inquiry_of(
            context,
            SERVICE + "ReviewBreakGlass",
            AUDIT,
            request.on_behalf_of,
            register=self._register,
        )
        low, high = FINDING
        if not low <= len(request.finding.strip()) <= high:
            raise InvalidArgument(
                [FieldViolation("finding", f"required: {low} to {high} characters")]
            )
        if fault := checks.text_fault(request.finding, lines=True):
            raise InvalidArgument([FieldViolation("finding", fault)])
        return access_entry(self._audit.review(inquiry, request.sequence, request.finding.strip()))
