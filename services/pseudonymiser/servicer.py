"""The pseudonymisation service's one call: evaluate the OPRF on blinded elements (RFC 9497,
baken/oprf.py) under a key only this service holds, for a party whose role pseudonymises, and
write the call to the access log: party, role, key id and count of elements, never an element
(an element says nothing without its blind, but the log keeps no more than it needs)."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from sqlalchemy import Engine

from baken import oprf
from baken.clock import Clock
from baken.errors import FieldViolation, InvalidArgument, PermissionDenied
from baken.keyring import KeyRing
from baken.pseudonymiser.v1 import pseudonymiser_service_pb2 as pb
from baken.pseudonymiser.v1 import pseudonymiser_service_pb2_grpc as pb_grpc
from baken.purposes import PURPOSE_TOKENS
from services.accesslog.inquiry import entry, inquiry_of, log_refusal
from services.accesslog.store import AccessLog
from services.common import db
from services.common.admission import ROLE_ALLOWANCES, Allowance
from services.common.covenants import CovenantSet

SERVICE = "/" + pb.DESCRIPTOR.services_by_name["PseudonymiserService"].full_name + "/"
ACTIVITY = "baken:pseudonimisering"

# The roles of the party register that turn a BSN or a name into a pseudonym: the ZSM desks
# (they look up), the houses' process directors (they check their own clients, BatchLookup at
# controle), the source adapters (they sync markers) and the privacy officer (a data subject's
# report). Every other role is refused: it has no identifier to pseudonymise.
PSEUDONYMISING_ROLES = frozenset(
    {
        "kpc",
        "zsm-officier",
        "police",
        "probation",
        "rvdk",
        "vh-process-director",
        "source-adapter",
        "privacy-auditor",
    }
)
# What each role may spend here, in elements (one per pseudonym per key). A desk looks up a
# night's inflow; an adapter syncs its whole export (100,000 persons, two pseudonyms each under
# two keys while a key rotates) once in a while. The refill is what bounds a stolen certificate:
# an adapter's 5 a second is some 430,000 a day, over 200 days for the 90 million valid BSNs,
# every call in the access log.
ALLOWANCES: Mapping[str, Allowance] = {
    **{role: Allowance(1, 10, 2) for role in ROLE_ALLOWANCES},
    **{role: Allowance(2, 2000, 4) for role in ("kpc", "zsm-officier", "police")},
    **{role: Allowance(2, 2000, 4) for role in ("probation", "rvdk", "vh-process-director")},
    "source-adapter": Allowance(5, 500_000, 4),
    "privacy-auditor": Allowance(1, 100, 2),
}


class OprfKeys:
    """The service's OPRF private keys by key id, derived from the key file's seeds (RFC 9497
    DeriveKeyPair, the key id as info): the file holds 32 random bytes a key, like an edge's."""

    def __init__(self, ring: KeyRing) -> None:
        self._secrets = {
            key_id: oprf.derive_key_pair(seed, b"baken-pseudonymiser:" + key_id.encode())[0]
            for key_id, seed in ring.items()
        }

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._secrets

    def ids(self) -> list[str]:
        return list(self._secrets)

    def evaluate(self, key_id: str, elements: list[bytes]) -> list[bytes]:
        return oprf.blind_evaluate_batch(self._secrets[key_id], elements)


class PseudonymiserServicer(pb_grpc.PseudonymiserServiceServicer):
    def __init__(
        self,
        keys: OprfKeys,
        *,
        engine: Engine,
        log: AccessLog,
        clock: Clock,
        register: CovenantSet,
    ) -> None:
        self._keys = keys
        self._engine = engine
        self._log = log
        self._clock = clock
        self._register = register

    def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.ServicerContext
    ) -> pb.EvaluateResponse:
        inquiry = inquiry_of(
            context,
            SERVICE + "Evaluate",
            PURPOSE_TOKENS.get(request.purpose, ""),
            request.on_behalf_of,
            register=self._register,
        )
        count = len(request.blinded_elements)
        if inquiry.caller.role not in PSEUDONYMISING_ROLES:
            log_refusal(
                self._engine,
                self._log,
                inquiry,
                self._clock.now(),
                "ROLE_DOES_NOT_PSEUDONYMISE",
                activity=ACTIVITY,
                key_id=request.key_id,
                elements=count,
            )
            raise PermissionDenied(
                "ROLE_DOES_NOT_PSEUDONYMISE",
                "role {role} does not pseudonymise",
                metadata={"role": inquiry.caller.role},
            )
        if request.key_id not in self._keys:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "key_id", f"not a key of this service: {', '.join(self._keys.ids())}"
                    )
                ],
                reason="KEY_UNKNOWN",
            )
        elements = list(request.blinded_elements)
        try:
            evaluated = self._keys.evaluate(request.key_id, elements)
        except oprf.InvalidElement as bad:
            index = int(str(bad).removeprefix("item "))
            raise InvalidArgument(
                [
                    FieldViolation(
                        f"blinded_elements[{index}]",
                        "not a ristretto255 element other than the identity",
                    )
                ]
            ) from None
        now = self._clock.now()
        with db.write_transaction(self._engine) as connection:
            self._log.append(
                connection,
                [
                    entry(
                        inquiry,
                        now,
                        "evaluated",
                        activity=ACTIVITY,
                        key_id=request.key_id,
                        elements=count,
                    )
                ],
                now,
            )
        return pb.EvaluateResponse(key_id=request.key_id, evaluated_elements=evaluated)
