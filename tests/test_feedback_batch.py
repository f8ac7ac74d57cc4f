"""RecordDecisions: a desk's decisions in one call (a queue sent once Baken answers again), each
routed, refused and logged as RecordDecision would, against a real feedback service in front of
a real registry with the shipped covenants."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from builders import Marking, Person, problem, problem_of_status
from feedback_harness import KPC_ROTTERDAM, USER, RunningFeedback, decision_request
from test_admission import code_of, parties_in

from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.houses import load_houses
from services.common.admission import allowances

TRAVELLER = Person(bsn="111222333", surname="Jansen", birth_date=dt.date(1990, 5, 17))
STRANGER = Person(bsn="123456782", surname="de Vries", birth_date=dt.date(1988, 2, 3))
ROTTERDAM = "vh-rotterdam-rijnmond"
UTRECHT = "vh-regio-utrecht-utrecht"
FOLLOWED = {"advice_followed": pb.ADVICE_FOLLOWED_FOLLOWED}


def mark(feedback: RunningFeedback, person: Person, *houses: str) -> None:
    feedback.registry.sync(
        *(
            Marking(person, f"{house}-{person.bsn}", house=house).upsert(feedback.ring)
            for house in houses
        )
    )


def record(
    feedback: RunningFeedback, *requests: pb.RecordDecisionRequest, party: str = KPC_ROTTERDAM
) -> list[pb.RecordDecisionResult]:
    response: pb.RecordDecisionsResponse = feedback.stub_for(party).RecordDecisions(
        pb.RecordDecisionsRequest(requests=requests), timeout=10
    )
    return list(response.results)


def decision(
    feedback: RunningFeedback, person: Person, case: str, **fields: object
) -> pb.RecordDecisionRequest:
    return decision_request(feedback.ring, person, case_reference=case, **fields)


def refusal(result: pb.RecordDecisionResult) -> tuple[grpc.StatusCode, str | None, list[str]]:
    assert result.WhichOneof("result") == "error"
    found = problem_of_status(result.error)
    return found.code, found.reason, found.fields


def decision_entries(feedback: RunningFeedback) -> list[dict[str, object]]:
    bodies = [json.loads(row["body"]) for row in feedback.tables()["access_log"]]
    return [b for b in bodies if b["processing_activity"] == "baken:terugkoppeling-zsm-beslissing"]


def test_each_decision_of_a_batch_is_routed_refused_and_logged_as_alone(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, ROTTERDAM, UTRECHT)
    results = record(
        feedback,
        decision(feedback, TRAVELLER, "10-000001-26", **FOLLOWED),
        decision(feedback, STRANGER, "10-000002-26"),
        decision(feedback, TRAVELLER, "10-000003-26"),  # Rotterdam's advice not weighed
        decision(feedback, TRAVELLER, "", **FOLLOWED),  # no case
        decision(feedback, TRAVELLER, "10-000005-26", on_behalf_of="not a user id!", **FOLLOWED),
    )
    known, stranger, unweighed, no_case, lying = results
    assert sorted(i.house for i in known.decision.items) == [
        f"houses/{UTRECHT}",
        f"houses/{ROTTERDAM}",
    ]
    assert known.decision.name.startswith("decisions/")
    assert stranger.decision.name.startswith("decisions/") and not stranger.decision.items
    assert refusal(unweighed)[::2] == (grpc.StatusCode.INVALID_ARGUMENT, ["house_advice"])
    assert refusal(no_case)[::2] == (grpc.StatusCode.INVALID_ARGUMENT, ["case_reference"])
    assert refusal(lying)[0] == grpc.StatusCode.INVALID_ARGUMENT
    # What was refused left nothing behind; what was recorded is as RecordDecision records it.
    tables = feedback.tables()
    assert sorted(d["case_reference"] for d in tables["decisions"]) == [
        "10-000001-26",
        "10-000002-26",
    ]
    sent = {row["house_id"]: feedback.stored(row) for row in tables["deliveries"]}
    for house in (ROTTERDAM, UTRECHT):
        assert sent[house].case_reference == "10-000001-26"
        assert sent[house].source_record_id == f"{house}-{TRAVELLER.bsn}"
        assert sent[house].decision.code == pb.DECISION_CODE_DAGVAARDING
        assert sent[house].decision.other_houses == 1
    # Every decision recorded has its own entry, naming the batch's method and the user.
    entries = decision_entries(feedback)
    assert [(e["case_reference"], e["outcome"]) for e in entries] == [
        ("10-000001-26", "routed"),
        ("10-000002-26", "not-routed"),
    ]
    assert {e["operation"] for e in entries} == {
        "/baken.feedback.v1.FeedbackService/RecordDecisions"
    }
    assert {e["on_behalf_of"] for e in entries} == {USER}
    # The routing look-ups were one registry call, each person in the registry's log on
    # behalf of the desk's user.
    lookups = [
        json.loads(row["body"])
        for row in feedback.registry.tables()["access_log"]
        if "BatchLookup" in row["body"]
    ]
    assert sorted(b["case_reference"] for b in lookups) == [
        "10-000001-26",
        "10-000002-26",
        "10-000003-26",
    ]
    assert {b["on_behalf_of"] for b in lookups} == {f"{KPC_ROTTERDAM}/{USER}"}


def test_a_batch_sent_again_records_nothing_twice(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, ROTTERDAM, UTRECHT)
    batch = [
        decision(feedback, TRAVELLER, f"10-00001{n}-26", request_key=f"k{n}", **FOLLOWED)
        for n in range(3)
    ]
    first = record(feedback, *batch)
    tables = feedback.tables()
    # The answer was lost: the desk sends the batch again, and one decision more.
    again = record(feedback, *batch, decision(feedback, STRANGER, "10-000019-26", request_key="k9"))
    assert [r.decision.name for r in again[:3]] == [r.decision.name for r in first]
    assert [sorted(i.key for i in r.decision.items) for r in again[:3]] == [
        sorted(i.key for i in r.decision.items) for r in first
    ]
    after = feedback.tables()
    assert len(after["decisions"]) == len(tables["decisions"]) + 1
    assert len(after["deliveries"]) == len(tables["deliveries"])
    # A key twice in one batch: the second is the first's answer, as a retry would get it.
    twice = record(
        feedback,
        decision(feedback, STRANGER, "10-000020-26", request_key="k20"),
        decision(feedback, STRANGER, "10-000020-26", request_key="k20"),
    )
    assert twice[0].decision.name == twice[1].decision.name
    assert len(feedback.tables()["decisions"]) == len(after["decisions"]) + 1


def test_a_batch_is_applied_in_order_a_purge_among_its_decisions_too(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, ROTTERDAM, UTRECHT)
    case = "10-000030-26"
    routed, purge, late = record(
        feedback,
        decision(feedback, TRAVELLER, case, **FOLLOWED),
        decision(feedback, TRAVELLER, case, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01),
        decision(feedback, TRAVELLER, case, **FOLLOWED),
    )
    assert len(routed.decision.items) == 2
    assert (purge.decision.name, purge.decision.purged_items) == ("", 2)
    assert refusal(late)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "CASE_PURGED")
    tables = feedback.tables()
    assert tables["decisions"] == []
    # The houses' matchingsmelding, brought along by the purge's take-over of signals, stays.
    assert {row["kind"] for row in tables["deliveries"]} == {pb.DELIVERY_KIND_MATCH}


def test_only_a_desk_records_decisions_in_a_batch_as_alone(feedback: RunningFeedback) -> None:
    # An adapter's certificate may not record a decision, whatever its request says.
    with pytest.raises(grpc.RpcError) as caught:
        record(feedback, decision(feedback, TRAVELLER, "10-000040-26"), party="adapter-pga")
    assert problem(caught.value).code == grpc.StatusCode.PERMISSION_DENIED
    # More than a hundred at once is refused whole, and records nothing.
    many = [decision(feedback, STRANGER, f"10-{n:06d}-26") for n in range(101)]
    with pytest.raises(grpc.RpcError) as caught:
        record(feedback, *many)
    assert problem(caught.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert feedback.tables()["decisions"] == []


def test_a_batch_counts_every_decision_against_the_desks_rate(feedback: RunningFeedback) -> None:
    # A flood in few calls: each decision of a batch is charged as a call of its own. (The
    # decisions lack their case, so what passes admission records nothing.)
    allowance = allowances(parties_in(feedback.settings.covenants_dir), load_houses())[
        KPC_ROTTERDAM
    ]
    request = pb.RecordDecisionsRequest(
        requests=[decision(feedback, STRANGER, "") for _ in range(100)]
    )
    stub = feedback.stub_for(KPC_ROTTERDAM)
    calls = allowance.burst // 100 + 2
    codes = [code_of(lambda: stub.RecordDecisions(request, timeout=10)) for _ in range(calls)]
    assert grpc.StatusCode.OK in codes
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert codes.count(grpc.StatusCode.OK) <= allowance.burst // 100 + 1


def test_the_same_batch_sent_at_once_from_several_threads_records_each_decision_once(
    feedback: RunningFeedback,
) -> None:
    # Retries racing each other: each reads no earlier decision before any has committed, and
    # all but the first find the request keys taken when they write, then answer as a retry.
    mark(feedback, TRAVELLER, ROTTERDAM, UTRECHT)
    batch = [
        decision(feedback, TRAVELLER, f"10-00005{n}-26", request_key=f"race{n}", **FOLLOWED)
        for n in range(5)
    ]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: record(feedback, *batch), range(4)))
    names = [[r.decision.name for r in answer] for answer in answers]
    assert all(n == names[0] for n in names) and all(names[0])
    tables = feedback.tables()
    assert sorted(d["request_key"] for d in tables["decisions"]) == [
        f"{KPC_ROTTERDAM}:race{n}" for n in range(5)
    ]
    assert len(tables["deliveries"]) == 10
    assert len(decision_entries(feedback)) == 5
