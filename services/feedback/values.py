"""The feedback service's domain values: what its use cases take and give, free of the wire
format. Enumerations keep the numbers the protos give them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from baken.feedback.v1 import feedback_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class SignalIn:
    """A registry signal as the follower took it over."""

    sequence: int
    house_id: str
    source_record_id: str
    case_reference: str
    zsm_location: str
    lookup_time: dt.datetime


@dataclass(frozen=True, slots=True)
class AdviceRequestView:
    id: str
    case_reference: str
    house_id: str
    delivery_key: str
    requested_by: str
    requested_time: dt.datetime
    due_time: dt.datetime
    answered_time: dt.datetime | None

    def state(self, now: dt.datetime) -> int:
        if self.answered_time is not None:
            return pb.ADVICE_REQUEST_STATE_ANSWERED
        if now >= self.due_time:
            return pb.ADVICE_REQUEST_STATE_OVERDUE
        return pb.ADVICE_REQUEST_STATE_OPEN
