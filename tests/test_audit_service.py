"""AuditService and `baken audit`: only the privacy auditor reads the access log, every read is
itself logged, the data-subject report, the break-glass review queue, the anomaly rules and
`baken audit verify`; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from builders import TODAY, Marking, Person, problem, subject, valid_bsns
from google.protobuf import timestamp_pb2
from harness import USER, RunningRegistry, batch_request, secure_channel
from sqlalchemy import text

from baken import logs
from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.clock import AMSTERDAM
from baken.keyring import KeyRing
from baken.pseudonym import person_pseudonyms
from baken.registry.v1 import registry_service_pb2
from baken.type.v1 import pseudonym_pb2, purpose_pb2
from cli.main import main
from services.accesslog import signing
from services.accesslog.signing import public_path

pb = audit_service_pb2
rpb = registry_service_pb2
AUDITOR = "privacy-auditor"
KPC = "zsm-midden-nederland-kpc"
OVJ = "zsm-midden-nederland-ovj"
OFFICER = "fg-1"
OVJ_USER = "ovj-0007"
AUDIT_OPERATION = "/baken.audit.v1.AuditService/"
LOOKUP_OPERATION = "/baken.registry.v1.RegistryService/Lookup"
COVENANTS = ["test-everything@v1"]
AFDOENING = purpose_pb2.PURPOSE_AFDOENINGSBESLISSING
CASE_A = "PN-2026-000123"
CASE_B = "PN-2026-000456"
REASON = "spoedzitting: eerdere afspraken met het Veiligheidshuis nodig"
FINDING = "terecht: spoedzitting, officier had de informatie nodig"
OUTSIDE_SHIFT = "LOOKUP_WITHOUT_CASE_OUTSIDE_SHIFT"
VOLUME = "VOLUME_ABOVE_NORM"
SWEEP = "PSEUDONYM_SWEEP"
# Marker fields a marking without A&T information shows (the test covenant grants them all).
SHOWN = [
    "advice",
    "advice_freshness",
    "contact",
    "house",
    "mark_date",
    "plan_status",
    "region",
    "source_record",
    "target_group",
]

_bsns = valid_bsns(31_415_926)
A = Person(bsn=next(_bsns), surname="De Vries", birth_date=dt.date(1988, 3, 2))
B = Person(bsn=next(_bsns))
A_BY_BSN = Person(bsn=A.bsn)
A_BY_NAME = Person(surname=A.surname, birth_date=A.birth_date)


@pytest.fixture(autouse=True)
def _logs_to_stderr() -> Iterator[None]:
    """The server's log lines go to stderr, so stdout holds only a command's answer."""
    logs.configure(json=True)
    yield
    structlog.reset_defaults()


@pytest.fixture
def auditor(registry: RunningRegistry) -> Iterator[audit_service_pb2_grpc.AuditServiceStub]:
    """AuditService under the privacy auditor's certificate."""
    channel = secure_channel(registry.pki_dir, registry.port, AUDITOR)
    yield audit_service_pb2_grpc.AuditServiceStub(channel)
    channel.close()


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=AMSTERDAM)


def move_to(registry: RunningRegistry, when: dt.datetime) -> None:
    registry.clock.advance(when - registry.clock.now())


def ts(when: dt.datetime) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(when.timestamp()))


def list_entries(
    auditor: audit_service_pb2_grpc.AuditServiceStub, **fields: Any
) -> pb.ListAccessEntriesResponse:
    response: pb.ListAccessEntriesResponse = auditor.ListAccessEntries(
        pb.ListAccessEntriesRequest(on_behalf_of=OFFICER, **fields), timeout=10
    )
    return response


def anomalies(
    auditor: audit_service_pb2_grpc.AuditServiceStub, start: dt.datetime, end: dt.datetime
) -> list[tuple[str, str, list[int]]]:
    found = auditor.ListAnomalies(
        pb.ListAnomaliesRequest(on_behalf_of=OFFICER, start_time=ts(start), end_time=ts(end)),
        timeout=10,
    ).anomalies
    return sorted((a.rule, a.party, list(a.sequences)) for a in found)


def refusal(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str | None, list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    found = problem(caught.value)
    return found.code, found.reason, found.fields


def batch_lookups(
    registry: RunningRegistry, ring: KeyRing, count: int, party: str = KPC
) -> list[int]:
    """`count` intake look-ups of B in one BatchLookup message; their access-log seqs."""
    entries = [rpb.BatchLookupEntry(ref=str(i), subject=subject(ring, B)) for i in range(count)]
    responses = list(
        registry.stub_for(party).BatchLookup(iter([batch_request(entries)]), timeout=30)
    )
    return [r.lookup.access_log_entry for response in responses for r in response.results]


def break_glass(registry: RunningRegistry, ring: KeyRing) -> int:
    """An OvJ's break-glass look-up of A at the afdoeningsbeslissing; its access-log seq."""
    response = registry.lookup(
        subject(ring, A_BY_BSN),
        party=OVJ,
        purpose=AFDOENING,
        case_reference=CASE_A,
        on_behalf_of=OVJ_USER,
        break_glass_reason=REASON,
    )
    return response.access_log_entry


def cli(registry: RunningRegistry, action: str, *args: str) -> int:
    return main(
        ["audit", action, *args, "--registry", f"127.0.0.1:{registry.port}",
         "--pki-dir", str(registry.pki_dir), "--user", OFFICER]
    )  # fmt: skip


# --- who may read ---------------------------------------------------------------------------


def test_only_the_privacy_auditor_gets_in_and_a_refusal_is_logged(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub
) -> None:
    kpc = audit_service_pb2_grpc.AuditServiceStub(registry.channel)
    calls: dict[str, Callable[[], Any]] = {
        "ListAccessEntries": lambda: kpc.ListAccessEntries(
            pb.ListAccessEntriesRequest(on_behalf_of=USER), timeout=10
        ),
        "ListAnomalies": lambda: kpc.ListAnomalies(
            pb.ListAnomaliesRequest(on_behalf_of=USER), timeout=10
        ),
        "ListPendingReviews": lambda: kpc.ListPendingReviews(
            pb.ListPendingReviewsRequest(on_behalf_of=USER), timeout=10
        ),
        # Permission before existence: there is no entry 1 yet.
        "ReviewBreakGlass": lambda: kpc.ReviewBreakGlass(
            pb.ReviewBreakGlassRequest(on_behalf_of=USER, sequence=1, finding=FINDING), timeout=10
        ),
    }
    for call in calls.values():
        assert refusal(call) == (grpc.StatusCode.PERMISSION_DENIED, "PURPOSE_NOT_GRANTED", [])

    seen = list_entries(auditor).entries

    assert [
        (e.sequence, e.outcome, e.party, e.role, e.operation, e.purpose, e.on_behalf_of)
        for e in seen
    ] == [
        (n, pb.ACCESS_OUTCOME_DENIED, KPC, "kpc", AUDIT_OPERATION + name, "audit", USER)
        for n, name in enumerate(calls, 1)
    ]
    assert {e.denial_reason for e in seen} == {"PURPOSE_NOT_GRANTED"}
    assert not any(e.covenants for e in seen)


def test_every_read_of_the_log_is_itself_an_entry(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub
) -> None:
    first_read = registry.clock.now()
    assert list(list_entries(auditor, party=KPC).entries) == []
    registry.clock.advance(dt.timedelta(minutes=5))

    (read,) = list_entries(auditor).entries

    assert read.sequence == 1
    assert read.outcome == pb.ACCESS_OUTCOME_AUDIT_READ
    assert (read.party, read.organisation, read.role) == (
        AUDITOR,
        "Baken privacyfunctionaris",
        "privacy-auditor",
    )
    assert (read.on_behalf_of, read.purpose) == (OFFICER, "audit")
    assert read.audit_query == f"entries party={KPC}"
    assert read.operation == AUDIT_OPERATION + "ListAccessEntries"
    assert read.processing_activity == "baken:toezicht-toegangslog"
    assert list(read.covenants) == COVENANTS
    assert read.entry_time.ToDatetime(tzinfo=dt.UTC) == first_read

    auditor.ListPendingReviews(pb.ListPendingReviewsRequest(on_behalf_of=OFFICER), timeout=10)
    anomalies(auditor, at(TODAY, 0), at(TODAY, 12))
    later = list_entries(auditor, start_time=ts(registry.clock.now())).entries
    assert [(e.sequence, e.outcome, e.operation) for e in later] == [
        (2, pb.ACCESS_OUTCOME_AUDIT_READ, AUDIT_OPERATION + "ListAccessEntries"),
        (3, pb.ACCESS_OUTCOME_AUDIT_READ, AUDIT_OPERATION + "ListPendingReviews"),
        (4, pb.ACCESS_OUTCOME_AUDIT_READ, AUDIT_OPERATION + "ListAnomalies"),
    ]
    assert later[1].audit_query == "pending break-glass reviews"
    assert later[2].audit_query.startswith("anomalies from=")


# --- the data-subject report ----------------------------------------------------------------


def _two_persons_looked_up(registry: RunningRegistry, ring: KeyRing) -> dict[str, Any]:
    """A (marked) and B (not) looked up by the KPC and, with a case, by the OvJ, an hour apart."""
    registry.sync(Marking(A, "pga-1").upsert(ring))
    t0 = registry.clock.now()
    a_kpc = registry.lookup(subject(ring, A_BY_BSN))
    b_kpc = registry.lookup(subject(ring, B))
    registry.clock.advance(dt.timedelta(hours=1))
    a_ovj = registry.lookup(
        subject(ring, A_BY_BSN),
        party=OVJ,
        purpose=AFDOENING,
        case_reference=CASE_A,
        on_behalf_of=OVJ_USER,
    )
    b_ovj = registry.lookup(
        subject(ring, B),
        party=OVJ,
        purpose=AFDOENING,
        case_reference=CASE_B,
        on_behalf_of=OVJ_USER,
    )
    registry.clock.advance(dt.timedelta(hours=1))
    a_name = registry.lookup(subject(ring, A_BY_NAME))
    # Refused (no case reference at the afdoeningsbeslissing), and logged as about A.
    with pytest.raises(grpc.RpcError):
        registry.lookup(subject(ring, A_BY_BSN), purpose=AFDOENING)
    registry.clock.advance(dt.timedelta(hours=1))
    return {
        "t0": t0,
        "a": [a_kpc, a_ovj, a_name],
        "b": [b_kpc, b_ovj],
        "denied": a_name.access_log_entry + 1,
    }


def test_the_subject_report_shows_who_looked_a_person_up_why_and_what_they_saw(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub, ring: KeyRing
) -> None:
    seen = _two_persons_looked_up(registry, ring)
    a_kpc, a_ovj, a_name = seen["a"]
    a_values = {p.value.hex() for p in subject(ring, A).pseudonyms}
    b_values = {p.value.hex() for p in subject(ring, B).pseudonyms}

    report = list_entries(auditor, subject=subject(ring, A)).entries

    assert [e.sequence for e in report] == [
        a_kpc.access_log_entry,
        a_ovj.access_log_entry,
        a_name.access_log_entry,
        seen["denied"],
    ]
    assert [e.outcome for e in report] == [pb.ACCESS_OUTCOME_HIT] * 3 + [pb.ACCESS_OUTCOME_DENIED]
    for e in report:
        assert set(e.data_subject) <= a_values and set(e.data_subject)
        assert not set(e.data_subject) & b_values
        assert e.operation == LOOKUP_OPERATION
        assert e.processing_activity == "baken:zsm-raadpleging-markers"
    kpc, ovj, by_name, denied = report
    assert (kpc.party, kpc.organisation, kpc.role, kpc.on_behalf_of) == (
        KPC,
        "OM ZSM Midden-Nederland",
        "kpc",
        USER,
    )
    assert (kpc.purpose, kpc.case_reference) == ("intake-en-selectie", "")
    assert (ovj.party, ovj.organisation, ovj.role, ovj.on_behalf_of) == (
        OVJ,
        "OM ZSM Midden-Nederland",
        "zsm-officier",
        OVJ_USER,
    )
    assert (ovj.purpose, ovj.case_reference) == ("afdoeningsbeslissing", CASE_A)
    for e, response in ((kpc, a_kpc), (ovj, a_ovj), (by_name, a_name)):
        assert [(d.marker, list(d.fields)) for d in e.disclosed] == [
            (m.name, SHOWN) for m in response.markers
        ]
        assert list(e.covenants) == COVENANTS
    assert kpc.disclosed[0].marker  # the marker's resource name
    assert len(kpc.data_subject) == 1  # looked up by BSN only
    assert (denied.party, denied.purpose, denied.denial_reason) == (
        KPC,
        "afdoeningsbeslissing",
        "CASE_REFERENCE_REQUIRED",
    )
    assert not denied.disclosed


def test_the_subject_report_filters_by_time_and_party(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub, ring: KeyRing
) -> None:
    seen = _two_persons_looked_up(registry, ring)
    t0 = seen["t0"]
    a_kpc, a_ovj, a_name = (r.access_log_entry for r in seen["a"])
    b_kpc, b_ovj = (r.access_log_entry for r in seen["b"])
    about_a = subject(ring, A)

    def seqs(**fields: Any) -> list[int]:
        return [e.sequence for e in list_entries(auditor, **fields).entries]

    hour = dt.timedelta(hours=1)
    lookups_end = ts(t0 + 3 * hour)  # the auditor reads after it
    # start_time inclusive, end_time exclusive.
    assert seqs(subject=about_a, start_time=ts(t0 + hour), end_time=ts(t0 + 2 * hour)) == [a_ovj]
    assert seqs(subject=about_a, start_time=ts(t0 + hour), end_time=lookups_end) == [
        a_ovj,
        a_name,
        seen["denied"],
    ]
    assert seqs(subject=about_a, end_time=ts(t0 + hour)) == [a_kpc]
    assert seqs(subject=about_a, party=OVJ) == [a_ovj]
    assert seqs(party=OVJ) == [a_ovj, b_ovj]
    assert seqs(subject=subject(ring, B), end_time=lookups_end) == [b_kpc, b_ovj]
    assert seqs(subject=subject(ring, A_BY_NAME), end_time=lookups_end) == [a_name]
    assert seqs(party="zsm-midden-nederland-politie") == []
    # The auditor's reads about A are entries about A too: a later report shows who read it.
    # Four asked with A's two pseudonyms, one with A's name pseudonym only.
    reads = list_entries(auditor, subject=about_a, start_time=lookups_end).entries
    assert [(e.outcome, e.party, e.on_behalf_of) for e in reads] == [
        (pb.ACCESS_OUTCOME_AUDIT_READ, AUDITOR, OFFICER)
    ] * 5
    assert reads[0].audit_query == (
        f"entries subject (2 pseudonyms) from={(t0 + hour).isoformat()} "
        f"to={(t0 + 2 * hour).isoformat()}"
    )
    assert (
        reads[-1].audit_query == f"entries subject (1 pseudonyms) to={(t0 + 3 * hour).isoformat()}"
    )


def test_paging_walks_every_entry_once(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub, ring: KeyRing
) -> None:
    seen = _two_persons_looked_up(registry, ring)
    end = ts(seen["t0"] + dt.timedelta(hours=3))  # before the auditor's own reads
    everything = [e.sequence for e in list_entries(auditor, end_time=end).entries]
    assert everything == list(range(1, seen["denied"] + 1))

    walked: list[int] = []
    token, pages = "", 0
    while True:
        page = list_entries(auditor, end_time=end, page_size=2, page_token=token)
        pages += 1
        assert len(page.entries) <= 2
        walked += [e.sequence for e in page.entries]
        token = page.next_page_token
        if not token:
            break
        assert pages < 10

    assert walked == everything
    assert pages == len(everything) // 2 + 1
    assert refusal(lambda: list_entries(auditor, page_token="not-a-token")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["page_token"],
    )
    assert refusal(lambda: list_entries(auditor, page_size=-1)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["page_size"],
    )


# --- `baken audit` --------------------------------------------------------------------------


def test_baken_audit_subject_prints_the_report_without_the_bsn(
    registry: RunningRegistry, ring: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _two_persons_looked_up(registry, ring)
    key_file = tmp_path / "keys.json"
    ring.save(key_file)
    assert A.bsn is not None

    code = cli(registry, "subject", "--bsn", A.bsn, "--key-file", str(key_file))

    out, err = capsys.readouterr()
    assert code == 0, err
    shown = [line.split()[0] for line in out.splitlines() if line.startswith("#")]
    # A's look-ups by BSN (the one by name and birth date has no BSN pseudonym).
    a_kpc, a_ovj, _by_name = (r.access_log_entry for r in seen["a"])
    assert shown == [f"#{s}" for s in (a_kpc, a_ovj, seen["denied"])]
    assert f"{KPC} (OM ZSM Midden-Nederland, kpc) for {USER}" in out
    assert f"{OVJ} (OM ZSM Midden-Nederland, zsm-officier) for {OVJ_USER}" in out
    assert "purpose  intake-en-selectie" in out
    assert f"purpose  afdoeningsbeslissing, case {CASE_A}" in out
    assert "denied   CASE_REFERENCE_REQUIRED" in out
    assert "3 entries." in out
    assert CASE_B not in out
    assert A.bsn not in out + err
    pseudonym = person_pseudonyms(ring, bsn=A.bsn, today=TODAY)[0].value.hex()
    assert pseudonym not in out


def test_baken_audit_export_writes_one_json_line_per_entry_in_the_range(
    registry: RunningRegistry, ring: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = TODAY + dt.timedelta(days=1)
    before = batch_lookups(registry, ring, 1)
    registry.set_today(day)
    in_range = batch_lookups(registry, ring, 3) + batch_lookups(registry, ring, 2, party=OVJ)
    move_to(registry, at(day, 23, 59))
    in_range += batch_lookups(registry, ring, 1)
    move_to(registry, at(day + dt.timedelta(days=1), 0))
    after = batch_lookups(registry, ring, 1)
    registry.clock.advance(dt.timedelta(days=1))
    out_file = tmp_path / "export.jsonl"

    until = (day + dt.timedelta(days=1)).isoformat()
    code = cli(registry, "export", "--from", day.isoformat(), "--to", until, "--out", str(out_file))

    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(records) == len(in_range) == 6
    assert [int(r["sequence"]) for r in records] == in_range
    assert before[0] < in_range[0] and after[0] > in_range[-1]
    assert [r["party"] for r in records] == [KPC] * 3 + [OVJ] * 2 + [KPC]
    assert {r["purpose"] for r in records} == {"intake-en-selectie"}
    assert {r["outcome"] for r in records} == {"ACCESS_OUTCOME_NO_HIT"}
    assert all(r["data_subject"] for r in records)


def test_baken_audit_party_lists_only_that_party(
    registry: RunningRegistry, ring: KeyRing, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _two_persons_looked_up(registry, ring)
    kpc = [seen["a"][0], seen["b"][0], seen["a"][2]]

    code = cli(registry, "party", KPC)

    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("#")]
    assert [line.split()[0] for line in lines] == [
        f"#{s}" for s in [r.access_log_entry for r in kpc] + [seen["denied"]]
    ]
    assert all(f"  {KPC} (" in line for line in lines)
    assert OVJ not in out
    assert "4 entries." in out


def _verify_args(registry: RunningRegistry) -> list[str]:
    public_key = str(public_path(registry.settings.resolved_audit_signing_key()))
    if registry.database_url.startswith("sqlite"):
        return ["audit", "verify", "--data-dir", str(registry.data_dir), "--public-key", public_key]
    return ["audit", "verify", "--database-url", registry.database_url,
            "--public-key", public_key]  # fmt: skip


def test_baken_audit_verify_passes_an_intact_log_and_names_a_tampered_entry(
    registry: RunningRegistry, ring: KeyRing, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        registry.lookup(subject(ring, B))
    # The look-ups have been answered: nothing writes to the log while it is verified.

    assert main(_verify_args(registry)) == 0
    assert "OK: the access log verifies: 3 entries" in capsys.readouterr().out

    with registry.engine.begin() as connection:
        changed = connection.execute(
            text("UPDATE access_log SET body = replace(body, :user, :other) WHERE seq = 2"),
            {"user": USER, "other": "kpc-9999"},
        ).rowcount
    assert changed == 1

    assert main(_verify_args(registry)) == 1
    out, err = capsys.readouterr()
    assert "BROKEN at #2: altered" in err
    assert "OK" not in out


def test_baken_audit_verify_without_a_database_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signing.save(signing.generate("k1"), tmp_path / "keys" / "audit.key")
    public_key = str(tmp_path / "keys" / "audit.pub")
    args = ["audit", "verify", "--data-dir", str(tmp_path / "nothing"), "--public-key", public_key]
    assert main(args) == 1
    assert "no registry database" in capsys.readouterr().err


# --- break-glass review ---------------------------------------------------------------------


def test_pending_reviews_and_anomalies_come_page_by_page(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub, ring: KeyRing
) -> None:
    registry.sync(Marking(A, "pga-1").upsert(ring))
    glasses = [break_glass(registry, ring) for _ in range(5)]

    seen: list[int] = []
    request = pb.ListPendingReviewsRequest(on_behalf_of=OFFICER, page_size=2)
    pages = 0
    while True:
        page = auditor.ListPendingReviews(request, timeout=10)
        assert len(page.entries) <= 2
        seen += [e.sequence for e in page.entries]
        pages += 1
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert (seen, pages) == (glasses, 3)

    for bad in ("x", "-1"):
        with pytest.raises(grpc.RpcError) as caught:
            auditor.ListPendingReviews(
                pb.ListPendingReviewsRequest(on_behalf_of=OFFICER, page_token=bad), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        auditor.ListAnomalies(
            pb.ListAnomaliesRequest(on_behalf_of=OFFICER, page_token="999"), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    first = auditor.ListAnomalies(pb.ListAnomaliesRequest(on_behalf_of=OFFICER), timeout=10)
    assert first.next_page_token == ""  # one page holds them all


def test_a_break_glass_look_up_waits_for_review_until_the_auditor_reviews_it(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub, ring: KeyRing
) -> None:
    registry.sync(Marking(A, "pga-1").upsert(ring))
    plain = registry.lookup(subject(ring, A_BY_BSN)).access_log_entry
    glass = break_glass(registry, ring)
    other = break_glass(registry, ring)

    def pending() -> list[int]:
        request = pb.ListPendingReviewsRequest(on_behalf_of=OFFICER)
        return [e.sequence for e in auditor.ListPendingReviews(request, timeout=10).entries]

    def review(sequence: int, finding: str = FINDING) -> pb.AccessEntry:
        request = pb.ReviewBreakGlassRequest(
            on_behalf_of=OFFICER, sequence=sequence, finding=finding
        )
        entry: pb.AccessEntry = auditor.ReviewBreakGlass(request, timeout=10)
        return entry

    (waiting, _) = auditor.ListPendingReviews(
        pb.ListPendingReviewsRequest(on_behalf_of=OFFICER), timeout=10
    ).entries
    assert (waiting.sequence, waiting.outcome, waiting.party, waiting.role) == (
        glass,
        pb.ACCESS_OUTCOME_BREAK_GLASS,
        OVJ,
        "zsm-officier",
    )
    assert (waiting.purpose, waiting.case_reference, waiting.break_glass_reason) == (
        "afdoeningsbeslissing",
        CASE_A,
        REASON,
    )
    assert waiting.on_behalf_of == OVJ_USER
    assert pending() == [glass, other]

    done = review(glass)

    assert done.outcome == pb.ACCESS_OUTCOME_REVIEW
    assert (done.reviews_sequence, done.review_finding) == (glass, FINDING)
    assert (done.party, done.on_behalf_of, done.purpose) == (AUDITOR, OFFICER, "audit")
    assert done.operation == AUDIT_OPERATION + "ReviewBreakGlass"
    assert done.sequence > other
    assert pending() == [other]
    assert refusal(lambda: review(glass)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ALREADY_REVIEWED",
        [],
    )
    for not_break_glass in (plain, done.sequence, 100_000):
        assert refusal(functools.partial(review, not_break_glass)) == (
            grpc.StatusCode.NOT_FOUND,
            "ENTRY_NOT_FOUND",
            [],
        )
    # A finding is 10 to 2000 characters, not counting the spaces around it.
    for finding in ("", "too short", "   too short   ", "x" * 2001):
        assert refusal(functools.partial(review, other, finding)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            ["finding"],
        )
    assert refusal(lambda: review(0)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["sequence"],
    )
    assert pending() == [other]
    assert review(other, " just right ").review_finding == "just right"
    assert pending() == []


def test_baken_audit_review_lists_the_queue_and_closes_an_entry(
    registry: RunningRegistry, ring: KeyRing, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.sync(Marking(A, "pga-1").upsert(ring))
    glass = break_glass(registry, ring)

    assert cli(registry, "review") == 0
    out = capsys.readouterr().out
    assert f"#{glass} " in out and "BREAK-GLASS" in out
    assert f"break-glass reason  {REASON}" in out
    assert "1 entries." in out

    assert cli(registry, "review", "--close", str(glass), "--finding", FINDING) == 0
    out = capsys.readouterr().out
    assert f"Reviewed #{glass} in entry #" in out

    assert cli(registry, "review") == 0
    assert "No break-glass entries wait for review." in capsys.readouterr().out

    assert cli(registry, "review", "--close", str(glass), "--finding", FINDING) == 1
    assert "FAILED_PRECONDITION" in capsys.readouterr().err


# --- anomalies ------------------------------------------------------------------------------


def test_a_look_up_without_a_case_outside_the_desks_shift_is_flagged(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub, ring: KeyRing
) -> None:
    day = TODAY

    def look_up(hour: int, minute: int = 0, **fields: Any) -> int:
        move_to(registry, at(day, hour, minute))
        return registry.lookup(subject(ring, B), **fields).access_log_entry

    # The KPC desk works 07:00-23:00 (Amsterdam; UTC+1 in November).
    night = look_up(3)
    look_up(12)
    look_up(3, case_reference=CASE_B)
    early = look_up(6, 59)
    look_up(7)
    look_up(22, 59)
    late = look_up(23)
    ovj_night = look_up(4, party=OVJ, on_behalf_of=OVJ_USER)
    move_to(registry, at(day - dt.timedelta(days=1), 23, 30))
    registry.lookup(subject(ring, B))  # before the window

    found = anomalies(auditor, at(day, 0), at(day + dt.timedelta(days=1), 0))

    assert found == [
        (OUTSIDE_SHIFT, KPC, [night, early, late]),
        (OUTSIDE_SHIFT, OVJ, [ovj_night]),
    ]
    assert anomalies(auditor, at(day, 4, 1), at(day, 23)) == [(OUTSIDE_SHIFT, KPC, [early])]
    assert anomalies(auditor, at(day, 7), at(day, 23)) == []


def _days(
    registry: RunningRegistry, ring: KeyRing, first: dt.date, counts: dict[str, list[int]]
) -> None:
    """counts[party][i] intake look-ups at noon on day first + i, a day at a time."""
    for i in range(max(len(c) for c in counts.values())):
        registry.set_today(first + dt.timedelta(days=i))
        for party, per_day in counts.items():
            if i < len(per_day) and per_day[i]:
                batch_lookups(registry, ring, per_day[i], party=party)


def test_a_day_of_more_than_three_times_the_norm_and_at_least_50_look_ups_is_flagged(
    registry: RunningRegistry,
    auditor: audit_service_pb2_grpc.AuditServiceStub,
    ring: KeyRing,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = TODAY
    # Ten days of history: the KPC's norm is 20 a day, the OvJ's 10.
    _days(registry, ring, first, {KPC: [20] * 10, OVJ: [10] * 10})
    d = first + dt.timedelta(days=10)
    move_to(registry, at(d, 3))
    night = batch_lookups(registry, ring, 1)
    # Day d: KPC 61 (> 3 x 20), OvJ 49 (> 3 x 10, but under 50).
    # Day d+1: KPC 60 (not > 3 x 20), OvJ 50. Day d+2: KPC 200.
    _days(registry, ring, d, {KPC: [60, 60, 200], OVJ: [49, 50]})
    registry.clock.advance(dt.timedelta(days=1))

    def day(n: int) -> tuple[dt.datetime, dt.datetime]:
        return at(d + dt.timedelta(days=n), 0), at(d + dt.timedelta(days=n + 1), 0)

    assert anomalies(auditor, *day(0)) == [(OUTSIDE_SHIFT, KPC, night), (VOLUME, KPC, [])]
    assert anomalies(auditor, *day(1)) == [(VOLUME, OVJ, [])]
    assert anomalies(auditor, *day(2)) == [(VOLUME, KPC, [])]
    assert anomalies(auditor, at(first - dt.timedelta(days=1), 0), day(0)[0]) == []
    found = auditor.ListAnomalies(
        pb.ListAnomaliesRequest(
            on_behalf_of=OFFICER, start_time=ts(day(0)[0]), end_time=ts(day(2)[1])
        ),
        timeout=10,
    ).anomalies
    volume = sorted((a.party, a.description) for a in found if a.rule == VOLUME)
    assert volume == sorted(
        [
            (KPC, f"61 look-ups on {d}, norm 20 a day (median of 10 days before)"),
            (KPC, f"200 look-ups on {day(2)[0].date()}, norm 20 a day (median of 12 days before)"),
            (OVJ, f"50 look-ups on {day(1)[0].date()}, norm 10 a day (median of 11 days before)"),
        ]
    )

    code = cli(registry, "anomalies", "--from", d.isoformat(),
               "--to", (d + dt.timedelta(days=1)).isoformat())  # fmt: skip

    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"{OUTSIDE_SHIFT}  {KPC}: " in out
    assert f"(entries {night[0]})" in out
    assert f"{VOLUME}  {KPC}: 61 look-ups" in out
    assert "2 anomalies." in out


def test_the_norm_needs_seven_days_with_look_ups_in_the_28_before(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub, ring: KeyRing
) -> None:
    first = TODAY
    # The KPC looked up on day 0 (29 days before day 29) and days 23-28: six days in the window.
    # The OvJ on day 1 (exactly 28 days before) and days 23-28: seven.
    quiet = [0] * 21 + [1] * 6
    _days(registry, ring, first, {KPC: [1, 0, *quiet, 50], OVJ: [0, 1, *quiet, 50]})
    d = first + dt.timedelta(days=29)

    assert anomalies(auditor, at(d, 0), at(d + dt.timedelta(days=1), 0)) == [(VOLUME, OVJ, [])]


def look_up_each(
    registry: RunningRegistry, ring: KeyRing, persons: list[Person], party: str
) -> None:
    """One intake look-up per person, in one BatchLookup message."""
    entries = [
        rpb.BatchLookupEntry(ref=str(i), subject=subject(ring, p)) for i, p in enumerate(persons)
    ]
    list(registry.stub_for(party).BatchLookup(iter([batch_request(entries)]), timeout=60))


def test_a_sweep_through_many_unknown_persons_in_minutes_is_flagged(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub, ring: KeyRing
) -> None:
    bsns = valid_bsns(60_000_000)
    strangers = [Person(bsn=next(bsns)) for _ in range(205)]
    known = [Person(bsn=next(bsns)) for _ in range(30)]
    registry.sync(*(Marking(p, f"sweep-{p.bsn}").upsert(ring) for p in known))
    start = at(TODAY + dt.timedelta(days=1), 2)
    move_to(registry, start)
    # The KPC: 199 different persons, none known, in ten minutes: a re-check, not a sweep...
    look_up_each(registry, ring, strangers[:199], KPC)
    registry.clock.advance(dt.timedelta(minutes=9))
    assert SWEEP not in {a[0] for a in anomalies(auditor, start, registry.clock.now())}
    # ... a 200th within the ten minutes makes a sweep: flagged, once.
    look_up_each(registry, ring, strangers[199:], KPC)
    # The OvJ: 220 different persons, 30 of them known (14 %): not a sweep for who is known.
    look_up_each(registry, ring, known + strangers[:190], OVJ)
    # The OvJ again an hour later: 205 unknown, ten a minute: never 200 within ten minutes.
    registry.clock.advance(dt.timedelta(hours=1))
    for i in range(0, 205, 10):
        registry.clock.advance(dt.timedelta(minutes=1))
        look_up_each(registry, ring, strangers[i : i + 10], OVJ)
    found = auditor.ListAnomalies(
        pb.ListAnomaliesRequest(
            on_behalf_of=OFFICER, start_time=ts(start), end_time=ts(registry.clock.now())
        ),
        timeout=10,
    ).anomalies
    sweeps = [(a.party, a.description) for a in found if a.rule == SWEEP]
    assert sweeps == [
        (
            KPC,
            f"200 different pseudonyms probed in 10 minutes from {start:%Y-%m-%d %H:%M}, "
            "0 of them found a marker: a sweep for who is known?",
        )
    ]


def test_a_sweep_hidden_inside_hits_is_flagged(
    registry: RunningRegistry, auditor: audit_service_pb2_grpc.AuditServiceStub, ring: KeyRing
) -> None:
    # Measured before: 900 subjects, each one known pseudonym and 15 random ones, probed 13,500
    # pseudonyms unflagged: every subject was a hit. A subject may carry one pseudonym per kind
    # and key id, so here each holds the known person's and three random ones under other
    # kinds and key ids: 2,700 probes that the known person's one marker cannot hide.
    bsns = valid_bsns(61_000_000)
    known = Person(bsn=next(bsns))
    registry.sync(Marking(known, "hidden-sweep").upsert(ring))
    start = at(TODAY + dt.timedelta(days=1), 3)
    move_to(registry, start)
    (own,) = subject(ring, known).pseudonyms
    entries = []
    for i in range(900):
        stuffed = pseudonym_pb2.Subject(pseudonyms=[own])
        for kind, key_id in ((1, "k2"), (2, "k1"), (2, "k2")):
            stuffed.pseudonyms.add(kind=kind, key_id=key_id, value=os.urandom(32))
        entries.append(rpb.BatchLookupEntry(ref=str(i), subject=stuffed))
    stub = registry.stub_for(KPC)
    for part in range(0, 900, 300):
        answer = list(
            stub.BatchLookup(iter([batch_request(entries[part : part + 300])]), timeout=60)
        )
        assert all(r.lookup.markers for r in answer[0].results)
    found = anomalies(auditor, start, registry.clock.now() + dt.timedelta(minutes=1))
    assert (SWEEP, KPC) in {(a[0], a[1]) for a in found}
