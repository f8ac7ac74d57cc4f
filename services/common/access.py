"""Which fields a caller may see, decided from the covenants: the one place of that decision.

`AccessPolicy.authorise` admits a caller for a purpose (or refuses it, with the reason); the
returned `Scope` then answers, per house and field, whether the field is disclosed and which
covenant and grant decided either way. Scopes are computed once per party, purpose and day.
Besides the marker fields, a scope for a purpose about persons decides the feedback fields
(what a house may receive back, granted for terugkoppeling only) by the same rules.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from baken.errors import PermissionDenied
from baken.houses import House
from baken.pki import Identity
from services.common.covenants import (
    FEEDBACK_FIELDS,
    MARKER_FIELDS,
    PURPOSE_ONLY_FIELDS,
    Covenant,
    CovenantSet,
    Grant,
)


class Withhold(Enum):
    """Why a field is not disclosed; the names match WithholdReason on the wire."""

    NO_COVENANT = "NO_COVENANT"
    PURPOSE_NOT_GRANTED = "PURPOSE_NOT_GRANTED"
    OUTSIDE_REGION = "OUTSIDE_REGION"
    ADVICE_EXPIRED = "ADVICE_EXPIRED"
    MINOR_AT_INTAKE = "MINOR_AT_INTAKE"
    COVENANT_EXPIRED = "COVENANT_EXPIRED"


@dataclass(frozen=True, slots=True)
class Decision:
    """Disclosed (reason None) or withheld, and the covenant and grant that decided."""

    reason: Withhold | None
    covenant: str = ""
    grant: str = ""

    @property
    def disclosed(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class Scope:
    """What one caller may see for one purpose on one day."""

    caller: Identity
    purpose: str
    # house id -> field -> decision
    decisions: Mapping[str, Mapping[str, Decision]]
    # The covenants in force that admitted the caller for the purpose.
    covenants: tuple[str, ...] = field(default=())
    # What users of the scope derive from its decisions, once per scope (a scope lives a
    # day): disclosure.py's field plan per house.
    derived: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)

    def decide(self, house_id: str, field_name: str) -> Decision:
        return self.decisions[house_id][field_name]


# The role of the party that receives a house's terugkoppeling: the house's process director.
RECIPIENT_ROLE = "vh-process-director"
# Fields a scope decides for a purpose about persons.
PERSON_FIELDS = (*MARKER_FIELDS, *FEEDBACK_FIELDS)


class AccessPolicy:
    def __init__(self, covenants: CovenantSet, houses: Mapping[str, House]) -> None:
        self._set = covenants
        self._houses = houses
        self._scopes: dict[tuple[Identity, str, dt.date], Scope] = {}
        self._lock = threading.Lock()
        # Region -> the first process director of the region in the party register.
        self._recipients: dict[str, Identity] = {}
        for party in covenants.parties.values():
            if party.role == RECIPIENT_ROLE and party.region is not None:
                self._recipients.setdefault(party.region, party.identity)

    @property
    def covenants(self) -> CovenantSet:
        return self._set

    @property
    def houses(self) -> Mapping[str, House]:
        return self._houses

    def recipient_of(self, house: House) -> Identity | None:
        """Who receives the house's terugkoppeling: the party of the register with the role
        vh-process-director in the house's region; None when the region has none. Whether it
        may receive a feedback field is for its scope (purpose terugkoppeling) to decide."""
        return self._recipients.get(house.region)

    def check_party(self, caller: Identity) -> None:
        """The certificate's party must be in the register, with the same organisation and role."""
        entry = self._set.parties.get(caller.id)
        if entry is None or entry.identity != caller:
            raise PermissionDenied(
                "PARTY_UNKNOWN", "the certificate's party is not in the party register as such"
            )

    def authorise(self, caller: Identity, purpose: str, today: dt.date) -> Scope:
        """The caller's scope for `purpose`, or PermissionDenied naming why not."""
        key = (caller, purpose, today)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._authorise(caller, purpose, today)
            with self._lock:
                if len(self._scopes) > 10_000:
                    self._scopes.clear()
                self._scopes[key] = scope
        return scope

    def _authorise(self, caller: Identity, purpose: str, today: dt.date) -> Scope:
        self.check_party(caller)
        mine = self._set.of_party(caller.id)
        granting = [
            c for c in mine for g in c.grants if caller.role in g.roles and purpose in g.purposes
        ]
        in_force = tuple(dict.fromkeys(c.ref for c in granting if c.in_force(today)))
        if not in_force:
            if granting:
                raise PermissionDenied(
                    "COVENANT_EXPIRED",
                    "the covenant granting {purpose} is not in force",
                    metadata={"purpose": purpose},
                )
            if mine:
                raise PermissionDenied(
                    "PURPOSE_NOT_GRANTED",
                    "no covenant grants {purpose} to role {role}",
                    metadata={"purpose": purpose, "role": caller.role},
                )
            raise PermissionDenied("NO_COVENANT", "the caller's party is in no covenant")
        grants = [(c, g) for c in mine for g in c.grants if caller.role in g.roles]
        fields = PURPOSE_ONLY_FIELDS.get(purpose)
        names = (fields,) if fields else PERSON_FIELDS
        decisions = {
            house.id: {name: _decide(grants, house, name, purpose, today) for name in names}
            for house in self._houses.values()
        }
        return Scope(caller, purpose, decisions, in_force)


# (reason, needs the covenant in force, needs the purpose, needs the house covered): the first
# rule a grant with the field meets decides, from disclosure to the most distant reason.
_RULES = (
    (None, True, True, True),
    (Withhold.OUTSIDE_REGION, True, True, False),
    (Withhold.PURPOSE_NOT_GRANTED, True, False, True),
    (Withhold.COVENANT_EXPIRED, False, True, True),
)


def _decide(
    grants: list[tuple[Covenant, Grant]], house: House, name: str, purpose: str, today: dt.date
) -> Decision:
    """The first rule that applies, from disclosure to the most distant reason to withhold."""
    # The house's own regional covenant is cited before a national one that says the same.
    with_field = sorted(
        ((c, g) for c, g in grants if name in g.fields), key=lambda cg: cg[0].region != house.region
    )
    for reason, in_force, for_purpose, covers in _RULES:
        for c, g in with_field:
            if (
                (not in_force or c.in_force(today))
                and (not for_purpose or purpose in g.purposes)
                and (not covers or c.covers(g, house))
            ):
                return Decision(reason, c.ref, g.id)
    return Decision(Withhold.NO_COVENANT)
