"""`baken audit inzage`: the extract for a person's request of access, against a real registry
under the shipped covenants over mTLS. It names the houses that mark him and who looked him up
for which purpose, by organisation and role, never an official's id, another person or a BSN;
its own gathering is in the access log; only the privacy auditor can make it."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import structlog
from builders import Marking, Person, subject, valid_bsns
from feedback_harness import KPC_UTRECHT, RunningFeedback
from harness import USER, RunningRegistry, secure_channel

from baken import inzage, logs
from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.feedback.v1 import feedback_service_pb2 as fpb
from baken.keyring import KeyRing
from baken.type.v1 import purpose_pb2
from cli.main import main

pb = audit_service_pb2
KPC = "zsm-midden-nederland-kpc"
OVJ = "zsm-midden-nederland-ovj"
OVJ_USER = "ovj-0007"
OFFICER = "fg-01"
REQUEST = "AVG-2026-0042"
CASE = "PN-2026-000123"
UTRECHT = "vh-regio-utrecht-utrecht"
REASON = "De verdachte is inmiddels opgenomen in een kliniek; een dagvaarding past beter."
_bsns = valid_bsns(27_182_818)
A = Person(bsn=next(_bsns), surname="Jansen", birth_date=dt.date(1991, 5, 17))
B = Person(bsn=next(_bsns), surname="Bakker", birth_date=dt.date(1985, 1, 9))


@pytest.fixture(autouse=True)
def _logs_to_stderr() -> Iterator[None]:
    logs.configure(json=True)
    yield
    structlog.reset_defaults()


def looked_up(registry: RunningRegistry, ring: KeyRing) -> None:
    """A marked in Rotterdam and Utrecht, B in Rotterdam; the KPC and the OvJ look both up."""
    registry.sync(Marking(A, "pga-a").upsert(ring))
    registry.sync(Marking(A, "gcos-a", house=UTRECHT).upsert(ring))
    registry.sync(Marking(B, "pga-b").upsert(ring))
    for person in (A, B):
        registry.lookup(subject(ring, Person(bsn=person.bsn)))
        registry.lookup(
            subject(ring, Person(bsn=person.bsn)),
            party=OVJ,
            purpose=purpose_pb2.PURPOSE_AFDOENINGSBESLISSING,
            case_reference=CASE,
            on_behalf_of=OVJ_USER,
        )


def run(registry: RunningRegistry, ring: KeyRing, tmp_path: Path, *extra: str) -> int:
    key_file = tmp_path / "keys.json"
    ring.save(key_file)
    assert A.bsn is not None
    return main(
        ["audit", "inzage", "--bsn", A.bsn, "--key-file", str(key_file), "--request", REQUEST,
         "--out", str(tmp_path / "inzage.html"), "--registry", f"127.0.0.1:{registry.port}",
         "--pki-dir", str(registry.pki_dir), "--user", OFFICER, *extra]
    )  # fmt: skip


def test_the_extract_names_houses_purposes_and_roles_and_nothing_of_others(
    shipped_registry: RunningRegistry,
    ring: KeyRing,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    looked_up(shipped_registry, ring)

    code = run(shipped_registry, ring, tmp_path)

    out, err = capsys.readouterr()
    assert code == 0, err
    page = (tmp_path / "inzage.html").read_text(encoding="utf-8")
    assert page.startswith('<!DOCTYPE html>\n<html lang="nl">')
    assert "<script" not in page and "http" not in page
    assert "Veiligheidshuis Rotterdam-Rijnmond" in page
    assert "Veiligheidshuis Regio Utrecht" in page or "Utrecht" in page
    assert inzage.PURPOSES["intake-en-selectie"] in page
    assert inzage.PURPOSES["afdoeningsbeslissing"] in page
    assert inzage.PURPOSES["inzage"] in page
    assert "officier van justitie" in page and "OM ZSM Midden-Nederland" in page
    assert REQUEST in page
    # Never an official's or a desk's id, a case, nor a BSN or name (not in the logs either).
    for absent in (USER, OVJ_USER, OFFICER, CASE, KPC):
        assert absent not in page + out
    for absent in (A.bsn, B.bsn, "Jansen", "Bakker"):
        assert absent is not None and absent not in page + out + err
    pseudonym = subject(ring, Person(bsn=A.bsn)).pseudonyms[0].value.hex()
    assert pseudonym not in page
    # A's two look-ups, the houses' matchingsmelding and the officer's own look-up; not B's.
    assert page.count(inzage.PURPOSES["intake-en-selectie"]) == 1
    assert inzage.PURPOSES["baken:matchingsmelding"] in page
    assert "wrote" in out and "2 houses, 4 entries" in out


def test_the_officers_gathering_is_itself_in_the_access_log(
    shipped_registry: RunningRegistry, ring: KeyRing, tmp_path: Path
) -> None:
    looked_up(shipped_registry, ring)
    assert run(shipped_registry, ring, tmp_path) == 0

    channel = secure_channel(shipped_registry.pki_dir, shipped_registry.port, "privacy-auditor")
    entries = (
        audit_service_pb2_grpc.AuditServiceStub(channel)
        .ListAccessEntries(
            pb.ListAccessEntriesRequest(on_behalf_of="fg-02", party="privacy-auditor"), timeout=10
        )
        .entries
    )
    channel.close()

    assert [(e.operation.rsplit("/", 1)[1], e.purpose, e.on_behalf_of) for e in entries] == [
        ("Lookup", "inzage", OFFICER),
        ("ListAccessEntries", "audit", OFFICER),
    ]
    lookup, read = entries
    assert lookup.outcome == pb.ACCESS_OUTCOME_HIT
    assert lookup.case_reference == REQUEST
    assert list(lookup.covenants) == ["inzage@v1"]
    # House and region only: the covenant grants the privacy officer nothing more.
    assert {f for d in lookup.disclosed for f in d.fields} == {"house", "region"}
    assert read.outcome == pb.ACCESS_OUTCOME_AUDIT_READ
    assert list(lookup.data_subject) == list(read.data_subject)


@pytest.mark.parametrize(
    ("party", "reason"),
    [
        (KPC, "PURPOSE_NOT_GRANTED"),
        (OVJ, "PURPOSE_NOT_GRANTED"),
        # A party without identifiers to pseudonymise is stopped before the registry: the
        # pseudonymisation service refuses to make its pseudonyms.
        ("landelijke-stuurgroep", "ROLE_DOES_NOT_PSEUDONYMISE"),
    ],
)
def test_a_party_that_is_not_the_privacy_auditor_cannot_make_it(
    shipped_registry: RunningRegistry,
    ring: KeyRing,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    party: str,
    reason: str,
) -> None:
    looked_up(shipped_registry, ring)

    code = run(shipped_registry, ring, tmp_path, "--party", party)

    err = capsys.readouterr().err
    assert code == 1
    assert reason in err and "Traceback" not in err
    assert not (tmp_path / "inzage.html").exists()


def test_every_value_of_the_page_is_escaped() -> None:
    hostile = '<script>alert(1)</script>"&'
    when = dt.datetime(2026, 11, 28, 11, tzinfo=dt.UTC)
    page = inzage.html_page(
        inzage.Extract(
            request=hostile,
            made=when,
            houses=(inzage.MarkingHouse(hostile, hostile),),
            lookups=(inzage.LookUp(when, hostile, hostile, hostile, hostile),),
            decisions=(inzage.Decision(when, hostile, hostile, (hostile,)),),
        )
    )

    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;") == 9


def test_the_extract_prints_to_a_pdf_through_chromium(
    shipped_registry: RunningRegistry, ring: KeyRing, tmp_path: Path
) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("chromium is missing: install it with scripts/system-packages.sh (as root)")
    looked_up(shipped_registry, ring)

    assert run(shipped_registry, ring, tmp_path, "--pdf", str(tmp_path / "inzage.pdf")) == 0

    pdf = (tmp_path / "inzage.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5000


def test_the_extract_shows_the_decision_and_the_houses_told_but_never_the_deviation_reason(
    feedback: RunningFeedback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = feedback.ring
    feedback.registry.sync(
        Marking(A, "gcos-a", house=UTRECHT).upsert(ring), Marking(A, "pga-a").upsert(ring)
    )
    feedback.decide(
        Person(bsn=A.bsn),
        KPC_UTRECHT,
        house_advice=[
            fpb.HouseAdvice(
                house=f"houses/{UTRECHT}",
                advice_followed=fpb.ADVICE_FOLLOWED_NOT_FOLLOWED,
                deviation_reason=REASON,
            )
        ],
    )

    code = run(feedback.registry, ring, tmp_path, "--feedback", f"127.0.0.1:{feedback.server.port}")

    out, err = capsys.readouterr()
    assert code == 0, err
    page = (tmp_path / "inzage.html").read_text(encoding="utf-8")
    [row] = [r for r in page.split("<tr>") if inzage.DECISIONS["DECISION_CODE_DAGVAARDING"] in r]
    assert "Veiligheidshuis Regio Utrecht, locatie Utrecht" in row
    assert "Veiligheidshuis Rotterdam-Rijnmond" in row
    assert "OM ZSM Midden-Nederland" in row
    assert "kliniek" not in page and "10-123456-26" not in page
    assert "1 decisions and requests" in out
    # The officer's read of the feedback service's log is an entry of that log.
    channel = secure_channel(feedback.registry.pki_dir, feedback.server.port, "privacy-auditor")
    reads = (
        audit_service_pb2_grpc.AuditServiceStub(channel)
        .ListAccessEntries(
            pb.ListAccessEntriesRequest(on_behalf_of="fg-02", party="privacy-auditor"), timeout=10
        )
        .entries
    )
    channel.close()
    assert [(e.operation.rsplit("/", 1)[1], e.on_behalf_of) for e in reads] == [
        ("ListAccessEntries", OFFICER)
    ]


def test_the_feedback_services_log_is_read_by_the_privacy_auditor_alone(
    feedback: RunningFeedback,
) -> None:
    def stub(party: str) -> audit_service_pb2_grpc.AuditServiceStub:
        channel = secure_channel(feedback.registry.pki_dir, feedback.server.port, party)
        return audit_service_pb2_grpc.AuditServiceStub(channel)

    with pytest.raises(grpc.RpcError) as refused:
        stub(KPC).ListAccessEntries(pb.ListAccessEntriesRequest(on_behalf_of=USER), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as elsewhere:
        stub("privacy-auditor").ListAnomalies(
            pb.ListAnomaliesRequest(on_behalf_of=OFFICER), timeout=10
        )
    assert elsewhere.value.code() == grpc.StatusCode.UNIMPLEMENTED

    entries = (
        stub("privacy-auditor")
        .ListAccessEntries(pb.ListAccessEntriesRequest(on_behalf_of=OFFICER), timeout=10)
        .entries
    )

    assert [(e.party, e.outcome, e.denial_reason) for e in entries] == [
        (KPC, pb.ACCESS_OUTCOME_DENIED, "PURPOSE_NOT_GRANTED")
    ]
