"""Receiving feedback against a real feedback service (shipped covenants) in front of a real
registry: items land in each house's own source once, however often they come; what a source
cannot take is acknowledged with a failure naming the field; referrals are opened with the
house key; advice requests are answered after the house answered them in its source."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from builders import TODAY, Marking, Person, subject
from feedback_harness import KPC_ROTTERDAM, KPC_UTRECHT, USER, RunningFeedback, running_feedback
from google.protobuf import duration_pb2
from harness import RunningRegistry
from sqlalchemy import Engine

from adapters.deliveries import to_delivery
from adapters.framework import Adapter
from adapters.gcos.export import GcosExport
from adapters.gcos.write import write_export
from adapters.pga import deliver as pga_deliver
from adapters.receive import Applier, DeliveryOutcome, Receiver
from adapters.records import Person as SourcePerson
from adapters.records import SourceRecord
from adapters.sources import SOURCES
from adapters.state import OpenAdviceRequest, State
from adapters.transport import answerer, sender
from baken import sealed
from baken.backoff import Backoff
from baken.client import connect
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from baken.registry.v1 import marker_pb2, registry_service_pb2
from cli.main import main

ROTTERDAM = "vh-rotterdam-rijnmond"  # PGA
UTRECHT = "vh-regio-utrecht-utrecht"  # GCOS, Midden-Nederland
BREDA = "vh-breda"  # GCOS, Zeeland-West-Brabant: its covenant withholds the triage
TWENTE = "vh-twente"  # Amazone
BSN = "111222333"
CASE = "10-123456-26"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def rows(feedback: RunningFeedback) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in feedback.tables()["deliveries"]}


def acked(feedback: RunningFeedback, *keys: str) -> Callable[[], bool]:
    def check() -> bool:
        stored = rows(feedback)
        return all(stored.get(k, {}).get("state") == "acked" for k in keys)

    return check


def xml_root(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # noqa: S314 (our own file, just written)


def pga_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def feedback_channel(feedback: RunningFeedback, party: str) -> grpc.Channel:
    return connect(
        f"127.0.0.1:{feedback.server.port}", TlsFiles.of(feedback.registry.pki_dir, party)
    )


@contextlib.contextmanager
def receiving(
    feedback: RunningFeedback,
    source: str,
    houses: list[str],
    tmp_path: Path,
    *,
    house_keys: Path | None = None,
    party: str | None = None,
) -> Iterator[Receiver]:
    with feedback_channel(feedback, party or SOURCES[source].party) as channel:
        receiver = Receiver(
            channel,
            source,
            houses,
            target=tmp_path / "target",
            state_path=tmp_path / "state" / f"{source}.state.db",
            house_keys=house_keys,
            clock=feedback.registry.clock,
            backoff=Backoff(0.05, 0.5),
        )
        receiver.start()
        try:
            yield receiver
        finally:
            receiver.stop()


def mark(feedback: RunningFeedback, person: Person, *markings: tuple[str, str]) -> None:
    changes = [Marking(person, rid, house=house).upsert(feedback.ring) for house, rid in markings]
    response = feedback.registry.sync(*changes)
    assert response.created == len(changes), response


def redeliver(feedback: RunningFeedback) -> None:
    """Let every backoff of the outbox (0.2 s base, 1 s cap in the fixture) pass."""
    feedback.registry.clock.advance(dt.timedelta(seconds=5))


def test_a_decision_lands_in_pga_of_rotterdam_and_gcos_of_utrecht_exactly_once(
    feedback: RunningFeedback, tmp_path: Path
) -> None:
    person = Person(BSN)
    mark(feedback, person, (ROTTERDAM, "r1"), (UTRECHT, "g1"))
    routed = feedback.decide(person, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED)
    keys = {i.house.removeprefix("houses/"): i.key for i in routed.items}
    assert set(keys) == {ROTTERDAM, UTRECHT}

    with (
        receiving(feedback, "pga", [ROTTERDAM], tmp_path / "pga") as pga,
        receiving(feedback, "gcos", [UTRECHT], tmp_path / "gcos") as gcos,
    ):
        wait_for(acked(feedback, *keys.values()), "both items acknowledged")
        redeliver(feedback)
        time.sleep(0.5)  # a redelivery, if any, would come now
        assert pga.counts()["applied"] == 1 and gcos.counts()["applied"] == 1
        assert pga.counts()["already applied"] == gcos.counts()["already applied"] == 0

    (line,) = pga_lines(tmp_path / "pga" / "target" / f"{ROTTERDAM}.beslissingen.jsonl")
    assert line == {
        "kenmerk": keys[ROTTERDAM],
        "registratie_id": "r1",
        "veiligheidshuis": "VHRR",
        "soort": "beslissing",
        "zsm_zaak": CASE,
        "tijdstip": "2026-11-28T11:00:00+00:00",
        "zsm_locatie": "ZSM Rotterdam-Rijnmond",
        "minderjarig": False,
        "beslissing": "dagvaarding",
        "toelichting": None,
        "afdoening": True,
        "advies_gevolgd": True,
        "reden_afwijking": None,
        "andere_veiligheidshuizen": 1,  # Utrecht heard it too; which, it does not say
        "reclasseringsadvies_gevraagd": False,
    }
    (xml_file,) = (tmp_path / "gcos" / "target" / UTRECHT).glob("*.xml")
    assert xml_file.name == f"terugkoppeling-{keys[UTRECHT]}.xml"
    root = xml_root(xml_file)
    assert root.get("kenmerk") == keys[UTRECHT]
    assert root.findtext("soort") == "beslissing"
    assert root.findtext("clientnummer") == "g1"
    assert root.findtext("andere-veiligheidshuizen") == "1"
    beslissing = root.find("beslissing")
    assert beslissing is not None
    assert (beslissing.get("code"), beslissing.get("soort")) == ("DAGVAARDING", "AFDOENING")
    # The Rotterdam desk could not see Utrecht's advice: Utrecht hears no line about it.
    assert root.find("advies/gevolgd") is None


def test_a_signal_of_an_intake_lookup_without_case_lands_and_lets_the_decision_follow(
    feedback: RunningFeedback, tmp_path: Path
) -> None:
    person = Person(BSN)
    mark(feedback, person, (ROTTERDAM, "r1"))
    feedback.registry.lookup(subject(feedback.ring, person), party=KPC_ROTTERDAM)  # no case
    assert feedback.server.follower.follow_once() == 1
    (item,) = feedback.decide(person, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED).items
    path = tmp_path / "target" / f"{ROTTERDAM}.beslissingen.jsonl"

    with receiving(feedback, "pga", [ROTTERDAM], tmp_path):
        wait_for(lambda: len(pga_lines(path)) == 2, "the signal, then the decision")

    signal_line, decision_line = pga_lines(path)
    assert (signal_line["soort"], signal_line["zsm_zaak"]) == ("signaal", None)
    assert (decision_line["soort"], decision_line["kenmerk"]) == ("beslissing", item.key)


def test_a_match_lands_in_each_houses_own_source_once_naming_the_others(
    feedback: RunningFeedback, tmp_path: Path
) -> None:
    """Rotterdam (PGA), Utrecht (GCOS) and Twente (Amazone) mark one person by BSN: each hears of
    the other two (matchingsmelding), once, with house, contact point and target group only."""
    person = Person(BSN)
    mark(feedback, person, (ROTTERDAM, "r1"), (UTRECHT, "g1"), (TWENTE, "AMZ-2024-000311"))
    feedback.server.follower.follow_once()
    matches = [
        feedback.stored(r)
        for r in feedback.tables()["deliveries"]
        if r["kind"] == pb.DELIVERY_KIND_MATCH
    ]
    assert len(matches) == 6
    houses = load_houses()

    with (
        receiving(feedback, "pga", [ROTTERDAM], tmp_path / "pga") as pga,
        receiving(feedback, "gcos", [UTRECHT], tmp_path / "gcos") as gcos,
        receiving(feedback, "amazone", [TWENTE], tmp_path / "amazone") as amazone,
    ):
        wait_for(acked(feedback, *(m.key for m in matches)), "every match acknowledged")
        redeliver(feedback)
        time.sleep(0.5)  # a redelivery, if any, would come now
        for receiver in (pga, gcos, amazone):
            assert receiver.counts()["applied"] == 2
            assert receiver.counts()["already applied"] == 0

    lines = pga_lines(tmp_path / "pga" / "target" / f"{ROTTERDAM}.beslissingen.jsonl")
    assert {line["soort"] for line in lines} == {"matching"}
    assert {line["registratie_id"] for line in lines} == {"r1"}
    assert sorted(line["ander_veiligheidshuis"] for line in lines) == [UTRECHT, TWENTE]
    for line in lines:
        other = houses[line["ander_veiligheidshuis"]]
        assert line["ander_veiligheidshuis_naam"] == other.display_name
        assert line["contact_telefoon"] == other.contact_phone
        assert line["contact_telefoon_piket"] == other.contact_after_hours_phone
        assert line["ander_doelgroep"] == "Veelpleger"
        assert (line["zsm_zaak"], line["zsm_locatie"], line["minderjarig"]) == (None, None, None)

    xml_files = sorted((tmp_path / "gcos" / "target" / UTRECHT).glob("*.xml"))
    roots = [xml_root(f) for f in xml_files]
    assert {r.findtext("soort") for r in roots} == {"matching"}
    assert {r.findtext("clientnummer") for r in roots} == {"g1"}
    assert sorted(r.find("matching/veiligheidshuis").get("id") for r in roots) == [  # type: ignore[union-attr]
        ROTTERDAM,
        TWENTE,
    ]
    assert all(r.find("zsm") is None for r in roots)

    csv_text = (tmp_path / "amazone" / "target" / f"{TWENTE}.mutaties.csv").read_bytes()
    assert csv_text.count(b";Matchingsmelding;") == 2
    assert houses[ROTTERDAM].display_name.encode("cp1252") in csv_text
    assert houses[UTRECHT].display_name.encode("cp1252") in csv_text
    assert BSN.encode() not in csv_text


@pytest.mark.parametrize("crash", ["after writing", "after remembering"])
def test_an_item_written_but_not_acknowledged_is_written_once(
    feedback: RunningFeedback, tmp_path: Path, crash: str
) -> None:
    """The receiver is killed after writing the item (before remembering it, or before the
    acknowledgement): the redelivered item is acknowledged without writing again."""
    person = Person(BSN)
    mark(feedback, person, (ROTTERDAM, "r1"))
    (item,) = feedback.decide(person, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED).items
    (message,) = feedback.receive(ROTTERDAM, count=1, party="adapter-pga")
    assert message.attempt == 1
    path = tmp_path / "target" / f"{ROTTERDAM}.beslissingen.jsonl"
    path.parent.mkdir(parents=True)
    if crash == "after writing":
        assert pga_deliver.deliver(path, to_delivery(message))
    else:
        applier = Applier(
            SOURCES["pga"],
            tmp_path / "target",
            tmp_path / "state" / "pga.state.db",
            house_keys=None,
        )
        assert applier.apply(message, ROTTERDAM).outcome is DeliveryOutcome.APPLIED
        applier.close()
    assert rows(feedback)[item.key]["state"] == "pending"

    redeliver(feedback)
    with receiving(feedback, "pga", [ROTTERDAM], tmp_path) as receiver:
        wait_for(acked(feedback, item.key), "the redelivered item acknowledged")
        assert receiver.counts()["already applied"] == 1
        assert receiver.counts()["applied"] == 0

    assert [line["kenmerk"] for line in pga_lines(path)] == [item.key]
    assert rows(feedback)[item.key]["attempts"] == 2


def test_an_item_the_source_cannot_take_is_acknowledged_with_a_failure_naming_the_field(
    feedback: RunningFeedback, tmp_path: Path
) -> None:
    """Amazone writes Windows-1252: a deviation reason with '≥' cannot be written. The
    failure names the column, never the text; after max_attempts it is a dead letter."""
    person = Person(BSN)
    mark(feedback, person, (TWENTE, "AMZ-2024-000311"))
    reason = "Eis ≥ 6 maanden; ISD-plaats niet beschikbaar, eerst voorlopige hechtenis."
    # The Oost-Nederland desk, which sees Twente's advice and so says why it deviated.
    (item,) = feedback.decide(
        person,
        "zsm-oost-nederland-kpc",
        advice_followed=pb.ADVICE_FOLLOWED_NOT_FOLLOWED,
        deviation_reason=reason,
    ).items

    with receiving(feedback, "amazone", [TWENTE], tmp_path) as receiver:
        wait_for(lambda: rows(feedback)[item.key]["last_failure"] is not None, "the failure")
        for _ in range(3):  # max_attempts 3 in the fixture
            redeliver(feedback)
            time.sleep(0.3)
        wait_for(lambda: rows(feedback)[item.key]["state"] == "dead", "a dead letter")
        assert receiver.counts()["refused"] == 3

    failure = rows(feedback)[item.key]["last_failure"]
    assert failure == "Reden afwijking: cannot be written in Windows-1252"
    assert not (tmp_path / "target" / f"{TWENTE}.mutaties.csv").exists()
    dead = feedback.stub_for("operator").ListDeadLetters(pb.ListDeadLettersRequest(), timeout=5)
    assert [(d.name, d.last_failure) for d in dead.dead_letters] == [
        (f"deadLetters/{item.key}", failure)
    ]


def _refer(feedback: RunningFeedback, keys: Path, house: str, municipality: str) -> str:
    person = sealed.ReferredPerson(BSN, "van der Berg", dt.date(1990, 4, 1), municipality)
    response = feedback.decide(
        Person(BSN),
        code=pb.DECISION_CODE_STRAFBESCHIKKING,
        complex_problems_suspected=True,
        residence_municipality=municipality,
        triage=pb.TriageCheck(checked=True, matched=[pb.TRIAGE_CRITERION_DOMESTIC_VIOLENCE]),
        referral=sealed.seal_person(sealed.load_public(keys, house), person, case_reference=CASE),
    )
    (item,) = response.items
    assert (item.house, item.kind) == (f"houses/{house}", pb.DELIVERY_KIND_REFERRAL)
    return item.key


def test_a_referral_is_opened_with_the_house_key_and_written_without_logging_the_person(
    json_logs: Callable[[], str],
    feedback: RunningFeedback,
    tmp_path: Path,
    house_keys_dir: Path,
) -> None:
    key = _refer(feedback, house_keys_dir, ROTTERDAM, "Rotterdam")

    with receiving(feedback, "pga", [ROTTERDAM], tmp_path, house_keys=house_keys_dir):
        wait_for(acked(feedback, key), "the referral acknowledged")

    (line,) = pga_lines(tmp_path / "target" / f"{ROTTERDAM}.beslissingen.jsonl")
    assert line["soort"] == "aanmelding"
    assert line["registratie_id"] is None
    assert (line["bsn"], line["achternaam"], line["geboortedatum"]) == (
        BSN,
        "van der Berg",
        "1990-04-01",
    )
    assert line["reden_aanmelding"] == (
        "complexe problematiek vermoed; triagecriteria: huiselijk geweld"
    )
    logs = json_logs()
    assert key in logs
    for secret in (BSN, "Berg", "1990-04-01"):
        assert secret not in logs


def test_a_referral_to_a_house_whose_covenant_withholds_the_triage_says_only_the_suspicion(
    feedback: RunningFeedback, tmp_path: Path, house_keys_dir: Path
) -> None:
    key = _refer(feedback, house_keys_dir, BREDA, "Breda")

    with receiving(feedback, "gcos", [BREDA], tmp_path, house_keys=house_keys_dir):
        wait_for(acked(feedback, key), "the referral acknowledged")

    root = xml_root(tmp_path / "target" / BREDA / f"terugkoppeling-{key}.xml")
    assert root.findtext("soort") == "aanmelding"
    assert root.findtext("persoon/bsn") == BSN
    assert root.findtext("reden") == "complexe problematiek vermoed"


def test_a_referral_without_the_house_key_is_refused_naming_the_field(
    feedback: RunningFeedback, tmp_path: Path, house_keys_dir: Path
) -> None:
    key = _refer(feedback, house_keys_dir, ROTTERDAM, "Rotterdam")

    with receiving(feedback, "pga", [ROTTERDAM], tmp_path, house_keys=tmp_path / "no-keys"):
        wait_for(lambda: rows(feedback)[key]["last_failure"] is not None, "the failure")

    assert rows(feedback)[key]["last_failure"] == (
        "referral: this adapter has no key of the house to open it"
    )
    assert rows(feedback)[key]["state"] == "pending"  # comes again, until a dead letter
    assert not (tmp_path / "target" / f"{ROTTERDAM}.beslissingen.jsonl").exists()


def test_a_write_that_fails_is_not_acknowledged_and_comes_again(
    feedback: RunningFeedback, tmp_path: Path
) -> None:
    person = Person(BSN)
    mark(feedback, person, (ROTTERDAM, "r1"))
    (item,) = feedback.decide(person, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED).items
    target = tmp_path / "target" / f"{ROTTERDAM}.beslissingen.jsonl"
    target.mkdir(parents=True)  # a directory where the file should be: OSError

    with receiving(feedback, "pga", [ROTTERDAM], tmp_path) as receiver:
        wait_for(lambda: receiver.counts()["not applied now"] >= 1, "a failed write")
        assert rows(feedback)[item.key]["state"] == "pending"
        assert rows(feedback)[item.key]["last_failure"] is None
        target.rmdir()
        redeliver(feedback)
        wait_for(acked(feedback, item.key), "the item applied on its next delivery")

    assert [line["kenmerk"] for line in pga_lines(target)] == [item.key]


def _export(path: Path, person: Person, advice_date: dt.date, advice: str) -> None:
    record = SourceRecord(
        record_id="100234",
        house_id=UTRECHT,
        person=SourcePerson(person.bsn, "Jansen", dt.date(1994, 3, 12)),
        target_group="veelpleger",
        plan_status="active",
        mark_date=dt.date(2026, 9, 1),
        advice=advice,
        advice_date=advice_date,
    )
    write_export(path, UTRECHT, [record])


@contextlib.contextmanager
def gcos_adapter(
    feedback: RunningFeedback, state_path: Path, answer_to: str | None
) -> Iterator[Adapter]:
    pki = feedback.registry.pki_dir
    tls = TlsFiles.of(pki, "adapter-gcos")
    with contextlib.ExitStack() as stack:
        registry = stack.enter_context(connect(f"127.0.0.1:{feedback.registry.port}", tls))
        answer = None
        if answer_to is not None:
            answer = answerer(stack.enter_context(connect(answer_to, tls)), timeout_s=3)
        state = State(state_path)
        stack.callback(state.close)
        yield Adapter(
            GcosExport(),
            ring=feedback.ring,
            state=state,
            houses=load_houses(),
            clock=feedback.registry.clock,
            send=sender(registry),
            answer=answer,
        )


def _open_requests(feedback: RunningFeedback) -> list[pb.AdviceRequest]:
    response = feedback.stub_for(KPC_UTRECHT).ListAdviceRequests(
        pb.ListAdviceRequestsRequest(house=f"houses/{UTRECHT}"), timeout=5
    )
    return list(response.advice_requests)


def test_an_advice_request_is_written_and_answered_once_the_house_advised_in_its_source(
    feedback: RunningFeedback, tmp_path: Path
) -> None:
    person = Person(BSN)
    export = tmp_path / "gcos-utrecht.xml"
    state_path = tmp_path / "state" / "gcos.state.db"
    feedback_address = f"127.0.0.1:{feedback.server.port}"
    _export(export, person, dt.date(2026, 9, 1), "dagvaarden met het doel ISD")
    with gcos_adapter(feedback, state_path, feedback_address) as adapter:
        assert adapter.sync(export).new == 1

    asked = feedback.stub_for(KPC_UTRECHT).RequestAdvice(
        pb.RequestAdviceRequest(
            case_reference=CASE,
            subject=subject(feedback.ring, person),
            house=f"houses/{UTRECHT}",
            term=duration_pb2.Duration(seconds=48 * 3600),
            question="Loopt er een plan van aanpak met meldplicht?",
            on_behalf_of=USER,
            subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
        ),
        timeout=10,
    )
    key = asked.delivery_key

    # The adapter writes the request into the house's GCOS folder and remembers it open.
    with receiving(feedback, "gcos", [UTRECHT], tmp_path):
        wait_for(acked(feedback, key), "the advice request acknowledged")
    root = xml_root(tmp_path / "target" / UTRECHT / f"terugkoppeling-{key}.xml")
    assert root.findtext("soort") == "adviesaanvraag"
    assert root.findtext("clientnummer") == "100234"
    assert root.findtext("vraag") == "Loopt er een plan van aanpak met meldplicht?"
    termijn = root.find("termijn")
    assert termijn is not None and termijn.get("tot") == "2026-11-30T11:00:00+00:00"
    state = State(state_path)
    # Remembered by its name, which the delivery carried: what it is answered by.
    opened = OpenAdviceRequest(asked.name, UTRECHT, "100234", TODAY)
    assert state.open_advice_requests() == [opened]
    state.close()
    assert [r.name for r in _open_requests(feedback)] == [asked.name]

    # Not answered while the advice in the source predates the request.
    with gcos_adapter(feedback, state_path, feedback_address) as adapter:
        report = adapter.sync(export)
    assert (report.unchanged, report.advice_answered, report.advice_waiting) == (1, 0, 0)
    assert [r.name for r in _open_requests(feedback)] == [asked.name]

    # The house answers in GCOS; the sync runs while the feedback service is unreachable:
    # the sync itself succeeds, the answer waits.
    _export(export, person, TODAY, "voorgeleiden; meldplicht loopt, procesregisseur bellen")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{s.getsockname()[1]}"
    with gcos_adapter(feedback, state_path, nowhere) as adapter:
        report = adapter.sync(export)
    assert (report.changed, report.advice_answered, report.advice_waiting) == (1, 0, 1)
    assert "advice answers waiting 1" in report.summary()
    assert [r.name for r in _open_requests(feedback)] == [asked.name]

    # The next run reaches it: answered, and forgotten by the adapter.
    with gcos_adapter(feedback, state_path, feedback_address) as adapter:
        report = adapter.sync(export)
    assert (report.unchanged, report.advice_answered, report.advice_waiting) == (1, 1, 0)
    assert report.summary().endswith("advice answered 1")
    assert _open_requests(feedback) == []
    state = State(state_path)
    assert state.open_advice_requests() == []
    state.close()
    # ZSM sees the answer at its next lookup, and may decide the case.
    answer = feedback.registry.lookup(subject(feedback.ring, person), party=KPC_UTRECHT)
    [marker] = answer.markers
    assert marker.advice.text == "voorgeleiden; meldplicht loopt, procesregisseur bellen"
    assert marker.advice.freshness == marker_pb2.ADVICE_FRESHNESS_CURRENT
    feedback.decide(person, party=KPC_UTRECHT, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED)


def test_a_withdrawn_advice_request_is_written_and_never_answered(
    feedback: RunningFeedback, tmp_path: Path
) -> None:
    person = Person(BSN)
    export = tmp_path / "gcos-utrecht.xml"
    state_path = tmp_path / "state" / "gcos.state.db"
    feedback_address = f"127.0.0.1:{feedback.server.port}"
    _export(export, person, dt.date(2026, 9, 1), "dagvaarden met het doel ISD")
    with gcos_adapter(feedback, state_path, feedback_address) as adapter:
        adapter.sync(export)
    stub = feedback.stub_for(KPC_UTRECHT)
    asked = stub.RequestAdvice(
        pb.RequestAdviceRequest(
            case_reference=CASE,
            subject=subject(feedback.ring, person),
            house=f"houses/{UTRECHT}",
            term=duration_pb2.Duration(seconds=48 * 3600),
            question="Loopt er een plan van aanpak met meldplicht?",
            on_behalf_of=USER,
            subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
        ),
        timeout=10,
    )
    stub.CancelAdviceRequest(
        pb.CancelAdviceRequestRequest(name=asked.name, on_behalf_of=USER), timeout=5
    )
    withdrawn = f"cnc-{asked.name.removeprefix('adviceRequests/')}"
    with receiving(feedback, "gcos", [UTRECHT], tmp_path):
        wait_for(acked(feedback, withdrawn), "the withdrawal acknowledged")
    root = xml_root(tmp_path / "target" / UTRECHT / f"terugkoppeling-{withdrawn}.xml")
    assert root.findtext("soort") == "adviesaanvraag-ingetrokken"
    assert root.findtext("clientnummer") == "100234"
    assert root.findtext("adviesaanvraag") == asked.name
    # Both in the house's folder, and the adapter no longer holds the request open: the
    # house's next advice answers nothing.
    assert (tmp_path / "target" / UTRECHT / f"terugkoppeling-{asked.delivery_key}.xml").exists()
    state = State(state_path)
    assert state.open_advice_requests() == []
    state.close()
    _export(export, person, TODAY, "voorgeleiden; meldplicht loopt")
    with gcos_adapter(feedback, state_path, feedback_address) as adapter:
        assert adapter.sync(export).advice_answered == 0


@pytest.mark.parametrize(
    "why",
    ["its record left the source", "it is older than 30 days", "the service does not know it"],
)
def test_an_open_request_is_forgotten_without_an_answer_when(
    feedback: RunningFeedback, tmp_path: Path, why: str
) -> None:
    person = Person(BSN)
    export = tmp_path / "gcos-utrecht.xml"
    state_path = tmp_path / "state" / "gcos.state.db"
    _export(export, person, dt.date(2026, 9, 1), "dagvaarden met het doel ISD")
    with gcos_adapter(feedback, state_path, None) as adapter:
        adapter.sync(export)
    requested = {
        "its record left the source": TODAY,
        "it is older than 30 days": TODAY - dt.timedelta(days=31),
        # Answerable by the source (advice of 1 September), but purged at the service.
        "the service does not know it": dt.date(2026, 9, 1),
    }[why]
    state = State(state_path)
    state.received("adv-x", UTRECHT, feedback.registry.clock.now(),
                   OpenAdviceRequest("adviceRequests/x", UTRECHT, "100234", requested))  # fmt: skip
    state.close()
    left = why == "its record left the source"
    if left:
        write_export(export, UTRECHT, [])

    with gcos_adapter(feedback, state_path, f"127.0.0.1:{feedback.server.port}") as adapter:
        # The house's only marker leaving is all of them: the operator confirms it.
        report = adapter.sync(export, confirm_deletions=1 if left else None)

    assert (report.advice_answered, report.advice_waiting) == (0, 0)
    state = State(state_path)
    assert state.open_advice_requests() == []
    state.close()


def test_a_state_file_that_kept_open_requests_by_delivery_key_still_works(tmp_path: Path) -> None:
    path = tmp_path / "gcos.state.db"
    before = sqlite3.connect(path)
    before.execute(
        "CREATE TABLE advice_requests (delivery_key TEXT PRIMARY KEY, house_id TEXT NOT NULL,"
        " record_id TEXT NOT NULL, requested TEXT NOT NULL)"
    )
    before.execute(
        "INSERT INTO advice_requests VALUES ('adv-1', ?, '100234', ?)", (UTRECHT, str(TODAY))
    )
    before.commit()
    before.close()

    state = State(path)
    # Kept by delivery key, such a request cannot be answered by name: not read.
    assert state.open_advice_requests() == []
    opened = OpenAdviceRequest("adviceRequests/2", UTRECHT, "100234", TODAY)
    state.received("adv-2", UTRECHT, dt.datetime.now(dt.UTC), opened)
    assert state.open_advice_requests() == [opened]
    state.forget_advice_requests([opened.name])
    assert state.open_advice_requests() == []
    state.close()


@pytest.mark.parametrize(
    ("party", "house", "code"),
    [
        ("adapter-pga", UTRECHT, "PERMISSION_DENIED"),  # a GCOS house
        ("adapter-pga", "vh-nergens", "NOT_FOUND"),
        ("adapter-pga", "nergens/x", "INVALID_ARGUMENT"),
    ],
)
def test_a_refused_stream_stops_its_house_and_says_why(
    feedback: RunningFeedback, tmp_path: Path, party: str, house: str, code: str
) -> None:
    with receiving(feedback, "pga", [house, ROTTERDAM], tmp_path, party=party) as receiver:
        wait_for(lambda: house in receiver.stopped, "the house stopped", timeout=10)
        assert receiver.stopped[house].startswith(code)
        assert ROTTERDAM not in receiver.stopped
        assert not receiver.wait(timeout=0.2)  # Rotterdam's stream still runs


def test_the_receiver_reconnects_until_the_service_is_there(
    shipped_registry: RunningRegistry,
    ring: KeyRing,
    tmp_path: Path,
    engines: Callable[[str], Engine],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tls = TlsFiles.of(shipped_registry.pki_dir, "adapter-pga")
    with connect(f"127.0.0.1:{port}", tls) as channel:
        receiver = Receiver(
            channel,
            "pga",
            [ROTTERDAM],
            target=tmp_path / "target",
            state_path=tmp_path / "state" / "pga.state.db",
            clock=shipped_registry.clock,
            backoff=Backoff(0.05, 0.3),
        )
        receiver.start()
        try:
            time.sleep(1.0)  # refused connections, retried
            with running_feedback(
                shipped_registry, ring, tmp_path, engines, address=f"127.0.0.1:{port}"
            ) as feedback:
                person = Person(BSN)
                mark(feedback, person, (ROTTERDAM, "r1"))
                (item,) = feedback.decide(person, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED).items
                wait_for(acked(feedback, item.key), "the item after reconnecting", timeout=30)
        finally:
            started = time.monotonic()
            receiver.stop()
            assert receiver.wait(timeout=0)
            assert time.monotonic() - started < 5
    assert receiver.stopped == {}


def test_stop_ends_idle_streams_promptly(feedback: RunningFeedback, tmp_path: Path) -> None:
    with receiving(feedback, "gcos", [UTRECHT, BREDA], tmp_path) as receiver:
        time.sleep(0.5)
        started = time.monotonic()
        receiver.stop()
        assert receiver.wait(timeout=0)
        assert time.monotonic() - started < 2
    assert receiver.stopped == {}


# -- the command ----------------------------------------------------------------------------


def test_receive_command_runs_until_sigterm(
    feedback: RunningFeedback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    person = Person(BSN)
    mark(feedback, person, (ROTTERDAM, "r1"))
    (item,) = feedback.decide(person, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED).items
    target = tmp_path / "target"

    def stop_when_acked() -> None:
        wait_for(acked(feedback, item.key), "the item acknowledged", timeout=20)
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=stop_when_acked, daemon=True)
    watcher.start()
    code = main(
        ["adapter", "pga", "receive", "--feedback", f"127.0.0.1:{feedback.server.port}",
         "--target", str(target), "--house", ROTTERDAM, "--pki-dir",
         str(feedback.registry.pki_dir), "--state-dir", str(tmp_path / "state"),
         "--house-keys", str(tmp_path / "keys")]
    )  # fmt: skip
    watcher.join(timeout=5)
    out = capsys.readouterr().out

    assert code == 0
    assert "receiving feedback for 1 house(s)" in out
    assert "applied 1" in out
    assert [line["kenmerk"] for line in pga_lines(target / f"{ROTTERDAM}.beslissingen.jsonl")] == [
        item.key
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "receive needs --feedback HOST:PORT"),
        (["--feedback", "127.0.0.1:1"], "receive needs --target DIR"),
        (
            ["--feedback", "127.0.0.1:1", "--target", "t", "--house", "vh-nergens"],
            "--house vh-nergens: not a known Safety House",
        ),
        (
            ["--feedback", "127.0.0.1:1", "--target", "t", "--house", UTRECHT],
            f"--house {UTRECHT}: keeps its markers in gcos, not pga",
        ),
    ],
)
def test_receive_command_errors_are_one_line(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("BAKEN_FEEDBACK_TARGET", raising=False)
    monkeypatch.delenv("BAKEN_ADAPTER_DELIVERY_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    code = main(["adapter", "pga", "receive", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"baken adapter: {message}\n" or err.startswith(f"baken adapter: {message}")
    assert "Traceback" not in err


def test_sync_without_source_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["adapter", "pga", "sync"]) == 2
    assert capsys.readouterr().err == "baken adapter: sync needs --source (the export)\n"
