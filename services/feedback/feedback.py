"""The feedback service's work: record decisions, take over signals, ask and track advice.

Everything a call writes (the decision, its delivery items, the access-log entry) commits in one
transaction; the outbox is woken after the commit. Which houses marked the person, and whether
one has CURRENT or AGED advice, comes from the registry (a lookup for purpose terugkoppeling
under the feedback service's own certificate, itself in the registry's access log).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from baken.clock import Clock
from baken.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.houses import House
from baken.pki import Identity
from baken.purposes import TERUGKOPPELING
from baken.registry.v1 import registry_service_pb2
from baken.type.v1 import pseudonym_pb2, purpose_pb2
from services.accesslog.inquiry import Inquiry, entry
from services.accesslog.store import AccessLog
from services.common import db
from services.common.access import AccessPolicy
from services.common.covenants import zsm_locations
from services.feedback import repository
from services.feedback.outbox import Outbox
from services.feedback.routing import (
    Item,
    Marking,
    NotRouted,
    Recipients,
    Routing,
    route_advice_request,
    route_decision,
    route_signal,
)
from services.feedback.values import AdviceRequestView, SignalIn

DECISION_ACTIVITY = "baken:terugkoppeling-zsm-beslissing"
SIGNAL_ACTIVITY = "baken:signalering-veiligheidshuizen"
ADVICE_ACTIVITY = "baken:advies-op-aanvraag"
PURGE_ACTIVITY = "baken:verwijdering-technisch-sepot"
ADVICE_PURPOSE = "advies-op-aanvraag"
SIGNAL_PAGE = 500
_ADVICE_GIVEN = (pb.ADVICE_FOLLOWED_FOLLOWED, pb.ADVICE_FOLLOWED_NOT_FOLLOWED)


class Registry(Protocol):
    """What the feedback service asks of the registry."""

    def markings(
        self,
        subject: Sequence[tuple[int, str, bytes]],
        *,
        case_reference: str,
        subject_age: int,
        on_behalf_of: str,
        purpose: int,
    ) -> list[Marking]: ...

    def pull_signals(self, after: int, page_size: int) -> list[SignalIn]:
        """The signals after `after`, confirming everything up to it."""
        ...


@dataclass(frozen=True, slots=True)
class Recorded:
    name: str
    routing: Routing
    purged_items: int = 0


def _values(subject: pseudonym_pb2.Subject) -> tuple[bytes, ...]:
    return tuple(p.value for p in subject.pseudonyms)


class Feedback:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        policy: AccessPolicy,
        houses: Mapping[str, House],
        municipalities: Mapping[str, str],
        registry: Registry,
        outbox: Outbox,
        log: AccessLog,
        identity: Identity,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._policy = policy
        self._houses = houses
        self._municipalities = municipalities
        self._registry = registry
        self._outbox = outbox
        self._log = log
        self._recipients = Recipients(policy, houses)
        # The feedback service itself, for what it does of its own accord (signals).
        self._identity = identity
        self._locations = zsm_locations(policy.covenants.parties, houses)

    def now(self) -> dt.datetime:
        return self._clock.now()

    # -- who may ----------------------------------------------------------------------------------

    def authorise(self, caller: Identity, purpose: str) -> None:
        self._policy.authorise(caller, purpose, self._clock.today())

    def check_adapter_for(self, caller: Identity, house_id: str) -> House:
        """The caller must be the source adapter of the house's source system."""
        self._policy.check_party(caller)
        house = self._houses.get(house_id)
        if house is None:
            raise NotFound("HOUSE_NOT_FOUND", "no house has this name")
        party = self._policy.covenants.parties[caller.id]
        system = house.source_system_token
        if caller.role != "source-adapter" or party.source_system != system:
            raise PermissionDenied(
                "NOT_THE_HOUSES_ADAPTER", f"only the {system} adapter takes this house's items"
            )
        return house

    def check_operator(self, caller: Identity) -> None:
        self._policy.check_party(caller)
        if caller.role != "operator":
            raise PermissionDenied("OPERATORS_ONLY", "only an operator handles dead letters")

    def referral_house(self, municipality: str) -> str | None:
        return self._municipalities.get(municipality.strip().casefold())

    def location_of(self, caller: Identity) -> str:
        return self._locations.get(caller.id, caller.organisation)

    # -- decisions --------------------------------------------------------------------------------

    def record_decision(self, inquiry: Inquiry, request: pb.RecordDecisionRequest) -> Recorded:
        caller = inquiry.caller
        self.authorise(caller, TERUGKOPPELING)
        request_key = f"{caller.id}:{request.request_key}" if request.request_key else None
        if request_key is not None:
            earlier = self._earlier(request_key)
            if earlier is not None:
                return earlier
        if request.code == pb.DECISION_CODE_TECHNISCH_SEPOT_01:
            return Recorded("", Routing((), ()), self._purge(inquiry, request.case_reference))
        markings = self._markings(inquiry, request, purpose_pb2.PURPOSE_TERUGKOPPELING)
        _check_advice(request, markings)
        now = self._clock.now()
        decision_id = uuid.uuid4().hex[:20]
        referral_house = self.referral_house(request.residence_municipality)
        routing = route_decision(
            request,
            markings,
            self._recipients,
            decision_id=decision_id,
            referral_house=referral_house,
            zsm_location=self.location_of(caller),
            now=now,
        )
        not_routed = routing.not_routed
        if not markings and request.complex_problems_suspected and referral_house is None:
            not_routed = (NotRouted("", "NO_HOUSE_FOR_MUNICIPALITY"),)
        routing = Routing(routing.items, not_routed)
        try:
            self._store_decision(inquiry, request, request_key, decision_id, markings, routing)
        except IntegrityError:
            # The same request_key, recorded by a concurrent retry a moment ago.
            earlier = self._earlier(request_key) if request_key else None
            if earlier is None:
                raise
            return earlier
        self._outbox.notify()
        return Recorded(f"decisions/{decision_id}", routing)

    def _store_decision(
        self,
        inquiry: Inquiry,
        request: pb.RecordDecisionRequest,
        request_key: str | None,
        decision_id: str,
        markings: Sequence[Marking],
        routing: Routing,
    ) -> None:
        """The decision, its items and its access-log entry, in one transaction."""
        caller = inquiry.caller
        now = self._clock.now()
        with db.write_transaction(self._engine) as connection:
            self._check_no_advice_in_term(connection, request.case_reference, now)
            repository.add_decision(
                connection,
                decision_id,
                request_key=request_key,
                case_reference=request.case_reference,
                party_id=caller.id,
                recorded_time=now,
                code=request.code,
                stage=request.stage,
                minor=request.subject_age == registry_service_pb2.SUBJECT_AGE_MINOR,
                known=bool(markings),
                advice_current=any(m.advice_counts for m in markings),
                advice_followed=request.advice_followed,
                complex_problems=request.complex_problems_suspected,
                deviation_reason_given=bool(request.deviation_reason.strip()),
            )
            self._outbox.add(
                connection,
                routing.items,
                now,
                case_reference=request.case_reference,
                decision_id=decision_id,
            )
            self._append(
                connection,
                inquiry,
                now,
                "routed" if routing.items else "not-routed",
                activity=DECISION_ACTIVITY,
                subject=_values(request.subject),
                case_reference=request.case_reference,
                routing=routing,
                decision=pb.DecisionCode.Name(request.code),
            )

    def _markings(
        self,
        inquiry: Inquiry,
        request: pb.RecordDecisionRequest | pb.RequestAdviceRequest,
        purpose: int,
    ) -> list[Marking]:
        """The houses that marked the person, as the registry tells the feedback service; the
        registry logs the desk and user on whose behalf it asks."""
        return self._registry.markings(
            [(p.kind, p.key_id, p.value) for p in request.subject.pseudonyms],
            case_reference=request.case_reference,
            subject_age=request.subject_age,
            on_behalf_of=f"{inquiry.caller.id}/{inquiry.on_behalf_of}"[:64],
            purpose=purpose,
        )

    def _earlier(self, request_key: str) -> Recorded | None:
        with self._engine.connect() as connection:
            earlier = repository.earlier_decision(connection, request_key)
        if earlier is None:
            return None
        decision_id, rows = earlier
        items = tuple(
            Item(key, house_id, "", pb.Delivery(key=key, kind=kind), (), {})  # type: ignore[arg-type]
            for key, house_id, kind in rows
        )
        return Recorded(f"decisions/{decision_id}", Routing(items, ()))

    def _check_no_advice_in_term(
        self, connection: Connection, case_reference: str, now: dt.datetime
    ) -> None:
        waiting = repository.advice_in_term(connection, case_reference, now)
        if waiting is not None:
            house_id, due_time = waiting
            raise FailedPrecondition(
                "ADVICE_REQUEST_IN_TERM",
                f"advice was asked of houses/{house_id} until "
                f"{due_time.isoformat(timespec='minutes')}; decide after its "
                "answer or once the term has passed",
            )

    def _purge(self, inquiry: Inquiry, case_reference: str) -> int:
        """Technisch sepot 01: nobody may use the case's data. Everything of the case goes,
        queued items included; the log says that a purge happened, by whom, and how much,
        never which case. Signals of the case still waiting in the registry are taken over
        first, so that none arrives after the purge (UNAVAILABLE while the registry is away)."""
        while self.follow_signals() == SIGNAL_PAGE:
            pass
        now = self._clock.now()
        with db.write_transaction(self._engine) as connection:
            items = self._outbox.purge_case(connection, case_reference)
            requests = repository.delete_advice_requests(connection, case_reference)
            earlier = repository.delete_decisions(connection, case_reference)
            self._append(
                connection,
                inquiry,
                now,
                "purged",
                activity=PURGE_ACTIVITY,
                purged={"items": items, "advice_requests": requests, "decisions": earlier},
            )
        self._outbox.notify()
        return items

    # -- signals ----------------------------------------------------------------------------------

    def follow_signals(self, page: int = SIGNAL_PAGE) -> int:
        """Take over one page of the registry's signals; how many there were."""
        signals = self._registry.pull_signals(self.signal_cursor(), page)
        self.take_over_signals(signals)
        return len(signals)

    def signal_cursor(self) -> int:
        with self._engine.connect() as connection:
            return repository.signal_cursor(connection)

    def take_over_signals(self, signals: Sequence[SignalIn]) -> int:
        """Items for the signals, and the cursor past them, in one transaction: a crash
        before the commit takes them over again, after it never twice (keys dedupe too)."""
        if not signals:
            return 0
        now = self._clock.now()
        routed = [
            (
                s,
                route_signal(
                    self._recipients,
                    house_id=s.house_id,
                    source_record_id=s.source_record_id,
                    case_reference=s.case_reference,
                    zsm_location=s.zsm_location,
                    lookup_time=s.lookup_time,
                    sequence=s.sequence,
                ),
            )
            for s in signals
            if s.house_id in self._houses
        ]
        items = [(s, r) for s, r in routed if isinstance(r, Item)]
        last = max(s.sequence for s in signals)
        with db.write_transaction(self._engine) as connection:
            new = 0
            for signal, item in items:
                new += self._outbox.add(
                    connection, [item], now, case_reference=signal.case_reference or None
                )
            repository.set_signal_cursor(connection, last)
            inquiry = Inquiry(
                self._identity,
                TERUGKOPPELING,
                on_behalf_of="signal-follower",
                operation="TakeOverSignals",
                request_id="",
                client_address="",
                trace_id=uuid.uuid4().hex,
            )
            self._append(
                connection,
                inquiry,
                now,
                "routed",
                activity=SIGNAL_ACTIVITY,
                routing=Routing(
                    tuple(i for _, i in items),
                    tuple(r for _, r in routed if isinstance(r, NotRouted)),
                ),
                signals=[signals[0].sequence, last],
            )
        self._outbox.notify()
        return new

    # -- advice on request ------------------------------------------------------------------------

    def request_advice(
        self, inquiry: Inquiry, request: pb.RequestAdviceRequest, house_id: str, term: dt.timedelta
    ) -> AdviceRequestView:
        caller = inquiry.caller
        self.authorise(caller, ADVICE_PURPOSE)
        markings = self._markings(inquiry, request, purpose_pb2.PURPOSE_ADVIES_OP_AANVRAAG)
        marking = next((m for m in markings if m.house_id == house_id), None)
        if marking is None:
            raise FailedPrecondition(
                "NOT_MARKED_BY_HOUSE",
                f"houses/{house_id} has not marked this person; ask a house that has",
            )
        now = self._clock.now()
        request_id = uuid.uuid4().hex[:20]
        routed = route_advice_request(
            self._recipients,
            request_id=request_id,
            marking=marking,
            case_reference=request.case_reference,
            question=request.question,
            zsm_location=self.location_of(caller),
            now=now,
            due=now + term,
        )
        if isinstance(routed, NotRouted):
            raise FailedPrecondition(
                f"HOUSE_NOT_GRANTED_{routed.reason}",
                f"no covenant in force lets houses/{house_id} receive advice requests",
            )
        view = AdviceRequestView(
            request_id,
            request.case_reference,
            house_id,
            routed.key,
            caller.id,
            now,
            now + term,
            None,
        )
        with db.write_transaction(self._engine) as connection:
            repository.add_advice_request(connection, view)
            self._outbox.add(connection, [routed], now, case_reference=request.case_reference)
            self._append(
                connection,
                inquiry,
                now,
                "routed",
                activity=ADVICE_ACTIVITY,
                subject=_values(request.subject),
                case_reference=request.case_reference,
                routing=Routing((routed,), ()),
                due=view.due_time.isoformat(),
            )
        self._outbox.notify()
        return view

    def answer_advice(self, caller: Identity, delivery_key: str) -> AdviceRequestView:
        """The house gave the advice asked for; answering twice keeps the first time."""
        view = self._advice_request(delivery_key)
        self.check_adapter_for(caller, view.house_id)
        if view.answered_time is None:
            with db.write_transaction(self._engine) as connection:
                repository.mark_answered(connection, delivery_key, self._clock.now())
            view = self._advice_request(delivery_key)
        return view

    def _advice_request(self, delivery_key: str) -> AdviceRequestView:
        with self._engine.connect() as connection:
            view = repository.advice_request(connection, delivery_key)
        if view is None:
            raise NotFound("ADVICE_REQUEST_NOT_FOUND", "no advice request has this delivery key")
        return view

    def advice_requests(
        self, caller: Identity, *, overdue_only: bool, house_id: str | None
    ) -> list[AdviceRequestView]:
        """Unanswered requests (open and overdue), earliest term first."""
        if caller.role != "operator":
            self.authorise(caller, ADVICE_PURPOSE)
        else:
            self._policy.check_party(caller)
        now = self._clock.now()
        with self._engine.connect() as connection:
            return repository.unanswered_advice_requests(
                connection, due_by=now if overdue_only else None, house_id=house_id
            )

    # -- the access log ---------------------------------------------------------------------------

    def _append(
        self,
        connection: Connection,
        inquiry: Inquiry,
        now: dt.datetime,
        outcome: str,
        *,
        activity: str,
        subject: Sequence[bytes] = (),
        case_reference: str | None = None,
        routing: Routing | None = None,
        **extra: Any,
    ) -> None:
        body: dict[str, Any] = dict(extra)
        if routing is not None:
            # Per item: which house got which fields, under which covenant; and who got nothing.
            body["items"] = [
                {
                    "key": i.key,
                    "house": i.house_id,
                    "kind": pb.DeliveryKind.Name(i.delivery.kind),
                    "fields": dict(i.sent),
                    "withheld": list(i.withheld),
                }
                for i in routing.items
            ]
            body["not_routed"] = [
                {"house": n.house_id, "reason": n.reason} for n in routing.not_routed
            ]
        self._log.append(
            connection,
            [
                entry(
                    inquiry,
                    now,
                    outcome,
                    activity=activity,
                    subject=subject,
                    case_reference=case_reference,
                    **body,
                ),
            ],
            now,
        )


def _check_advice(request: pb.RecordDecisionRequest, markings: Sequence[Marking]) -> None:
    """When a house has CURRENT or AGED advice, ZSM must say whether it followed it."""
    advising = [m.house_id for m in markings if m.advice_counts]
    if advising and request.advice_followed not in _ADVICE_GIVEN:
        raise InvalidArgument(
            [
                FieldViolation(
                    "advice_followed",
                    f"required: houses/{advising[0]} has CURRENT or AGED advice for this "
                    "person; FOLLOWED or NOT_FOLLOWED (with deviation_reason)",
                )
            ]
        )
