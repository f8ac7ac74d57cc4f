"""What the feedback service's use cases share: who may call, where a caller sits, the clock, the
registry's markings, and the access-log entry of each thing done.

Which houses marked the person, and whether one has CURRENT or AGED advice, comes from the
registry (a lookup under the feedback service's own certificate, itself in the registry's access
log).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from baken.clock import Clock
from baken.errors import BakenError, FailedPrecondition, NotFound, PermissionDenied
from baken.houses import House
from baken.pki import Identity
from baken.purposes import AFDOENING, INTAKE
from services.accesslog.inquiry import Inquiry, entry
from services.accesslog.store import AccessLog, Entry
from services.common.access import AccessPolicy
from services.common.covenants import zsm_locations
from services.feedback import repository
from services.feedback.outbox import Outbox
from services.feedback.routing import Asked, Marking, Recipients, Routing
from services.feedback.values import Pseudonym, SignalIn, SubjectAge

# Where a desk weighs the houses' advice before it decides.
DECIDING_PURPOSES = (INTAKE, AFDOENING)
# The parties that work a ZSM desk's inflow.
DESK_ROLES = frozenset({"kpc", "zsm-officier"})


def pseudonym_values(subject: Sequence[Pseudonym]) -> tuple[bytes, ...]:
    """The subject's pseudonyms, as the access log keeps them."""
    return tuple(p.value for p in subject)


def case_purged() -> FailedPrecondition:
    return FailedPrecondition(
        "CASE_PURGED",
        "this case was closed by a technisch sepot 01; nothing more is recorded under it",
    )


class Registry(Protocol):
    """What the feedback service asks of the registry."""

    def markings(
        self, asked: Sequence[Asked], *, on_behalf_of: str, purpose: str
    ) -> list[list[Marking] | BakenError]:
        """Per person asked, in order, the houses that marked him, or why the registry refused
        to say, asked for `purpose` (its token)."""
        ...

    def pull_signals(self, after: int, page_size: int) -> list[SignalIn]:
        """The signals after `after`, confirming everything up to it."""
        ...


class Context:
    """The service's database, clock, covenants, houses, registry, outbox and access log, and
    the checks every use case makes with them."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        policy: AccessPolicy,
        houses: Mapping[str, House],
        registry: Registry,
        outbox: Outbox,
        log: AccessLog,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.houses = houses
        self.registry = registry
        self.outbox = outbox
        self.recipients = Recipients(policy, houses)
        self._policy = policy
        self._log = log
        self._locations = zsm_locations(policy.covenants.parties, houses)

    def now(self) -> dt.datetime:
        return self.clock.now()

    # -- who may ----------------------------------------------------------------------------------

    def authorise(self, caller: Identity, purpose: str) -> None:
        self._policy.authorise(caller, purpose, self.clock.today())

    def check_party(self, caller: Identity) -> None:
        self._policy.check_party(caller)

    def check_adapter_for(self, caller: Identity, house_id: str) -> House:
        """The caller must be the source adapter of the house's source system."""
        self._policy.check_party(caller)
        house = self.houses.get(house_id)
        if house is None:
            raise NotFound("HOUSE_NOT_FOUND", "no house has this name")
        party = self._policy.covenants.parties[caller.id]
        system = house.source_system_token
        if caller.role != "source-adapter" or party.source_system != system:
            raise PermissionDenied(
                "NOT_THE_HOUSES_ADAPTER",
                "only the {sourceSystem} adapter takes this house's items",
                metadata={"sourceSystem": system},
            )
        return house

    def check_operator(self, caller: Identity) -> None:
        self._policy.check_party(caller)
        if caller.role != "operator":
            raise PermissionDenied("OPERATORS_ONLY", "only an operator handles dead letters")

    def check_not_purged(self, connection: Connection, case_reference: str) -> None:
        """A case closed by a technisch sepot 01 takes no further decision or advice request:
        the person was wrongly taken for a suspect, so whatever comes under the case number is
        a mistake the desk should see (a mistyped number, a late retry)."""
        if self.is_purged(connection, case_reference):
            raise case_purged()

    def is_purged(self, connection: Connection, case_reference: str) -> bool:
        return bool(self.purged(connection, [case_reference]))

    def purged(self, connection: Connection, case_references: Iterable[str]) -> set[str]:
        """Those of the cases closed by a technisch sepot 01."""
        return repository.purged(
            connection, {case: self.outbox.case_digests(case) for case in case_references}
        )

    def advice_visible(self, caller: Identity) -> frozenset[str]:
        """The houses whose advice (or only its freshness) the caller's look-ups show it today
        where a decision is weighed, at intake-en-selectie or afdoeningsbeslissing: the advice
        it could weigh. (An advice it asked for itself is added by the caller of this.)"""
        visible: set[str] = set()
        for purpose in DECIDING_PURPOSES:
            try:
                scope = self._policy.authorise(caller, purpose, self.clock.today())
            except PermissionDenied:
                continue
            visible.update(
                house_id
                for house_id in self.houses
                if scope.decide(house_id, "advice").disclosed
                or scope.decide(house_id, "advice_freshness").disclosed
            )
        return frozenset(visible)

    def desk_region(self, caller: Identity) -> str:
        """The region of a ZSM desk (a KPC'er's or an OvJ's party) whose look-ups the covenants
        allow where a decision is weighed; PermissionDenied for any other caller."""
        self._policy.check_party(caller)
        region = self.region_of(caller)
        if caller.role not in DESK_ROLES or not region:
            raise PermissionDenied(
                "ZSM_DESKS_ONLY", "only a ZSM desk (KPC'er or OvJ) keeps and reads an inflow"
            )
        for purpose in DECIDING_PURPOSES:
            try:
                self._policy.authorise(caller, purpose, self.clock.today())
            except PermissionDenied:
                continue
            return region
        raise PermissionDenied(
            "NO_COVENANT", "no covenant in force lets your party look up the suspects it takes in"
        )

    def region_of(self, caller: Identity) -> str:
        """The caller's party's region; "" for a national party."""
        return self._policy.covenants.parties[caller.id].region or ""

    def location_of(self, caller: Identity) -> str:
        return self._locations.get(caller.id, caller.organisation)

    # -- the registry -----------------------------------------------------------------------------

    def markings(
        self,
        inquiry: Inquiry,
        subject: Sequence[Pseudonym],
        *,
        case_reference: str,
        subject_age: SubjectAge,
        purpose: str,
    ) -> list[Marking]:
        """The houses that marked the person, as the registry tells the feedback service; the
        registry logs the desk and user on whose behalf it asks."""
        (found,) = self.markings_of(
            [(inquiry, Asked(subject, case_reference, subject_age))], purpose
        )
        if isinstance(found, BakenError):
            raise found
        return found

    def markings_of(
        self, asked: Sequence[tuple[Inquiry, Asked]], purpose: str
    ) -> list[list[Marking] | BakenError]:
        """`markings` for several persons, in order: one registry call for all those asked
        about on behalf of one user."""
        by_user: dict[str, list[int]] = {}
        for i, (inquiry, _) in enumerate(asked):
            on_behalf_of = f"{inquiry.caller.id}/{inquiry.on_behalf_of}"[:64]
            by_user.setdefault(on_behalf_of, []).append(i)
        found: list[list[Marking] | BakenError] = [[] for _ in asked]
        for on_behalf_of, positions in by_user.items():
            answers = self.registry.markings(
                [asked[i][1] for i in positions], on_behalf_of=on_behalf_of, purpose=purpose
            )
            for i, answer in zip(positions, answers, strict=True):
                found[i] = answer
        return found

    # -- the access log ---------------------------------------------------------------------------

    def append(
        self,
        connection: Connection,
        inquiry: Inquiry,
        now: dt.datetime,
        outcome: str,
        *,
        activity: str,
        **fields: Any,
    ) -> None:
        """The access-log entry of what `inquiry` did (`entry`), in the caller's transaction."""
        self.append_entries(
            connection, [self.entry(inquiry, now, outcome, activity=activity, **fields)], now
        )

    def append_entries(
        self, connection: Connection, entries: Sequence[Entry], now: dt.datetime
    ) -> None:
        self._log.append(connection, entries, now)

    def entry(
        self,
        inquiry: Inquiry,
        now: dt.datetime,
        outcome: str,
        *,
        activity: str,
        subject: Sequence[bytes] = (),
        case_reference: str | None = None,
        routing: Routing | None = None,
        **extra: Any,
    ) -> Entry:
        """The access-log entry of what `inquiry` did."""
        body: dict[str, Any] = dict(extra)
        if routing is not None:
            # Per item: which house got which fields, under which covenant; and who got nothing.
            body["items"] = [
                {
                    "key": i.key,
                    "house": i.house_id,
                    "kind": f"DELIVERY_KIND_{i.kind.name}",
                    "fields": dict(i.sent),
                    "withheld": list(i.withheld),
                }
                for i in routing.items
            ]
            body["not_routed"] = [
                {"house": n.house_id, "reason": n.reason} for n in routing.not_routed
            ]
        return entry(
            inquiry,
            now,
            outcome,
            activity=activity,
            subject=subject,
            case_reference=case_reference,
            **body,
        )
