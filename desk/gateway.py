"""The screen's calls to the services: one mTLS channel per desk party, each call made with
the certificate of the signed-in user's party and on behalf of that user. Nothing is cached:
every view of a suspect is a Lookup of its own, in the registry's access log like any other."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from baken.client import connect
from baken.clock import Clock, SystemClock
from baken.feedback.v1 import feedback_service_pb2 as fb
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.pki import PkiError, TlsFiles, party_of
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from baken.type.v1 import pseudonym_pb2, purpose_pb2

TIMEOUT_S = 5.0
# What each role at the desk looks up for: the KPC'er selects at intake, the OvJ decides.
PURPOSE = {
    "kpc": purpose_pb2.PURPOSE_INTAKE_EN_SELECTIE,
    "zsm-officier": purpose_pb2.PURPOSE_AFDOENINGSBESLISSING,
}
ROLES = frozenset(PURPOSE)
# Who records decisions and asks advice: the shipped covenants grant terugkoppeling and
# advies-op-aanvraag to the KPC'er, not to the OvJ, whose decision the KPC'er feeds back. The
# screen offers the OvJ no form the feedback service would refuse; it would refuse it anyway.
ACTING_ROLES = frozenset({"kpc"})


@dataclass(frozen=True, slots=True)
class Party:
    id: str
    role: str
    registry: registry_service_pb2_grpc.RegistryServiceStub
    feedback: feedback_service_pb2_grpc.FeedbackServiceStub


@dataclass(frozen=True, slots=True)
class Suspect:
    """An inflow entry as the server keeps it for a session: what a call about him needs."""

    name: str
    case_reference: str
    subject: pseudonym_pb2.Subject
    subject_age: registry_service_pb2.SubjectAge.ValueType
    held: fb.HeldDecision | None
    arrest_time: timestamp_pb2.Timestamp
    checked: bool


class Gateway:
    def __init__(
        self,
        pki_dir: Path,
        parties: Iterable[str],
        *,
        registry: str,
        feedback: str,
        clock: Clock | None = None,
    ) -> None:
        """`clock`: the services' (BAKEN_CLOCK_FILE in the demo), for the time of a check."""
        self._clock = clock or SystemClock()
        self._channels: list[grpc.Channel] = []
        self.parties: dict[str, Party] = {}
        for party in sorted(set(parties)):
            tls = TlsFiles.of(pki_dir, party)
            cert, _key, _ca = tls.read()
            identity = party_of(cert)
            if identity.id != party:
                raise PkiError(f"{tls.cert}: names {identity.id}, not {party}")
            if identity.role not in ROLES:
                raise PkiError(
                    f"{party}: role {identity.role!r}; the desk's screen serves "
                    f"{' and '.join(sorted(ROLES))} only"
                )
            registry_channel = connect(registry, tls)
            feedback_channel = connect(feedback, tls)
            self._channels += [registry_channel, feedback_channel]
            self.parties[party] = Party(
                party,
                identity.role,
                registry_service_pb2_grpc.RegistryServiceStub(registry_channel),
                feedback_service_pb2_grpc.FeedbackServiceStub(feedback_channel),
            )

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def inflow(self, party: str, user: str) -> list[fb.InflowEntry]:
        """The last 24 hours' inflow of the party's region, newest arrest first (up to 200)."""
        response = self.parties[party].feedback.ListInflow(
            fb.ListInflowRequest(on_behalf_of=user, page_size=200), timeout=TIMEOUT_S
        )
        return list(response.entries)

    def lookup(
        self, party: str, user: str, suspect: Suspect
    ) -> registry_service_pb2.LookupResponse:
        p = self.parties[party]
        response: registry_service_pb2.LookupResponse = p.registry.Lookup(
            registry_service_pb2.LookupRequest(
                subject=suspect.subject,
                purpose=PURPOSE[p.role],
                case_reference=suspect.case_reference,
                on_behalf_of=user,
                subject_age=suspect.subject_age,
            ),
            timeout=TIMEOUT_S,
        )
        return response

    def record_check(self, party: str, user: str, suspect: Suspect, *, known: bool) -> None:
        """The KPC'er's intake look-up as the inflow's check of the suspect (RecordInflow fills
        in what was missing and changes nothing else)."""
        request = fb.RecordInflowRequest(
            case_reference=suspect.case_reference,
            subject=suspect.subject,
            arrest_time=suspect.arrest_time,
            subject_age=suspect.subject_age,
            known=known,
            on_behalf_of=user,
        )
        request.checked_time.FromDatetime(self._clock.now())
        self.parties[party].feedback.RecordInflow(request, timeout=TIMEOUT_S)

    def decide(
        self,
        party: str,
        user: str,
        suspect: Suspect,
        *,
        code: fb.DecisionCode.ValueType,
        stage: fb.DecisionStage.ValueType,
        sepot_code: str,
        lines: list[fb.HouseAdvice],
        probation_report_requested: bool,
        request_key: str,
    ) -> fb.RecordDecisionResponse:
        response: fb.RecordDecisionResponse = self.parties[party].feedback.RecordDecision(
            fb.RecordDecisionRequest(
                case_reference=suspect.case_reference,
                subject=suspect.subject,
                code=code,
                sepot_code=sepot_code,
                stage=stage,
                subject_age=suspect.subject_age,
                house_advice=lines,
                probation_report_requested=probation_report_requested,
                on_behalf_of=user,
                request_key=request_key,
            ),
            timeout=TIMEOUT_S,
        )
        return response

    def request_advice(
        self, party: str, user: str, suspect: Suspect, *, house: str, hours: int, question: str
    ) -> fb.AdviceRequest:
        term = duration_pb2.Duration()
        term.FromTimedelta(dt.timedelta(hours=hours))
        response: fb.AdviceRequest = self.parties[party].feedback.RequestAdvice(
            fb.RequestAdviceRequest(
                case_reference=suspect.case_reference,
                subject=suspect.subject,
                house=house,
                term=term,
                question=question,
                on_behalf_of=user,
                subject_age=suspect.subject_age,
            ),
            timeout=TIMEOUT_S,
        )
        return response

    def advice_requests(self, party: str, *, overdue_only: bool) -> list[fb.AdviceRequest]:
        found: list[fb.AdviceRequest] = []
        token = ""
        for _ in range(10):  # at most 2000: a desk's open requests
            page = self.parties[party].feedback.ListAdviceRequests(
                fb.ListAdviceRequestsRequest(
                    overdue_only=overdue_only, page_size=200, page_token=token
                ),
                timeout=TIMEOUT_S,
            )
            found.extend(page.advice_requests)
            token = page.next_page_token
            if not token:
                break
        return found

    def cancel_advice(self, party: str, user: str, name: str) -> fb.AdviceRequest:
        response: fb.AdviceRequest = self.parties[party].feedback.CancelAdviceRequest(
            fb.CancelAdviceRequestRequest(name=name, on_behalf_of=user), timeout=TIMEOUT_S
        )
        return response
