"""Enrichment (verrijking, issue 16 item 5): ZSM asks the Safety House of a suspect's residence
municipality about a suspect no house marks, for the triage criteria the house's covenant
grants (domestic violence in the four regional covenants). The person travels sealed to the
house, as in an aanmelding; the house's adapter opens him and writes the request into its
source. Against a real feedback service in front of a real registry, the shipped covenants."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import grpc
from builders import Person, problem, subject
from feedback_harness import KPC_ROTTERDAM, KPC_UTRECHT, USER, RunningFeedback
from google.protobuf import duration_pb2
from test_adapter_receive import acked, pga_lines, receiving, rows, wait_for, xml_root
from test_feedback_routing import mark

from baken import sealed
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.registry.v1 import registry_service_pb2

UTRECHT = "vh-regio-utrecht-utrecht"  # GCOS; covers Nieuwegein
ROTTERDAM = "vh-rotterdam-rijnmond"  # PGA; covers Rotterdam
TWENTE = "vh-twente"  # Amazone; covers Enschede
BREDA = "vh-breda"
COVERS = {UTRECHT: "Nieuwegein", ROTTERDAM: "Rotterdam", TWENTE: "Enschede"}
SUSPECT = Person(bsn="123456782", surname="de Vries", birth_date=dt.date(1988, 2, 3))
CASE = "10-654321-26"
QUESTION = "Huiselijk geweld, twee kinderen in huis: is het gezin bij jullie in beeld?"
DOMESTIC_VIOLENCE = pb.TRIAGE_CRITERION_DOMESTIC_VIOLENCE


def sealed_person(keys: Path, house: str, municipality: str) -> pb.SealedEnvelope:
    return sealed.seal_person(
        sealed.load_public(keys, house),
        sealed.ReferredPerson(SUSPECT.bsn, SUSPECT.surname, SUSPECT.birth_date, municipality),
        case_reference=CASE,
    )


def enrichment(
    keys: Path,
    to: str = UTRECHT,
    *,
    municipality: str | None = None,
    criteria: tuple[int, ...] = (DOMESTIC_VIOLENCE,),
    **fields: Any,
) -> pb.RequestAdviceRequest:
    municipality = municipality or COVERS[to]
    request = pb.RequestAdviceRequest(
        case_reference=CASE,
        term=duration_pb2.Duration(seconds=48 * 3600),
        question=QUESTION,
        on_behalf_of=USER,
        subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
        residence_municipality=municipality,
        person=sealed_person(keys, to, municipality),
        enrichment_criteria=criteria,  # type: ignore[arg-type]
    )
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def ask(
    feedback: RunningFeedback, request: pb.RequestAdviceRequest, party: str = KPC_UTRECHT
) -> pb.AdviceRequest:
    request.subject.CopyFrom(subject(feedback.ring, SUSPECT))
    answer: pb.AdviceRequest = feedback.stub_for(party).RequestAdvice(request, timeout=10)
    return answer


def refused(
    feedback: RunningFeedback, request: pb.RequestAdviceRequest, party: str = KPC_UTRECHT
) -> Any:
    try:
        ask(feedback, request, party)
    except grpc.RpcError as error:
        return problem(error)
    raise AssertionError("not refused")


def nothing_stored(feedback: RunningFeedback) -> bool:
    tables = feedback.tables()
    return tables["advice_requests"] == [] and tables["deliveries"] == []


def test_an_enrichment_reaches_the_municipalitys_house_with_the_person_sealed_to_it(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    asked = ask(feedback, enrichment(house_keys_dir))
    assert asked.house == f"houses/{UTRECHT}"
    assert asked.state == pb.ADVICE_REQUEST_STATE_OPEN
    [item] = feedback.receive(UTRECHT, count=1, party="adapter-gcos")
    assert (item.key, item.kind) == (asked.delivery_key, pb.DELIVERY_KIND_ADVICE_REQUEST)
    assert item.source_record_id == ""  # the house has no record of him
    assert list(item.enrichment_criteria) == [DOMESTIC_VIOLENCE]
    assert item.advice_request == asked.name and item.question == QUESTION
    assert list(item.withheld) == []
    # The service holds ciphertext only; the house opens it with its key, for this case only.
    dumped = repr(feedback.tables()).encode()
    for clear in (b"123456782", b"Vries", b"1988-02-03"):
        assert clear not in dumped
    opened = sealed.open_person(
        sealed.load_private(house_keys_dir, UTRECHT), item.referral, case_reference=CASE
    )
    assert (opened.bsn, opened.surname, opened.birth_date, opened.residence_municipality) == (
        SUSPECT.bsn,
        SUSPECT.surname,
        SUSPECT.birth_date,
        "Nieuwegein",
    )
    # The desk may withdraw it like any request; the house hears which one, after it.
    feedback.ack(item.key, "adapter-gcos")
    feedback.stub_for(KPC_UTRECHT).CancelAdviceRequest(
        pb.CancelAdviceRequestRequest(name=asked.name, on_behalf_of=USER), timeout=5
    )
    [withdrawn] = feedback.receive(UTRECHT, count=1, party="adapter-gcos")
    assert withdrawn.kind == pb.DELIVERY_KIND_ADVICE_REQUEST_CANCELLED
    assert (withdrawn.advice_request, withdrawn.source_record_id) == (asked.name, "")


def test_an_enrichment_for_a_criterion_the_covenant_does_not_grant_is_refused(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    found = refused(
        feedback,
        enrichment(house_keys_dir, criteria=(DOMESTIC_VIOLENCE, pb.TRIAGE_CRITERION_YOUTH)),
    )
    assert (found.code, found.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ENRICHMENT_NOT_GRANTED",
    )
    assert found.metadata == {
        "house": f"houses/{UTRECHT}",
        "criterion": "TRIAGE_CRITERION_YOUTH",
    }
    assert nothing_stored(feedback)


def test_exactly_one_of_house_and_residence_municipality(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    both = refused(feedback, enrichment(house_keys_dir, house=f"houses/{UTRECHT}"))
    assert (both.code, both.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["residence_municipality"],
    )
    neither = enrichment(house_keys_dir)
    neither.ClearField("residence_municipality")
    found = refused(feedback, neither)
    assert (found.code, found.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["house"])
    # A request to a marking house carries no person and no criteria.
    mark(feedback, SUSPECT, UTRECHT)
    marked = enrichment(house_keys_dir, house=f"houses/{UTRECHT}")
    marked.ClearField("residence_municipality")
    found = refused(feedback, marked)
    assert set(found.fields) == {"person", "enrichment_criteria"}
    assert nothing_stored(feedback)


def test_an_unknown_municipality_or_a_missing_person_or_criterion_is_refused_naming_it(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    found = refused(feedback, enrichment(house_keys_dir, municipality="Atlantis"))
    assert (found.code, found.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["residence_municipality"],
    )
    bare = enrichment(house_keys_dir, criteria=())
    bare.ClearField("person")
    found = refused(feedback, bare)
    assert set(found.fields) == {"person", "enrichment_criteria"}
    # Sealed to another house than the municipality's: that house could not open it.
    wrong = enrichment(house_keys_dir)
    wrong.person.CopyFrom(sealed_person(house_keys_dir, BREDA, "Nieuwegein"))
    found = refused(feedback, wrong)
    assert found.fields == ["person.house"]
    assert nothing_stored(feedback)


def test_an_enrichment_about_a_person_another_house_marks_is_refused(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    mark(feedback, SUSPECT, ROTTERDAM)
    found = refused(feedback, enrichment(house_keys_dir))
    assert (found.code, found.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PERSON_KNOWN")
    assert found.metadata == {}
    assert nothing_stored(feedback)


def test_an_enrichment_of_a_house_that_marks_him_after_all_goes_to_its_record(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    mark(feedback, SUSPECT, UTRECHT)
    asked = ask(feedback, enrichment(house_keys_dir))
    [item] = feedback.receive(UTRECHT, count=1, party="adapter-gcos")
    assert item.key == asked.delivery_key
    assert item.source_record_id == f"{UTRECHT}-{SUSPECT.bsn}"
    # The sealed person is dropped unread: the house knows him by its own record.
    assert not item.HasField("referral") and list(item.enrichment_criteria) == []


def test_each_source_writes_the_enrichment_with_the_opened_person(
    feedback: RunningFeedback, tmp_path: Path, house_keys_dir: Path
) -> None:
    keys = {
        house: ask(feedback, enrichment(house_keys_dir, house), party).delivery_key
        for house, party in (
            (UTRECHT, KPC_UTRECHT),
            (ROTTERDAM, KPC_ROTTERDAM),
            (TWENTE, KPC_UTRECHT),
        )
    }
    with (
        receiving(feedback, "gcos", [UTRECHT], tmp_path / "gcos", house_keys=house_keys_dir),
        receiving(feedback, "pga", [ROTTERDAM], tmp_path / "pga", house_keys=house_keys_dir),
        receiving(feedback, "amazone", [TWENTE], tmp_path / "amazone", house_keys=house_keys_dir),
    ):
        wait_for(acked(feedback, *keys.values()), "the enrichment requests acknowledged")
    assert all(row["last_failure"] is None for row in rows(feedback).values())
    reason = "verrijkingsverzoek; triagecriteria: huiselijk geweld"

    root = xml_root(tmp_path / "gcos" / "target" / UTRECHT / f"terugkoppeling-{keys[UTRECHT]}.xml")
    assert root.findtext("soort") == "adviesaanvraag"
    assert root.findtext("clientnummer") is None
    assert (root.findtext("persoon/bsn"), root.findtext("persoon/achternaam")) == (
        SUSPECT.bsn,
        SUSPECT.surname,
    )
    assert (root.findtext("vraag"), root.findtext("reden")) == (QUESTION, reason)

    (line,) = pga_lines(tmp_path / "pga" / "target" / f"{ROTTERDAM}.beslissingen.jsonl")
    assert (line["soort"], line["registratie_id"]) == ("adviesaanvraag", None)
    assert (line["bsn"], line["achternaam"], line["geboortedatum"]) == (
        SUSPECT.bsn,
        SUSPECT.surname,
        "1988-02-03",
    )
    assert (line["vraag"], line["reden_aanmelding"]) == (QUESTION, reason)

    text = (tmp_path / "amazone" / "target" / f"{TWENTE}.mutaties.csv").read_bytes()
    reader = csv.DictReader(io.StringIO(text.decode("cp1252")), delimiter=";")
    [row] = [r for r in reader if r.get("Kenmerk Baken")]
    assert (row["Soort mutatie"], row["Registratienummer"]) == ("ZSM-adviesaanvraag", "")
    assert (row["BSN"], row["Achternaam"], row["Geboortedatum"]) == (
        SUSPECT.bsn,
        "Vries",
        "03-02-1988",
    )
    assert row["Reden aanmelding"] == reason
