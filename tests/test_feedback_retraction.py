"""Retraction after technisch sepot 01 (the person was wrongly registered as a suspect): what a
house already received of the case is withdrawn, in each source in its own way; what was still
queued is purged unsent; and the case stays closed. Against a real feedback service in front of
a real registry (shipped covenants), with the real adapters."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from builders import Person, problem, subject
from feedback_harness import KPC_ROTTERDAM, RunningFeedback
from test_adapter_receive import acked, mark, receiving, redeliver, rows, wait_for, xml_root

from adapters.amazone import deliver as amazone_deliver
from adapters.gcos import deliver as gcos_deliver
from adapters.pga import deliver as pga_deliver
from adapters.records import RETRACTION_REASON, Delivery
from adapters.sources import SOURCES
from baken.feedback.v1 import feedback_service_pb2 as pb
from services.feedback.signals import SIGNAL_ACTIVITY

ROTTERDAM = "vh-rotterdam-rijnmond"  # PGA
UTRECHT = "vh-regio-utrecht-utrecht"  # GCOS
TWENTE = "vh-twente"  # Amazone
HOUSES = {ROTTERDAM: "pga", UTRECHT: "gcos", TWENTE: "amazone"}
CASE = "10-123456-26"
PERSON = Person("111222333")


def look_up(feedback: RunningFeedback, case: str = CASE) -> int:
    """A ZSM lookup under `case`, and the signals it made taken over: how many."""
    feedback.registry.lookup(
        subject(feedback.ring, PERSON), party=KPC_ROTTERDAM, case_reference=case
    )
    return feedback.server.follower.follow_once()


def keys_by_house(feedback: RunningFeedback, kind: int) -> dict[str, str]:
    return {r["house_id"]: r["key"] for r in rows(feedback).values() if r["kind"] == kind}


def in_source(tmp_path: Path, house: str) -> list[str]:
    """The keys the house's source holds in effect, but its matchingsmeldingen ("mat-" keys):
    they are about no case, so a technisch sepot 01 leaves them."""
    source = SOURCES[HOUSES[house]]
    path = source.delivery_target(tmp_path / house / "target", house)
    keys = source.delivered_keys(path) if path.exists() else []
    return [k for k in keys if not k.startswith("mat-")]


def case_rows(feedback: RunningFeedback) -> dict[str, dict[str, Any]]:
    """The stored items but the matchingsmeldingen (about no case)."""
    return {k: r for k, r in rows(feedback).items() if r["kind"] != pb.DELIVERY_KIND_MATCH}


def receive_all(feedback: RunningFeedback, tmp_path: Path, *keys: str) -> None:
    """Every house's adapter, until `keys` are acknowledged."""
    with (
        receiving(feedback, "pga", [ROTTERDAM], tmp_path / ROTTERDAM),
        receiving(feedback, "gcos", [UTRECHT], tmp_path / UTRECHT),
        receiving(feedback, "amazone", [TWENTE], tmp_path / TWENTE),
    ):
        wait_for(acked(feedback, *keys), "every item acknowledged")
        redeliver(feedback)
        time.sleep(0.5)  # a redelivery, if any, would come now


def test_a_technisch_sepot_01_retracts_what_each_house_has_and_purges_what_was_queued(
    feedback: RunningFeedback, tmp_path: Path
) -> None:
    mark(feedback, PERSON, (ROTTERDAM, "r1"), (UTRECHT, "g1"), (TWENTE, "a1"))
    # The three houses' matchingsmeldingen (about no case, so never retracted) come first.
    assert feedback.server.follower.follow_once() == 6
    assert look_up(feedback) == 3
    signals = keys_by_house(feedback, pb.DELIVERY_KIND_SIGNAL)
    assert set(signals) == set(HOUSES)
    receive_all(feedback, tmp_path, *signals.values())
    for house, key in signals.items():
        assert in_source(tmp_path, house) == [key], house

    # A routing decision, still queued (no adapter runs): purged, never sent, not retracted.
    queued = feedback.decide(
        PERSON,
        case_reference=CASE,
        stage=pb.DECISION_STAGE_ROUTING,
        code=pb.DECISION_CODE_OVERDRACHT_BACKOFFICE,
        advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED,
    )
    assert len(queued.items) == 3
    purge = feedback.decide(PERSON, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01)
    assert (list(purge.items), purge.purged_items) == ([], 6)

    stored = case_rows(feedback)
    assert {r["kind"] for r in stored.values()} == {pb.DELIVERY_KIND_RETRACTION}
    retractions = {r["house_id"]: feedback.stored(r) for r in stored.values()}
    assert {h: d.retracts for h, d in retractions.items()} == signals
    for house, item in retractions.items():
        # Only what to withdraw: no case, record, place, decision or person.
        assert item == pb.Delivery(
            key=item.key,
            house=f"houses/{house}",
            kind=pb.DELIVERY_KIND_RETRACTION,
            occurred_time=item.occurred_time,
            retracts=signals[house],
        )
    tables = feedback.tables()
    kept = {name: tables[name] for name in ("deliveries", "decisions", "purged_cases")}
    assert CASE not in repr(kept)
    (purged,) = tables["purged_cases"]
    assert set(purged) == {"case_digest", "purged_time"}
    last = json.loads(tables["access_log"][-1]["body"])
    assert (last["outcome"], last["retractions"]) == ("purged", 3)
    assert CASE not in tables["access_log"][-1]["body"]

    receive_all(feedback, tmp_path, *(d.key for d in retractions.values()))
    decision_keys = {i.key for i in queued.items}
    for house, item in retractions.items():
        # The signal is gone from (or struck in) the source; the retraction is there once.
        assert in_source(tmp_path, house) == [item.key], house
        assert not decision_keys & set(in_source(tmp_path, house))

    gcos_dir = tmp_path / UTRECHT / "target" / UTRECHT
    # The signal's file, not yet imported, was removed (the matchingsmelding's stays).
    (gcos_file,) = [
        f
        for f in gcos_dir.glob("terugkoppeling-*.xml")
        if not f.name.startswith("terugkoppeling-mat-")
    ]
    root = xml_root(gcos_file)
    assert (root.findtext("soort"), root.findtext("ingetrokken-kenmerk")) == (
        "intrekking",
        signals[UTRECHT],
    )
    assert root.findtext("reden") == RETRACTION_REASON
    assert root.find("clientnummer") is None and root.find("zsm") is None

    pga_file = tmp_path / ROTTERDAM / "target" / f"{ROTTERDAM}.beslissingen.jsonl"
    signal_line, retraction_line = (
        line
        for line in map(json.loads, pga_file.read_text().splitlines())
        if line["soort"] != "matching"
    )
    assert signal_line["kenmerk"] == signals[ROTTERDAM]  # append-only: struck, not removed
    assert retraction_line == {
        "kenmerk": retractions[ROTTERDAM].key,
        "veiligheidshuis": "VHRR",
        "soort": "intrekking",
        "tijdstip": retraction_line["tijdstip"],
        "ingetrokken_kenmerk": signals[ROTTERDAM],
        "reden": RETRACTION_REASON,
    }

    amazone_file = tmp_path / TWENTE / "target" / f"{TWENTE}.mutaties.csv"
    text = amazone_file.read_bytes().decode("cp1252")
    assert signals[TWENTE] in text  # named in the intrekking row only
    assert "ZSM-instroom" not in text and "ZSM-intrekking" in text
    (row,) = [r for r in text.split("\r\n") if "ZSM-intrekking" in r]
    assert "a1" not in row.split(";")[0]  # no Registratienummer


def test_a_later_lookup_under_the_purged_case_signals_nobody_and_a_decision_is_refused(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, PERSON, (ROTTERDAM, "r1"), (UTRECHT, "g1"))
    assert feedback.server.follower.follow_once() == 2  # the two houses' matchingsmeldingen
    feedback.decide(PERSON, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01)
    assert look_up(feedback) == 2  # taken over from the registry, and dropped
    assert case_rows(feedback) == {}
    bodies = [json.loads(e["body"]) for e in feedback.tables()["access_log"]]
    # The last take-over of signals: the look-up's (the first took over the matchingsmeldingen).
    taken_over = [b for b in bodies if b["processing_activity"] == SIGNAL_ACTIVITY][-1]
    assert {n["reason"] for n in taken_over["not_routed"]} == {"CASE_PURGED"}
    assert taken_over["items"] == []

    with pytest.raises(grpc.RpcError) as caught:
        feedback.decide(PERSON, case_reference=CASE, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED)
    assert (problem(caught.value).code, problem(caught.value).reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CASE_PURGED",
    )
    assert feedback.tables()["decisions"] == []
    # A technisch sepot 01 again (a retry) is fine and purges nothing; other cases go on.
    assert feedback.decide(PERSON, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01).purged_items == 0
    assert look_up(feedback, "10-999999-26") == 2
    assert len(case_rows(feedback)) == 2


def test_an_item_sent_but_not_yet_acknowledged_is_retracted_too(
    feedback: RunningFeedback,
) -> None:
    """The adapter may have written it and crashed before acknowledging: it may be there."""
    mark(feedback, PERSON, (UTRECHT, "g1"))
    assert look_up(feedback) == 1
    (sent,) = feedback.receive(UTRECHT, count=1, party="adapter-gcos")
    feedback.decide(PERSON, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01)
    (retraction,) = feedback.receive(UTRECHT, count=1, party="adapter-gcos")
    assert (retraction.kind, retraction.retracts) == (pb.DELIVERY_KIND_RETRACTION, sent.key)
    # A late acknowledgement of the purged item finds nothing; the retraction is acknowledged.
    with pytest.raises(grpc.RpcError):
        feedback.ack(sent.key, "adapter-gcos")
    feedback.ack(retraction.key, "adapter-gcos")
    assert [r["state"] for r in rows(feedback).values()] == ["acked"]


# -- each source's write-back ------------------------------------------------------------------

WHEN = dt.datetime(2026, 11, 28, 11, tzinfo=dt.UTC)


def signal(house: str, key: str = "sig-1") -> Delivery:
    return Delivery(key, house, "signal", CASE, WHEN, source_record_id="r1", zsm_location="ZSM")


def retraction(house: str, retracts: str = "sig-1") -> Delivery:
    return Delivery("ret-1", house, "retraction", "", WHEN, retracts=retracts)


@pytest.mark.parametrize(
    ("house", "target"),
    [
        (UTRECHT, lambda p: p),
        (TWENTE, lambda p: p / "h.mutaties.csv"),
        (ROTTERDAM, lambda p: p / "h.beslissingen.jsonl"),
    ],
    ids=["gcos", "amazone", "pga"],
)
def test_each_source_applies_a_retraction_once_and_leaves_other_items(
    house: str, target: object, tmp_path: Path
) -> None:
    source = SOURCES[HOUSES[house]]
    path = target(tmp_path)  # type: ignore[operator]
    assert source.deliver(path, signal(house, "sig-0"))
    assert source.deliver(path, signal(house))
    assert source.deliver(path, retraction(house))
    assert not source.deliver(path, retraction(house))  # once per key
    assert sorted(source.delivered_keys(path)) == ["ret-1", "sig-0"]
    # A retraction of an item the source no longer has (imported, collected) still goes in.
    assert source.deliver(path, Delivery("ret-2", house, "retraction", "", WHEN, retracts="x"))
    assert sorted(source.delivered_keys(path)) == ["ret-1", "ret-2", "sig-0"]


@pytest.mark.parametrize(
    "bad",
    [
        Delivery("ret-1", UTRECHT, "retraction", "", WHEN),
        Delivery("ret-1", UTRECHT, "retraction", "", WHEN, retracts="ret-1"),
        Delivery("ret-1", UTRECHT, "retraction", "", WHEN, retracts="a\x1bb"),
    ],
)
def test_a_retraction_without_a_key_to_withdraw_is_refused_naming_the_field(
    bad: Delivery, tmp_path: Path
) -> None:
    for write, house in (
        (gcos_deliver.deliver, UTRECHT),
        (amazone_deliver.deliver, TWENTE),
        (pga_deliver.deliver, ROTTERDAM),
    ):
        with pytest.raises(ValueError, match=r"^retracts: "):
            write(tmp_path / "x" if house != UTRECHT else tmp_path, replace(bad, house_id=house))
