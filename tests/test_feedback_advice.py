"""Advies op aanvraag: ZSM asks a house for advice within 1 hour to 7 days or by a time on a
working day, tracks the term, may withdraw the request, and decides without it once the term
has passed (a routing decision need not wait)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from builders import Marking, problem, subject
from feedback_harness import KPC_ROTTERDAM, KPC_UTRECHT, USER, RunningFeedback
from google.protobuf import duration_pb2
from google.type import timeofday_pb2
from test_feedback_routing import ROTTERDAM, TRAVELLER, UTRECHT, mark, refused

from baken.clock import AMSTERDAM
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.registry.v1 import marker_pb2, registry_service_pb2
from baken.type.v1 import purpose_pb2
from services.accesslog import store as access_log

GCOS = "adapter-gcos"
FOLLOWED = {"advice_followed": pb.ADVICE_FOLLOWED_FOLLOWED}
CASE = "10-123456-26"


def ask(
    feedback: RunningFeedback,
    *,
    house: str = UTRECHT,
    hours: float = 48,
    party: str = KPC_UTRECHT,
    question: str = "Is het plan van aanpak nog actueel; past een meldplicht?",
) -> pb.AdviceRequest:
    term = duration_pb2.Duration()
    term.FromTimedelta(dt.timedelta(hours=hours))
    response: pb.AdviceRequest = feedback.stub_for(party).RequestAdvice(
        pb.RequestAdviceRequest(
            case_reference=CASE,
            subject=subject(feedback.ring, TRAVELLER),
            house=f"houses/{house}",
            term=term,
            question=question,
            on_behalf_of=USER,
            subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
        ),
        timeout=10,
    )
    return response


def listed(
    feedback: RunningFeedback, *, overdue_only: bool = False, party: str = KPC_UTRECHT
) -> list[pb.AdviceRequest]:
    return list(
        feedback.stub_for(party)
        .ListAdviceRequests(pb.ListAdviceRequestsRequest(overdue_only=overdue_only), timeout=5)
        .advice_requests
    )


def test_an_advice_request_reaches_the_house_with_its_term(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    request = ask(feedback)
    assert request.state == pb.ADVICE_REQUEST_STATE_OPEN
    assert request.house == f"houses/{UTRECHT}" and request.requested_by == KPC_UTRECHT
    assert request.due_time.ToDatetime() - request.requested_time.ToDatetime() == dt.timedelta(
        hours=48
    )
    [item] = feedback.receive(UTRECHT, count=1, party=GCOS)
    assert (item.key, item.kind) == (request.delivery_key, pb.DELIVERY_KIND_ADVICE_REQUEST)
    assert item.due_time == request.due_time
    assert item.question.startswith("Is het plan")
    assert item.source_record_id == f"{UTRECHT}-{TRAVELLER.bsn}"
    assert item.advice_request == request.name  # what the adapter answers by
    assert [r.name for r in listed(feedback)] == [request.name]
    assert listed(feedback, overdue_only=True) == []


def test_advice_requests_are_listed_page_by_page(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    names = [ask(feedback, hours=24 + n).name for n in range(3)]
    stub = feedback.stub_for(KPC_UTRECHT)
    first = stub.ListAdviceRequests(pb.ListAdviceRequestsRequest(page_size=2), timeout=5)
    assert [r.name for r in first.advice_requests] == names[:2] and first.next_page_token
    last = stub.ListAdviceRequests(
        pb.ListAdviceRequestsRequest(page_size=2, page_token=first.next_page_token), timeout=5
    )
    assert [r.name for r in last.advice_requests] == names[2:] and not last.next_page_token
    code, _, fields = refused(
        lambda: stub.ListAdviceRequests(pb.ListAdviceRequestsRequest(page_token="9"), timeout=5)
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])


def test_the_term_is_1_hour_to_7_days(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    for hours in (0.9, 7 * 24 + 1):
        code, _, fields = refused(lambda h=hours: ask(feedback, hours=h))  # type: ignore[misc]
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["term"])
    # At night a short term: advice within three hours, before the voorgeleiding.
    short = ask(feedback, hours=3)
    assert short.due_time.ToDatetime() - short.requested_time.ToDatetime() == dt.timedelta(hours=3)
    assert ask(feedback, hours=1).state == pb.ADVICE_REQUEST_STATE_OPEN
    assert feedback.tables()["advice_requests"][0]["house_id"] == UTRECHT


def ask_by(
    feedback: RunningFeedback, hour: int, minute: int = 0, working_days: int = 1, **fields: Any
) -> pb.AdviceRequest:
    response: pb.AdviceRequest = feedback.stub_for(KPC_UTRECHT).RequestAdvice(
        pb.RequestAdviceRequest(
            case_reference=CASE,
            subject=subject(feedback.ring, TRAVELLER),
            house=f"houses/{UTRECHT}",
            deadline=pb.WorkingDayDeadline(
                time_of_day=timeofday_pb2.TimeOfDay(hours=hour, minutes=minute),
                working_days=working_days,
            ),
            question="Past een meldplicht?",
            on_behalf_of=USER,
            subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
            **fields,
        ),
        timeout=10,
    )
    return response


def _at(feedback: RunningFeedback, local: dt.datetime) -> None:
    clock = feedback.registry.clock
    clock.advance(local.replace(tzinfo=AMSTERDAM) - clock.now())


def _due(request: pb.AdviceRequest) -> dt.datetime:
    return request.due_time.ToDatetime(dt.UTC).astimezone(AMSTERDAM)


def test_advice_by_13_00_on_the_next_working_day(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    # Friday evening 4 December 2026: Monday 13:00.
    _at(feedback, dt.datetime(2026, 12, 4, 21, 30))
    monday = ask_by(feedback, 13)
    assert _due(monday) == dt.datetime(2026, 12, 7, 13, 0, tzinfo=AMSTERDAM)
    [item] = feedback.receive(UTRECHT, count=1, party=GCOS)
    assert item.due_time == monday.due_time
    # Thursday 24 December: Christmas and Boxing Day, then Sunday; Monday the 28th.
    _at(feedback, dt.datetime(2026, 12, 24, 2, 15))
    assert _due(ask_by(feedback, 13)) == dt.datetime(2026, 12, 28, 13, 0, tzinfo=AMSTERDAM)
    # The second working day, at 9:30: Tuesday the 29th.
    assert _due(ask_by(feedback, 9, 30, working_days=2)) == dt.datetime(
        2026, 12, 29, 9, 30, tzinfo=AMSTERDAM
    )


def test_exactly_one_of_term_and_deadline(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    term = duration_pb2.Duration(seconds=3 * 3600)
    cases: list[tuple[Callable[[], object], list[str]]] = [
        (lambda: ask_by(feedback, 13, term=term), ["deadline"]),
        (lambda: ask_by(feedback, 24), ["deadline.time_of_day"]),
        (lambda: ask_by(feedback, 13, working_days=0), ["deadline.working_days"]),
        (lambda: ask_by(feedback, 13, working_days=6), ["deadline.working_days"]),
    ]
    for call, expected in cases:
        code, _, fields = refused(call)
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, expected)
    stub = feedback.stub_for(KPC_UTRECHT)
    code, _, fields = refused(
        lambda: stub.RequestAdvice(
            pb.RequestAdviceRequest(
                case_reference=CASE,
                subject=subject(feedback.ring, TRAVELLER),
                house=f"houses/{UTRECHT}",
                question="Past een meldplicht?",
                on_behalf_of=USER,
                subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
            ),
            timeout=10,
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["term"])
    assert feedback.tables()["advice_requests"] == []


def test_only_a_house_that_marked_the_person_is_asked(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    with pytest.raises(grpc.RpcError) as caught:
        ask(feedback, house=ROTTERDAM)
    found = problem(caught.value)
    assert (found.code, found.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_MARKED_BY_HOUSE",
    )
    assert found.metadata == {"house": f"houses/{ROTTERDAM}"}
    code, _, _ = refused(lambda: ask(feedback, party="zsm-midden-nederland-politie"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert feedback.tables()["advice_requests"] == []


def test_no_decision_while_the_term_runs_but_one_once_it_has_passed(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    request = ask(feedback, hours=24)
    with pytest.raises(grpc.RpcError) as caught:
        feedback.decide(TRAVELLER, party=KPC_UTRECHT, case_reference=CASE, **FOLLOWED)
    found = problem(caught.value)
    assert (found.code, found.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ADVICE_REQUEST_IN_TERM",
    )
    # Which house, and until when: a time a program reads (to the second), not prose.
    due = request.due_time.ToDatetime().replace(tzinfo=dt.UTC, microsecond=0)
    assert found.metadata == {"house": request.house, "dueTime": due.isoformat()}
    # Another case of the same person is not held up.
    feedback.decide(TRAVELLER, party=KPC_UTRECHT, case_reference="10-555555-26", **FOLLOWED)
    feedback.registry.clock.advance(dt.timedelta(hours=24, minutes=1))
    [overdue] = listed(feedback, overdue_only=True)
    assert (overdue.name, overdue.state) == (request.name, pb.ADVICE_REQUEST_STATE_OVERDUE)
    response = feedback.decide(TRAVELLER, party=KPC_UTRECHT, case_reference=CASE, **FOLLOWED)
    assert len(response.items) == 1


def test_a_routing_decision_is_recorded_while_the_term_runs_a_final_one_is_not(
    feedback: RunningFeedback,
) -> None:
    """At night a voorgeleiding cannot wait for the house: routing is not deciding the case."""
    mark(feedback, TRAVELLER, UTRECHT)
    request = ask(feedback, hours=24)
    routed = feedback.decide(
        TRAVELLER,
        party=KPC_UTRECHT,
        case_reference=CASE,
        code=pb.DECISION_CODE_VOORGELEIDING,
        stage=pb.DECISION_STAGE_ROUTING,
        **FOLLOWED,
    )
    assert [(i.house, i.kind) for i in routed.items] == [(request.house, pb.DELIVERY_KIND_DECISION)]
    # A final decision, or a deciding code passed off as routing, still waits for the term.
    for code, stage in (
        (pb.DECISION_CODE_VOORGELEIDING, pb.DECISION_STAGE_FINAL),
        (pb.DECISION_CODE_DAGVAARDING, pb.DECISION_STAGE_ROUTING),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            feedback.decide(
                TRAVELLER,
                party=KPC_UTRECHT,
                case_reference=CASE,
                code=code,
                stage=stage,
                **FOLLOWED,
            )
        found = problem(caught.value)
        assert (found.code, found.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "ADVICE_REQUEST_IN_TERM",
        )
        assert found.metadata["house"] == request.house
    assert [r.state for r in listed(feedback)] == [pb.ADVICE_REQUEST_STATE_OPEN]


def answer(feedback: RunningFeedback, name: str, party: str = GCOS) -> pb.AdviceRequest:
    answered: pb.AdviceRequest = feedback.stub_for(party).AnswerAdviceRequest(
        pb.AnswerAdviceRequestRequest(name=name), timeout=5
    )
    return answered


def test_the_houses_adapter_answers_and_zsm_may_decide(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    request = ask(feedback)
    [item] = feedback.receive(UTRECHT, count=1, party=GCOS)
    first = answer(feedback, item.advice_request)
    assert first.name == request.name
    assert first.state == pb.ADVICE_REQUEST_STATE_ANSWERED and first.answered_time.seconds
    again = answer(feedback, request.name)
    assert again.answered_time == first.answered_time
    assert listed(feedback) == []
    assert listed(feedback, party="operator") == []
    feedback.decide(TRAVELLER, party=KPC_UTRECHT, case_reference=CASE, **FOLLOWED)


def test_a_request_is_answered_by_its_name_and_only_by_that(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    request = ask(feedback)
    code, reason, _ = refused(lambda: answer(feedback, "adviceRequests/0123456789abcdef0123"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "ADVICE_REQUEST_NOT_FOUND")
    malformed = [
        "",
        request.delivery_key,  # the delivery item's key is not the request's name
        request.name.removeprefix("adviceRequests/"),
        "adviceRequests/",
        f"{request.name}/answers",
        request.name.upper(),
        "houses/vh-regio-utrecht-utrecht",
    ]
    for name in malformed:
        code, _, fields = refused(lambda n=name: answer(feedback, n))  # type: ignore[misc]
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["name"]), name
    assert [(r.name, r.state) for r in listed(feedback)] == [
        (request.name, pb.ADVICE_REQUEST_STATE_OPEN)
    ]


def test_one_houses_adapter_cannot_answer_another_houses_request(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, UTRECHT, ROTTERDAM)
    utrecht, rotterdam = ask(feedback, house=UTRECHT), ask(feedback, house=ROTTERDAM)
    pga = "adapter-pga"  # Rotterdam's source system; Utrecht's is GCOS
    for name, party in ((utrecht.name, pga), (rotterdam.name, GCOS)):
        code, reason, _ = refused(lambda n=name, p=party: answer(feedback, n, p))  # type: ignore[misc]
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_THE_HOUSES_ADAPTER")
    code, _, _ = refused(lambda: answer(feedback, utrecht.name, KPC_UTRECHT))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert {r.name for r in listed(feedback)} == {utrecht.name, rotterdam.name}
    assert answer(feedback, utrecht.name, GCOS).state == pb.ADVICE_REQUEST_STATE_ANSWERED
    assert answer(feedback, rotterdam.name, pga).state == pb.ADVICE_REQUEST_STATE_ANSWERED
    assert listed(feedback) == []


def test_technisch_sepot_01_purges_the_cases_advice_requests(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    ask(feedback)
    purge = feedback.decide(
        TRAVELLER, party=KPC_UTRECHT, case_reference=CASE, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01
    )
    assert purge.purged_items == 1
    tables = feedback.tables()
    assert tables["advice_requests"] == [] and tables["deliveries"] == []


# From this day national@v2 lets the KPC'er who asked read the answer (covenants/national.toml).
ADVICE_TRAVELS = dt.date(2026, 12, 1)
FRESH = "Strafbeschikking met meldplicht; het plan van aanpak in Rotterdam loopt door."


@pytest.mark.parametrize("day", [ADVICE_TRAVELS - dt.timedelta(days=1), ADVICE_TRAVELS], ids=str)
def test_the_desk_that_asked_another_regions_house_reads_the_answer_from_december_2026(
    feedback: RunningFeedback, day: dt.date
) -> None:
    feedback.registry.set_today(day)
    mark(feedback, TRAVELLER, UTRECHT, ROTTERDAM)
    request = ask(feedback, house=ROTTERDAM)  # ZSM Midden-Nederland asks Rotterdam
    # The house answers in its own source with a new advice; the adapter syncs it and says so.
    record = f"{ROTTERDAM}-{TRAVELLER.bsn}"
    new = Marking(TRAVELLER, record, house=ROTTERDAM, version=2, advice=FRESH, advice_date=day)
    feedback.registry.sync(new.upsert(feedback.ring))
    assert answer(feedback, request.name, "adapter-pga").state == pb.ADVICE_REQUEST_STATE_ANSWERED

    # The desk that asked reads the answer where it is: in the registry, for the same purpose
    # and case.
    response = feedback.registry.lookup(
        subject(feedback.ring, TRAVELLER),
        party=KPC_UTRECHT,
        purpose=purpose_pb2.PURPOSE_ADVIES_OP_AANVRAAG,
        case_reference=CASE,
    )

    markers = {m.house.name.removeprefix("houses/"): m for m in response.markers}
    withheld = {
        (w.marker.split("/")[1] if w.marker else "", w.field): (
            registry_service_pb2.WithholdReason.Name(w.reason).removeprefix("WITHHOLD_REASON_"),
            f"{w.covenant} {w.grant}",
        )
        for w in response.withheld
    }
    own = "midden-nederland@v1 kpc-intake-terugkoppeling"
    if day < ADVICE_TRAVELS:
        # Version 1 of the national covenant grants this purpose nothing: Rotterdam's marker,
        # answer and all, lies outside the desk's region.
        assert set(markers) == {UTRECHT}
        assert withheld[("", "marker")] == ("OUTSIDE_REGION", own)
        return
    assert markers[ROTTERDAM].advice.text == FRESH
    assert markers[ROTTERDAM].advice.freshness == marker_pb2.ADVICE_FRESHNESS_CURRENT
    # Only the that-signal and the advice: the plan stays with Rotterdam's covenant.
    assert not markers[ROTTERDAM].plan_status and not markers[ROTTERDAM].source_record_id
    for field in ("plan_status", "mark_date", "source_record"):
        assert withheld[(ROTTERDAM, field)] == ("OUTSIDE_REGION", own), field
    with feedback.registry.engine.connect() as connection:
        entry = access_log.search(connection, limit=10_000)[-1]
    assert (entry.party_id, entry.body["purpose"]) == (KPC_UTRECHT, "advies-op-aanvraag")
    assert entry.body["case_reference"] == CASE
    shown = {d["marker"]: d["fields"] for d in entry.body["disclosed"]}
    assert shown[markers[ROTTERDAM].name]["advice"] == "national@v2 advies-op-aanvraag-antwoord"


def cancel(feedback: RunningFeedback, name: str, party: str = KPC_UTRECHT) -> pb.AdviceRequest:
    cancelled: pb.AdviceRequest = feedback.stub_for(party).CancelAdviceRequest(
        pb.CancelAdviceRequestRequest(name=name, on_behalf_of=USER), timeout=5
    )
    return cancelled


def test_the_requester_cancels_and_the_house_hears_it(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    request = ask(feedback)
    cancelled = cancel(feedback, request.name)
    assert cancelled.state == pb.ADVICE_REQUEST_STATE_CANCELLED and cancelled.cancelled_time.seconds
    assert cancel(feedback, request.name).cancelled_time == cancelled.cancelled_time  # once
    # In order after the request: the house's adapter gets both, the withdrawal naming it.
    [asked] = feedback.receive(UTRECHT, count=1, party=GCOS)
    feedback.ack(asked.key, GCOS)
    [withdrawn] = feedback.receive(UTRECHT, count=1, party=GCOS)
    assert (asked.kind, withdrawn.kind) == (
        pb.DELIVERY_KIND_ADVICE_REQUEST,
        pb.DELIVERY_KIND_ADVICE_REQUEST_CANCELLED,
    )
    assert withdrawn.advice_request == request.name
    assert withdrawn.source_record_id == asked.source_record_id
    assert withdrawn.case_reference == CASE
    assert (withdrawn.question, withdrawn.HasField("due_time")) == ("", False)
    # No longer open, and no longer holding up the decision.
    assert listed(feedback) == []
    feedback.decide(TRAVELLER, party=KPC_UTRECHT, case_reference=CASE, **FOLLOWED)
    # An answer that comes after all keeps it cancelled.
    assert answer(feedback, request.name).state == pb.ADVICE_REQUEST_STATE_CANCELLED


def test_only_the_requesting_party_cancels_an_open_request(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    request = ask(feedback)
    for party in (KPC_ROTTERDAM, GCOS):
        code, _, _ = refused(lambda p=party: cancel(feedback, request.name, p))  # type: ignore[misc]
        assert code == grpc.StatusCode.PERMISSION_DENIED, party
    with pytest.raises(grpc.RpcError) as caught:
        cancel(feedback, request.name, KPC_ROTTERDAM)
    assert problem(caught.value).reason == "NOT_THE_REQUESTER"
    code, reason, _ = refused(lambda: cancel(feedback, "adviceRequests/0123456789abcdef0123"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "ADVICE_REQUEST_NOT_FOUND")
    assert [r.state for r in listed(feedback)] == [pb.ADVICE_REQUEST_STATE_OPEN]


def test_an_answered_or_overdue_request_is_not_cancelled(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    answered, late = ask(feedback), ask(feedback, hours=24)
    answer(feedback, answered.name)
    feedback.registry.clock.advance(dt.timedelta(hours=25))
    for request, state in ((answered, "ANSWERED"), (late, "OVERDUE")):
        with pytest.raises(grpc.RpcError) as caught:
            cancel(feedback, request.name)
        found = problem(caught.value)
        assert (found.code, found.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            f"ADVICE_REQUEST_{state}",
        )
        assert found.metadata == {"state": f"ADVICE_REQUEST_STATE_{state}"}
    assert [r.name for r in listed(feedback, overdue_only=True)] == [late.name]
