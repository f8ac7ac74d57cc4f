"""Who asks, on whose behalf and why, and how that becomes an access-log entry.

Entry fields follow the Logboek Dataverwerkingen (trace_id, span_id, processing_activity,
data_subject) and NEN 7513 (party, role, on_behalf_of as the responsible user, purpose,
break_glass_reason); docs/AUDIT.md lists them.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from sqlalchemy import Engine

from baken.pki import Identity
from services.accesslog.store import AccessLog, Entry
from services.common import checks, db
from services.common.covenants import CovenantSet
from services.common.grpc_server import caller_of, current_request_id, trace_id_of

# The processing activities of Baken's register of processing (verwerkingsregister).
LOOKUP_ACTIVITY = "baken:zsm-raadpleging-markers"
AUDIT_ACTIVITY = "baken:toezicht-toegangslog"
# The feedback service takes over the signals that a house's person flowed in at ZSM.
SIGNALS_ACTIVITY = "baken:signalering-veiligheidshuizen"
# Two houses mark the same person: each is told of the other (matchingsmelding).
MATCH_ACTIVITY = "baken:matchingsmelding"


@dataclass(frozen=True, slots=True)
class Inquiry:
    """One call as the access log records it."""

    caller: Identity
    purpose: str  # empty when the request named none
    on_behalf_of: str
    operation: str
    request_id: str
    client_address: str
    trace_id: str
    break_glass_reason: str | None = None


def inquiry_of(
    context: grpc.ServicerContext,
    method: str,
    purpose: str,
    on_behalf_of: str,
    break_glass_reason: str | None = None,
    *,
    register: CovenantSet,
) -> Inquiry:
    """Who asks (from the certificate), on whose behalf (a user id of the format the party
    register gives the caller's party) and why, for the access log."""
    caller = caller_of(context)
    return Inquiry(
        caller=caller,
        purpose=purpose,
        on_behalf_of=checks.on_behalf_of(on_behalf_of, register.formats_of(caller.id)),
        operation=method,
        request_id=current_request_id(),
        client_address=context.peer(),
        trace_id=trace_id_of(context),
        break_glass_reason=break_glass_reason,
    )


def entry(
    inquiry: Inquiry,
    now: dt.datetime,
    outcome: str,
    *,
    activity: str = LOOKUP_ACTIVITY,
    subject: Sequence[bytes] = (),
    case_reference: str | None = None,
    covenants: Iterable[str] = (),
    denial_reason: str | None = None,
    reviews: int | None = None,
    **extra: Any,
) -> Entry:
    caller = inquiry.caller
    body: dict[str, Any] = {
        "trace_id": inquiry.trace_id,
        "span_id": secrets.token_hex(8),
        "processing_activity": activity,
        "operation": inquiry.operation,
        "organisation": caller.organisation,
        "role": caller.role,
        "on_behalf_of": inquiry.on_behalf_of,
        "purpose": inquiry.purpose,
        "case_reference": case_reference,
        "covenants": list(covenants),
        "request_id": inquiry.request_id,
        "client_address": inquiry.client_address,
        **extra,
    }
    if denial_reason:
        body["denial_reason"] = denial_reason
    if inquiry.break_glass_reason:
        body["break_glass_reason"] = inquiry.break_glass_reason
    return Entry(
        time=now,
        outcome=outcome,
        party_id=caller.id,
        body=body,
        subject=tuple(subject),
        reviews_seq=reviews,
    )


def log_refusal(
    engine: Engine,
    log: AccessLog,
    inquiry: Inquiry,
    now: dt.datetime,
    reason: str,
    *,
    activity: str,
    subject: Sequence[bytes] = (),
    **extra: Any,
) -> None:
    """A call refused for want of rights is an entry of the log too, in its own transaction."""
    with db.write_transaction(engine) as connection:
        denial = entry(
            inquiry,
            now,
            "denied",
            activity=activity,
            subject=subject,
            denial_reason=reason,
            **extra,
        )
        log.append(connection, [denial], now)


def unknown_party(context: grpc.ServicerContext, method: str, now: dt.datetime) -> Entry:
    """The denial of a caller whose certificate the party register does not know as such."""
    inquiry = Inquiry(
        caller=caller_of(context),
        purpose="",
        on_behalf_of="",
        operation=method,
        request_id=current_request_id(),
        client_address=context.peer(),
        trace_id=trace_id_of(context),
    )
    return entry(inquiry, now, "denied", denial_reason="PARTY_UNKNOWN")
