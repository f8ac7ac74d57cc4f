"""Delivery guarantees of the outbox: at least once, in order per person, with backoff, dead
letters, and nothing lost while a house is away; and the signals of ZSM lookups."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from builders import Person, subject
from feedback_harness import KPC_ROTTERDAM, RunningFeedback, running_feedback
from harness import RunningRegistry
from sqlalchemy import Engine
from test_admission import code_of, parties_in
from test_feedback_routing import ROTTERDAM, TRAVELLER, UTRECHT, mark, refused

from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.type.v1 import pseudonym_pb2, purpose_pb2
from services.common.admission import allowances
from services.feedback.outbox import _due, deliveries

GCOS = "adapter-gcos"
FOLLOWED = {"advice_followed": pb.ADVICE_FOLLOWED_FOLLOWED}


def person(n: int) -> Person:
    return Person(bsn=None, surname=f"Persoon{n}", birth_date=dt.date(1980, 1, 1 + n))


def later(feedback: RunningFeedback, seconds: float = 5.0) -> None:
    """Move the service's clock past every backoff of the test settings (cap 1 s)."""
    feedback.registry.clock.advance(dt.timedelta(seconds=seconds))


def test_an_acknowledged_item_is_not_sent_again(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    feedback.decide(TRAVELLER, **FOLLOWED)
    [item] = feedback.receive(UTRECHT, count=1, party=GCOS)
    assert item.attempt == 1
    feedback.ack(item.key, GCOS)
    later(feedback)
    assert feedback.receive(UTRECHT, count=1, party=GCOS, timeout=1) == []
    [row] = feedback.tables()["deliveries"]
    assert row["state"] == "acked" and row["payload"] is None  # kept without content


def test_an_unacknowledged_item_comes_again_after_a_backoff(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    feedback.decide(TRAVELLER, **FOLLOWED)
    [first] = feedback.receive(UTRECHT, count=1, party=GCOS)
    # Not before its backoff (the clock stands still) ...
    assert feedback.receive(UTRECHT, count=1, party=GCOS, timeout=0.8) == []
    later(feedback)
    [again] = feedback.receive(UTRECHT, count=1, party=GCOS)
    assert (again.key, again.attempt) == (first.key, 2)
    # A failure reported by the adapter also brings it back, and is kept for the operator.
    feedback.ack(again.key, GCOS, failure="decision: GCOS has no code for it")
    later(feedback)
    [third] = feedback.receive(UTRECHT, count=1, party=GCOS)
    assert third.attempt == 3


def test_items_about_one_person_arrive_in_order(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    other = person(1)
    mark(feedback, other, UTRECHT)
    routing = feedback.decide(
        TRAVELLER,
        stage=pb.DECISION_STAGE_ROUTING,
        code=pb.DECISION_CODE_VOORGELEIDING,
        **FOLLOWED,
    )
    final = feedback.decide(TRAVELLER, **FOLLOWED)
    theirs = feedback.decide(other, case_reference="10-222222-26", **FOLLOWED)
    got = feedback.receive(UTRECHT, count=3, party=GCOS, timeout=1.5)
    # The final decision waits for the routing decision; the other person does not wait.
    assert [d.key for d in got] == [routing.items[0].key, theirs.items[0].key]
    feedback.ack(routing.items[0].key, GCOS)
    [next_one] = feedback.receive(UTRECHT, count=1, party=GCOS)
    assert next_one.key == final.items[0].key


def test_an_item_out_of_attempts_is_a_dead_letter_an_operator_can_requeue(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    first = feedback.decide(TRAVELLER, **FOLLOWED).items[0].key
    second = feedback.decide(TRAVELLER, case_reference="10-333333-26", **FOLLOWED).items[0].key
    for attempt in (1, 2, 3):  # max_attempts = 3 in the test settings
        [item] = feedback.receive(UTRECHT, count=1, party=GCOS)
        assert (item.key, item.attempt) == (first, attempt)
        feedback.ack(first, GCOS, failure="source_record_id: unknown in GCOS")
        later(feedback)
    # The dead letter no longer holds the person's next item back.
    [item] = feedback.receive(UTRECHT, count=1, party=GCOS)
    assert item.key == second
    operator = feedback.stub_for("operator")
    [letter] = operator.ListDeadLetters(pb.ListDeadLettersRequest(), timeout=5).dead_letters
    assert (letter.name, letter.house, letter.kind, letter.attempts) == (
        f"deadLetters/{first}",
        f"houses/{UTRECHT}",
        pb.DELIVERY_KIND_DECISION,
        3,
    )
    assert letter.last_failure == "source_record_id: unknown in GCOS"
    assert letter.last_attempt_time.seconds > 0
    listed = operator.ListDeadLetters(
        pb.ListDeadLettersRequest(house=f"houses/{ROTTERDAM}"), timeout=5
    )
    assert list(listed.dead_letters) == []
    code, _, _ = refused(
        lambda: feedback.stub_for(GCOS).ListDeadLetters(pb.ListDeadLettersRequest(), timeout=5)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    requeued = operator.RequeueDeadLetter(
        pb.RequeueDeadLetterRequest(name=f"deadLetters/{first}"), timeout=5
    )
    assert requeued.attempts == 0
    feedback.ack(second, GCOS)
    [again] = feedback.receive(UTRECHT, count=1, party=GCOS)
    assert (again.key, again.attempt) == (first, 1)
    code, reason, _ = refused(
        lambda: operator.RequeueDeadLetter(
            pb.RequeueDeadLetterRequest(name=f"deadLetters/{first}"), timeout=5
        )
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "DEAD_LETTER_NOT_FOUND")


def test_only_the_houses_own_adapter_takes_its_items(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    key = feedback.decide(TRAVELLER, **FOLLOWED).items[0].key
    for party in ("adapter-pga", KPC_ROTTERDAM, "operator"):
        code, _, _ = refused(lambda p=party: feedback.receive(UTRECHT, count=1, party=p))  # type: ignore[misc]
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, _, _ = refused(lambda p=party: feedback.ack(key, p))  # type: ignore[misc]
        assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _, fields = refused(lambda: feedback.receive("Utrecht!", count=1, party=GCOS))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["house"])
    code, _, _ = refused(lambda: feedback.receive("vh-nowhere", count=1, party=GCOS))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _, _ = refused(lambda: feedback.ack("no-such-key", GCOS))
    assert code == grpc.StatusCode.NOT_FOUND
    assert feedback.tables()["deliveries"][0]["attempts"] == 0


def test_a_house_away_for_a_week_gets_everything_in_order(feedback: RunningFeedback) -> None:
    persons = [person(n) for n in range(4)]
    for p in persons:
        mark(feedback, p, UTRECHT)
    keys = []
    for n, p in enumerate(persons):
        keys += [
            i.key for i in feedback.decide(p, case_reference=f"10-00000{n}-26", **FOLLOWED).items
        ]
        feedback.registry.clock.advance(dt.timedelta(days=1))
    keys += [
        i.key for i in feedback.decide(persons[0], case_reference="10-000009-26", **FOLLOWED).items
    ]
    feedback.registry.clock.advance(dt.timedelta(days=7))
    got = feedback.receive(UTRECHT, count=len(keys), party=GCOS)
    assert [d.key for d in got] == keys[:4]  # the fifth is persons[0]'s second: after the first
    assert all(d.attempt == 1 for d in got)
    feedback.ack(keys[0], GCOS)
    assert [d.key for d in feedback.receive(UTRECHT, count=1, party=GCOS)] == [keys[4]]


@pytest.fixture
def slow_poll(
    shipped_registry: RunningRegistry,
    ring: KeyRing,
    tmp_path: Path,
    engines: Callable[[str], Engine],
) -> Iterator[RunningFeedback]:
    """A feedback service that looks for new items only every 30 s unless woken."""
    with running_feedback(shipped_registry, ring, tmp_path, engines, poll_seconds=30.0) as running:
        yield running


def test_a_commit_wakes_the_waiting_stream(slow_poll: RunningFeedback) -> None:
    feedback = slow_poll
    mark(feedback, TRAVELLER, UTRECHT)
    arrived: list[float] = []

    def subscribe() -> None:
        feedback.receive(UTRECHT, count=1, party=GCOS, timeout=20)
        arrived.append(time.monotonic())

    thread = threading.Thread(target=subscribe)
    thread.start()
    time.sleep(0.5)  # the stream is waiting now
    decided = time.monotonic()
    feedback.decide(TRAVELLER, **FOLLOWED)
    thread.join(timeout=25)
    assert arrived and arrived[0] - decided < 5, "woken by the commit, not by the 30 s poll"


def test_a_zsm_lookup_hit_signals_every_marking_house_once_per_case(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, ROTTERDAM, UTRECHT)
    registry = feedback.registry
    registry.lookup(traveller(feedback), party=KPC_ROTTERDAM, case_reference="10-123456-26")
    registry.lookup(  # the same case again: one signal per house and case
        traveller(feedback), party=KPC_ROTTERDAM, case_reference="10-123456-26"
    )
    registry.lookup(traveller(feedback), party=KPC_ROTTERDAM)  # intake, no case yet
    follower = feedback.server.follower
    # 6 signals of the lookups, and 2 more: the matchingsmelding of Rotterdam and Utrecht both
    # marking the traveller by BSN (tests/test_matching.py), one to each house.
    assert follower.follow_once() == 8
    assert follower.follow_once() == 0
    items = [feedback.stored(r) for r in feedback.tables()["deliveries"]]
    matches = [i for i in items if i.kind == pb.DELIVERY_KIND_MATCH]
    assert sorted((m.house, m.match.house) for m in matches) == [
        (f"houses/{UTRECHT}", f"houses/{ROTTERDAM}"),
        (f"houses/{ROTTERDAM}", f"houses/{UTRECHT}"),
    ]
    signals = [i for i in items if i.kind != pb.DELIVERY_KIND_MATCH]
    assert sorted((s.house, s.case_reference) for s in signals) == [
        (f"houses/{UTRECHT}", ""),
        (f"houses/{UTRECHT}", "10-123456-26"),
        (f"houses/{ROTTERDAM}", ""),
        (f"houses/{ROTTERDAM}", "10-123456-26"),
    ]
    assert all(s.kind == pb.DELIVERY_KIND_SIGNAL for s in signals)
    assert {s.zsm_location for s in signals} == {"ZSM Rotterdam-Rijnmond"}
    assert {s.source_record_id for s in signals} == {
        f"{ROTTERDAM}-{TRAVELLER.bsn}",
        f"{UTRECHT}-{TRAVELLER.bsn}",
    }
    # Taken over signals are confirmed, and the registry forgets them.
    assert registry.tables()["signals"] == []
    # The feedback service's own routing lookups signal nothing.
    feedback.decide(TRAVELLER, **FOLLOWED)
    assert follower.follow_once() == 0
    # The match came first (at the second marking, before any lookup), then the signal.
    [first] = feedback.receive(ROTTERDAM, count=1, party="adapter-pga")
    assert first.kind == pb.DELIVERY_KIND_MATCH
    feedback.ack(first.key, party="adapter-pga")
    [got] = feedback.receive(ROTTERDAM, count=1, party="adapter-pga")
    assert got.kind == pb.DELIVERY_KIND_SIGNAL


def traveller(feedback: RunningFeedback) -> pseudonym_pb2.Subject:
    return subject(feedback.ring, TRAVELLER)


def test_the_follower_thread_takes_signals_over_by_itself(feedback: RunningFeedback) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    feedback.server.follower.start()
    feedback.registry.lookup(
        traveller(feedback),
        party=KPC_ROTTERDAM,
        purpose=purpose_pb2.PURPOSE_INTAKE_EN_SELECTIE,
        case_reference="10-7-26",
    )
    [signal] = feedback.receive(UTRECHT, count=1, party=GCOS, timeout=10)
    assert (signal.kind, signal.case_reference) == (pb.DELIVERY_KIND_SIGNAL, "10-7-26")


def test_an_item_never_acknowledged_is_a_dead_letter_after_its_attempts(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    key = feedback.decide(TRAVELLER, **FOLLOWED).items[0].key
    for attempt in (1, 2, 3):
        [item] = feedback.receive(UTRECHT, count=1, party=GCOS)
        assert (item.key, item.attempt) == (key, attempt)
        later(feedback)
    assert feedback.receive(UTRECHT, count=1, party=GCOS, timeout=1) == []
    [letter] = (
        feedback.stub_for("operator")
        .ListDeadLetters(pb.ListDeadLettersRequest(), timeout=5)
        .dead_letters
    )
    assert (letter.name, letter.attempts, letter.last_failure) == (
        f"deadLetters/{key}",
        3,
        "NOT_ACKNOWLEDGED",
    )


def test_dead_letters_are_listed_page_by_page(feedback: RunningFeedback) -> None:
    names = []
    for n in range(3):
        mark(feedback, person(n), UTRECHT)
        decided = feedback.decide(person(n), case_reference=f"10-44444{n}-26", **FOLLOWED)
        names.append(f"deadLetters/{decided.items[0].key}")
    for _ in (1, 2, 3):
        assert len(feedback.receive(UTRECHT, count=3, party=GCOS)) == 3
        later(feedback)
    assert feedback.receive(UTRECHT, count=1, party=GCOS, timeout=1) == []  # now dead letters
    operator = feedback.stub_for("operator")
    first = operator.ListDeadLetters(pb.ListDeadLettersRequest(page_size=2), timeout=5)
    assert [d.name for d in first.dead_letters] == names[:2] and first.next_page_token
    last = operator.ListDeadLetters(
        pb.ListDeadLettersRequest(page_size=2, page_token=first.next_page_token), timeout=5
    )
    assert [d.name for d in last.dead_letters] == names[2:] and not last.next_page_token
    for field, bad in (
        ("page_token", pb.ListDeadLettersRequest(page_token="x")),
        ("page_size", pb.ListDeadLettersRequest(page_size=-1)),
    ):
        code, _, fields = refused(lambda b=bad: operator.ListDeadLetters(b, timeout=5))  # type: ignore[misc]
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])


def test_no_more_items_in_flight_to_a_house_than_its_window(
    shipped_registry: RunningRegistry,
    ring: KeyRing,
    tmp_path: Path,
    engines: Callable[[str], Engine],
) -> None:
    with running_feedback(shipped_registry, ring, tmp_path, engines, delivery_window=2) as feedback:
        persons = [person(n) for n in range(4)]
        for p in persons:
            mark(feedback, p, UTRECHT)
        keys = [
            feedback.decide(p, case_reference=f"10-00000{n}-26", **FOLLOWED).items[0].key
            for n, p in enumerate(persons)
        ]
        first = feedback.receive(UTRECHT, count=4, party=GCOS, timeout=1)
        assert [d.key for d in first] == keys[:2]
        feedback.ack(keys[0], GCOS)
        [third] = feedback.receive(UTRECHT, count=1, party=GCOS)
        assert third.key == keys[2]


def test_a_persons_order_holds_across_a_queue_longer_than_a_take_reads_at_once(
    feedback: RunningFeedback,
) -> None:
    # A take walks the queue a page at a time (services/feedback/outbox.py): a person's item
    # pages behind his unacknowledged one still waits, and what is due after it still goes.
    now = feedback.server.outbox._clock.now()
    later, earlier = now + dt.timedelta(minutes=5), now - dt.timedelta(seconds=1)

    def row(seq: int, person: str, due: bool, attempts: int) -> dict[str, object]:
        return {
            "seq": seq,
            "key": f"k{seq}",
            "house_id": "vh-queue",
            "person_key": person,
            "kind": pb.DELIVERY_KIND_DECISION,
            "state": "pending",
            "attempts": attempts,
            "failures": 0,
            "created_time": now,
            "next_attempt_time": earlier if due else later,
            "payload": b"x",
        }

    rows = [row(1, "a", due=False, attempts=1)]  # in flight
    rows += [row(seq, f"b{seq}", due=False, attempts=1) for seq in range(2, 400)]  # backing off
    rows += [row(400, "a", due=True, attempts=0)]  # due, but behind a's first
    rows += [row(seq, f"c{seq}", due=True, attempts=0) for seq in range(401, 601)]
    with feedback.engine.begin() as connection:
        connection.execute(deliveries.insert(), rows)
        assert [r.seq for r in _due(connection, "vh-queue", now, 5)] == [401, 402, 403, 404, 405]
        assert [r.seq for r in _due(connection, "vh-queue", now, 1000)] == list(range(401, 601))


def test_items_acknowledged_together_as_each_alone(feedback: RunningFeedback) -> None:
    persons = [person(n) for n in range(3)]
    for p in persons:
        mark(feedback, p, UTRECHT, ROTTERDAM)
    for n, p in enumerate(persons):
        feedback.decide(p, case_reference=f"10-00010{n}-26", **FOLLOWED)
    got = feedback.receive(UTRECHT, count=3, party=GCOS)
    theirs = feedback.receive(ROTTERDAM, count=1, party="adapter-pga")
    stub = feedback.stub_for(GCOS)

    def acknowledge(*pairs: tuple[str, str]) -> pb.AcknowledgeDeliveriesResponse:
        request = pb.AcknowledgeDeliveriesRequest(
            acknowledgements=[pb.AcknowledgeDeliveryRequest(key=k, failure=f) for k, f in pairs]
        )
        response: pb.AcknowledgeDeliveriesResponse = stub.AcknowledgeDeliveries(request, timeout=5)
        return response

    # An item of another house among them refuses them all; a malformed one too, naming it.
    code, _, _ = refused(lambda: acknowledge((got[0].key, ""), (theirs[0].key, "")))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _, fields = refused(lambda: acknowledge((got[0].key, ""), (got[1].key, "bad\x00")))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["acknowledgements[1].failure"])
    assert {r["state"] for r in feedback.tables()["deliveries"]} == {"pending"}
    # Applied, refused by the source, and one the service holds no more (a purged case's).
    response = acknowledge(
        (got[0].key, ""), (got[1].key, "decision: GCOS has no code for it"), ("gone", "")
    )
    assert list(response.unknown_keys) == ["gone"]
    rows = {r["key"]: r for r in feedback.tables()["deliveries"]}
    assert (rows[got[0].key]["state"], rows[got[0].key]["payload"]) == ("acked", None)
    assert (rows[got[1].key]["state"], rows[got[1].key]["failures"]) == ("pending", 1)
    assert rows[got[1].key]["last_failure"] == "decision: GCOS has no code for it"
    assert rows[got[2].key]["state"] == "pending"
    # More than 100 at once is refused by the contract.
    code, _, _ = refused(lambda: acknowledge(*[(got[2].key, "")] * 101))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_acknowledgements_together_are_charged_each(feedback: RunningFeedback) -> None:
    # A flood in few calls: every acknowledgement of a call is charged as a call of its own.
    burst = allowances(parties_in(feedback.settings.covenants_dir), load_houses())[GCOS].burst
    request = pb.AcknowledgeDeliveriesRequest(
        acknowledgements=[pb.AcknowledgeDeliveryRequest(key=f"k{n}") for n in range(100)]
    )
    stub = feedback.stub_for(GCOS)
    codes = [
        code_of(lambda: stub.AcknowledgeDeliveries(request, timeout=5))
        for _ in range(burst // 100 + 2)
    ]
    assert grpc.StatusCode.OK in codes
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
