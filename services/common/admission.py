"""Who may start a call, and how much of a service one party may hold, decided from the party
register before the call reads a message or touches the database.

Every call of a service's own API passes here first (health and reflection do not): the
certificate's party must be in the register as such, or the call is refused at once, and a
party unknown to the register spends from one small budget that all such callers share, so
that a certificate the CA issued but the register does not know cannot flood the service or
its access log. A registered party spends from an allowance its role in the register sizes
for what it does (there are no exempt roles), and holds at most so many calls at once; all
parties together hold at most `capacity` of the service's workers, so that health checks and
refusals always find one free. A stream must send its first message within a deadline, so an
opened and idle stream cannot sit on a worker.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from baken.errors import (
    DeadlineExceeded,
    PermissionDenied,
    RateLimited,
    TooManyCalls,
    Unavailable,
)
from baken.houses import House
from baken.pki import Identity
from services.common.covenants import Party
from services.common.ratelimit import RateLimiter, Rates

# The key under which every party unknown to the register spends.
UNREGISTERED = "(unregistered)"
# Calls in flight that a source adapter may hold beyond a delivery stream and an
# acknowledgement per house it serves.
ADAPTER_SPARE_CALLS = 4


@dataclass(frozen=True, slots=True)
class Allowance:
    """Calls a second (a BatchLookup spends one per entry), the burst, and calls held at once."""

    per_second: float
    burst: int
    in_flight: int

    def scaled(self, factor: float) -> Allowance:
        burst = max(1, round(self.burst * factor))
        return Allowance(self.per_second * factor, burst, self.in_flight)


# What each role of the register does, and so may spend. A ZSM desk looks up a night's inflow
# in one batch; the feedback service looks up the persons of the decisions it routes and pulls
# signals; an adapter sends its export in messages of a thousand changes and acknowledges a
# house's backlog item by item (a house back after a week acknowledges thousands in a row).
ROLE_ALLOWANCES: Mapping[str, Allowance] = {
    "zsm-officier": Allowance(50, 1000, 8),
    "kpc": Allowance(50, 1000, 8),
    "police": Allowance(50, 1000, 8),
    "probation": Allowance(50, 1000, 8),
    "rvdk": Allowance(50, 1000, 8),
    "victim-support": Allowance(20, 200, 4),
    "vh-process-director": Allowance(20, 500, 8),
    "vh-chair": Allowance(20, 200, 4),
    "source-adapter": Allowance(200, 5000, ADAPTER_SPARE_CALLS),
    "privacy-auditor": Allowance(20, 500, 4),
    "operator": Allowance(20, 200, 4),
    "steering-group": Allowance(5, 50, 2),
    "service": Allowance(200, 2000, 16),
}
# Shared by every caller whose certificate the register does not know as such.
UNREGISTERED_ALLOWANCE = Allowance(1, 10, 2)
# An opened stream that sends nothing for this long is refused.
FIRST_MESSAGE_SECONDS = 10.0


def allowances(
    parties: Mapping[str, Party],
    houses: Mapping[str, House],
    scale: float = 1.0,
    roles: Mapping[str, Allowance] = ROLE_ALLOWANCES,
) -> dict[str, Allowance]:
    """Each registered party's allowance, from its role (`roles`: the service's own table, or
    ROLE_ALLOWANCES); an adapter may also hold, per house of its source system, the house's
    delivery stream and an acknowledgement. `scale` multiplies every rate and burst (a capacity
    benchmark raises it; nobody is exempt)."""
    served = Counter(h.source_system_token for h in houses.values())
    found: dict[str, Allowance] = {}
    for party in parties.values():
        allowance = roles[party.role]
        if party.source_system is not None:
            allowance = Allowance(
                allowance.per_second,
                allowance.burst,
                2 * served[party.source_system] + ADAPTER_SPARE_CALLS,
            )
        found[party.id] = allowance.scaled(scale)
    return found


@dataclass(slots=True)
class Ticket:
    """One admitted call, holding its place until released (once, however often called)."""

    _release: Callable[[], None] | None

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class Admission:
    """Admits calls under the party register (see the module's docstring)."""

    def __init__(
        self,
        parties: Mapping[str, Party],
        houses: Mapping[str, House],
        *,
        capacity: int,
        scale: float = 1.0,
        first_message_seconds: float = FIRST_MESSAGE_SECONDS,
        rates: Rates | None = None,
        on_unknown: Callable[[grpc.ServicerContext, str], None] | None = None,
        roles: Mapping[str, Allowance] = ROLE_ALLOWANCES,
    ) -> None:
        if capacity < 1:
            raise ValueError("a service admits at least one call at a time")
        self._register = {p.id: p.identity for p in parties.values()}
        self._allowances = allowances(parties, houses, scale, roles)
        self._allowances[UNREGISTERED] = UNREGISTERED_ALLOWANCE.scaled(scale)
        self.capacity = capacity
        self.first_message_seconds = first_message_seconds
        self._on_unknown = on_unknown
        self._rates = rates or RateLimiter()
        self._held: Counter[str] = Counter()
        self._total = 0
        self._lock = threading.Lock()

    def allowance(self, party: str) -> Allowance:
        """What `party` spends from (UNREGISTERED's for a party unknown to the register)."""
        return self._allowances.get(party, self._allowances[UNREGISTERED])

    def admit(self, caller: Identity, method: str, context: grpc.ServicerContext) -> Ticket:
        """A place for one call of `caller`, or the refusal: PERMISSION_DENIED when the register
        does not know the certificate's party as such (after spending from the shared budget),
        RESOURCE_EXHAUSTED when the party is over its rate or holds all the calls it may."""
        key = caller.id if self._register.get(caller.id) == caller else UNREGISTERED
        if key == UNREGISTERED:
            # Counted as a denial even when over the shared budget: never dropped.
            if self._on_unknown is not None:
                self._on_unknown(context, method)
            self.charge(key, 1)
            raise PermissionDenied(
                "PARTY_UNKNOWN", "the certificate's party is not in the party register as such"
            )
        # No one party may hold more than half of the service.
        limit = min(self.allowance(key).in_flight, max(1, self.capacity // 2))
        with self._lock:
            if self._held[key] >= limit:
                raise TooManyCalls(key, limit)
            if self._total >= self.capacity:
                raise Unavailable("SERVICE_FULL", "the service is answering all it can; try again")
            self._held[key] += 1
            self._total += 1
        return Ticket(lambda: self._release(key))

    def _release(self, key: str) -> None:
        with self._lock:
            self._held[key] -= 1
            self._total -= 1

    def charge(self, party: str, cost: int) -> None:
        """Spend `cost` units of the party's allowance, or RESOURCE_EXHAUSTED (RATE_LIMITED)."""
        allowance = self.allowance(party)
        wait = self._rates.take(party, allowance.per_second, allowance.burst, cost)
        if wait:
            raise RateLimited(party, allowance.per_second, wait)

    def held(self, party: str) -> int:
        with self._lock:
            return self._held[party]

    def first_message(self, requests: Iterator[Any]) -> Iterator[Any]:
        """`requests`, refused with DEADLINE_EXCEEDED (FIRST_MESSAGE_LATE) unless the first
        message (or the end of the stream) comes within `first_message_seconds`.

        gRPC's request iterator cannot be read with a timeout, so a thread of its own waits for
        the first message; the worker waits on it with one. When the call is refused, gRPC ends
        it, and that ends the thread's wait."""
        arrived = threading.Event()
        first: list[Any] = []
        failure: list[BaseException] = []

        def read_first() -> None:
            try:
                first.append(next(requests))
            except StopIteration:
                pass
            except BaseException as exc:  # handed to the worker, which raises it
                failure.append(exc)
            arrived.set()

        threading.Thread(target=read_first, name="first-message", daemon=True).start()
        if not arrived.wait(self.first_message_seconds):
            raise DeadlineExceeded(
                "FIRST_MESSAGE_LATE",
                "send the stream's first message within {firstMessageSeconds} s",
                metadata={"firstMessageSeconds": f"{self.first_message_seconds:g}"},
            )
        if failure:
            raise failure[0]
        if first:
            yield first[0]
            yield from requests
