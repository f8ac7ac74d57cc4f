"""Signals for the feedback service: a ZSM desk's lookup that finds markers tells each marking
house that its person flowed in (in the lookup's own transaction, next to its access-log entry),
and PullSignals hands them to the feedback service alone, oldest first, forgetting what it
confirmed; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import structlog
from builders import NOW, Marking, Person, problem, subject, valid_bsns
from harness import RunningRegistry, batch_request, secure_channel
from sqlalchemy import insert, text

from baken import logs
from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2 as pb
from baken.type.v1 import purpose_pb2
from cli.main import main
from services.accesslog import store as access_log
from services.accesslog.signing import public_path
from services.registry.models import SignalRow

_bsns = valid_bsns(27_182_818)
PERSON = Person(bsn=next(_bsns))
OTHER = Person(bsn=next(_bsns))
STRANGER = Person(bsn=next(_bsns))
KPC = "zsm-midden-nederland-kpc"
OVJ = "zsm-midden-nederland-ovj"
FEEDBACK = "feedback"
UTRECHT = "vh-regio-utrecht-utrecht"
ROTTERDAM = "vh-rotterdam-rijnmond"
BREDA = "vh-breda"
CASE = "ZSM-MN-2026-000777"
DECISION = purpose_pb2.PURPOSE_AFDOENINGSBESLISSING
TERUGKOPPELING = purpose_pb2.PURPOSE_TERUGKOPPELING
PULL = "/baken.registry.v1.RegistryService/PullSignals"


@pytest.fixture(autouse=True)
def _logs_to_stderr() -> Iterator[None]:
    """The server's log lines go to stderr, so stdout holds only a command's answer."""
    logs.configure(json=True)
    yield
    structlog.reset_defaults()


@pytest.fixture
def marked(registry: RunningRegistry, ring: KeyRing) -> RunningRegistry:
    """PERSON marked in Utrecht (Midden-Nederland) and in Rotterdam; OTHER in Breda."""
    response = registry.sync(
        Marking(PERSON, "gcos-1", house=UTRECHT).upsert(ring),
        Marking(PERSON, "pga-1", house=ROTTERDAM).upsert(ring),
        Marking(OTHER, "gcos-2", house=BREDA).upsert(ring),
    )
    assert response.created == 3
    # The two houses marking PERSON were told of each other (tests/test_matching.py); those
    # signals are taken over already, so what follows sees only the lookups' signals.
    with registry.engine.begin() as connection:
        connection.execute(text("DELETE FROM signals WHERE kind = 2"))
    return registry


def stored(registry: RunningRegistry) -> list[dict[str, Any]]:
    return sorted(registry.tables()["signals"], key=lambda row: row["seq"])


def log_entries(registry: RunningRegistry) -> list[access_log.StoredEntry]:
    with registry.engine.connect() as connection:
        return access_log.search(connection, limit=10_000)


def pull(registry: RunningRegistry, after: int = 0, size: int = 0) -> list[pb.Signal]:
    response = registry.stub_for(FEEDBACK).PullSignals(
        pb.PullSignalsRequest(after_sequence=after, page_size=size), timeout=10
    )
    return list(response.signals)


def refused(call: Any) -> tuple[grpc.StatusCode, str | None, list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    found = problem(caught.value)
    return found.code, found.reason, found.fields


def fail_inserts_into(registry: RunningRegistry, table: str) -> None:
    """A trigger that makes every insert into `table` fail, as an unavailable table would."""
    with registry.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'unavailable'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} EXECUTE FUNCTION refuse()")
            )
        else:
            connection.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'unavailable'); END"
                )
            )


# --- Which lookups signal ------------------------------------------------------------------------


def test_an_intake_lookup_that_hits_two_houses_signals_both(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    response = marked.lookup(subject(ring, PERSON), party=KPC)

    assert response.outcome == pb.LOOKUP_OUTCOME_HIT
    rows = stored(marked)
    assert [(r["house_id"], r["source_record_id"]) for r in rows] == [
        (UTRECHT, "gcos-1"),
        (ROTTERDAM, "pga-1"),
    ]
    for row in rows:
        assert row["case_reference"] is None  # at intake, before a case exists
        assert row["zsm_location"] == "ZSM Midden-Nederland"
        assert row["access_log_seq"] == response.access_log_entry
        assert access_log.utc(row["lookup_time"]) == NOW
    assert rows[0]["seq"] < rows[1]["seq"]


def test_a_no_hit_signals_nothing(marked: RunningRegistry, ring: KeyRing) -> None:
    response = marked.lookup(subject(ring, STRANGER), party=KPC)

    assert response.outcome == pb.LOOKUP_OUTCOME_NO_HIT
    assert stored(marked) == []


def test_a_decision_lookup_signals_with_its_case_reference(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    response = marked.lookup(subject(ring, OTHER), party=OVJ, purpose=DECISION, case_reference=CASE)

    [row] = stored(marked)
    assert (row["house_id"], row["source_record_id"], row["case_reference"]) == (
        BREDA,
        "gcos-2",
        CASE,
    )
    assert (row["zsm_location"], row["access_log_seq"]) == (
        "ZSM Midden-Nederland",
        response.access_log_entry,
    )


@pytest.mark.parametrize(
    ("party", "fields"),
    [
        # Terugkoppeling is not a person flowing in: the decision is already fed back.
        (KPC, {"purpose": TERUGKOPPELING, "case_reference": CASE}),
        (KPC, {"purpose": purpose_pb2.PURPOSE_ADVIES_OP_AANVRAAG, "case_reference": CASE}),
        # The feedback service itself is no ZSM desk.
        (FEEDBACK, {"purpose": TERUGKOPPELING, "case_reference": CASE}),
        # Nor is a house's process director.
        ("vh-midden-nederland-procesregie", {"purpose": TERUGKOPPELING, "case_reference": CASE}),
    ],
)
def test_only_a_zsm_desk_at_intake_or_decision_signals(
    marked: RunningRegistry, ring: KeyRing, party: str, fields: dict[str, Any]
) -> None:
    response = marked.lookup(subject(ring, PERSON), party=party, **fields)

    assert response.outcome != pb.LOOKUP_OUTCOME_NO_HIT  # found, whether shown or withheld
    assert stored(marked) == []


def test_a_deleted_marker_is_not_signalled(marked: RunningRegistry, ring: KeyRing) -> None:
    marked.sync(Marking(PERSON, "pga-1", house=ROTTERDAM).tombstone(version=2))

    marked.lookup(subject(ring, PERSON), party=KPC)

    assert [r["house_id"] for r in stored(marked)] == [UTRECHT]


def test_a_batch_signals_each_entry_that_found_markers_with_its_own_entry(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    request = batch_request(
        [
            pb.BatchLookupEntry(ref="a", subject=subject(ring, PERSON), case_reference=CASE),
            pb.BatchLookupEntry(ref="b", subject=subject(ring, STRANGER), case_reference=CASE),
            pb.BatchLookupEntry(ref="c", subject=subject(ring, OTHER)),  # no case: denied
            pb.BatchLookupEntry(ref="d", subject=subject(ring, OTHER), case_reference="ZSM-2"),
        ],
        purpose=DECISION,
    )
    [response] = marked.stub_for(OVJ).BatchLookup(iter([request]), timeout=10)

    a, b, c, d = response.results
    assert b.lookup.outcome == pb.LOOKUP_OUTCOME_NO_HIT
    assert c.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert [(r["house_id"], r["case_reference"], r["access_log_seq"]) for r in stored(marked)] == [
        (UTRECHT, CASE, a.lookup.access_log_entry),
        (ROTTERDAM, CASE, a.lookup.access_log_entry),
        (BREDA, "ZSM-2", d.lookup.access_log_entry),
    ]


def test_a_lookup_whose_log_entry_fails_signals_nothing(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    fail_inserts_into(marked, "access_log")
    before = log_entries(marked)  # the match the marking made

    code, _, _ = refused(lambda: marked.lookup(subject(ring, PERSON), party=KPC))

    assert code == grpc.StatusCode.INTERNAL
    assert stored(marked) == []
    assert log_entries(marked) == before


def test_a_lookup_whose_signal_fails_is_not_answered_nor_logged(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    fail_inserts_into(marked, "signals")
    before = log_entries(marked)  # the match the marking made

    code, _, _ = refused(lambda: marked.lookup(subject(ring, PERSON), party=KPC))

    assert code == grpc.StatusCode.INTERNAL
    assert log_entries(marked) == before
    # A lookup that finds nothing writes no signal, and is answered.
    assert marked.lookup(subject(ring, STRANGER), party=KPC).outcome == pb.LOOKUP_OUTCOME_NO_HIT


# --- PullSignals -------------------------------------------------------------------------------


def test_pull_returns_the_signals_in_order_as_the_lookups_made_them(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    first = marked.lookup(subject(ring, PERSON), party=KPC)
    second = marked.lookup(subject(ring, OTHER), party=OVJ, purpose=DECISION, case_reference=CASE)

    signals = pull(marked)

    assert [
        (s.house, s.source_record_id, s.case_reference, s.access_log_entry) for s in signals
    ] == [
        (f"houses/{UTRECHT}", "gcos-1", "", first.access_log_entry),
        (f"houses/{ROTTERDAM}", "pga-1", "", first.access_log_entry),
        (f"houses/{BREDA}", "gcos-2", CASE, second.access_log_entry),
    ]
    assert [s.sequence for s in signals] == sorted({s.sequence for s in signals})
    assert {s.zsm_location for s in signals} == {"ZSM Midden-Nederland"}
    assert {s.lookup_time.ToDatetime(tzinfo=dt.UTC) for s in signals} == {NOW}
    # Pulling without confirming gives the same page again.
    assert pull(marked) == signals


def test_pull_pages_and_forgets_what_was_confirmed(marked: RunningRegistry, ring: KeyRing) -> None:
    marked.lookup(subject(ring, PERSON), party=KPC)
    marked.lookup(subject(ring, OTHER), party=KPC)

    one, two = pull(marked, size=2)
    [three] = pull(marked, after=two.sequence, size=2)

    assert [s["seq"] for s in stored(marked)] == [three.sequence]
    assert (three.house, three.sequence > two.sequence > one.sequence) == (
        f"houses/{BREDA}",
        True,
    )
    assert pull(marked, after=three.sequence) == []
    assert stored(marked) == []


def test_a_sequence_is_never_given_out_twice_also_after_every_signal_was_confirmed(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    marked.lookup(subject(ring, PERSON), party=KPC)
    *_, last = pull(marked)
    assert pull(marked, after=last.sequence) == []

    marked.lookup(subject(ring, OTHER), party=KPC)

    [again] = pull(marked, after=last.sequence)
    assert again.sequence > last.sequence
    assert again.house == f"houses/{BREDA}"


def test_pull_pages_hold_500_by_default_and_5000_at_most(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    response = marked.lookup(subject(ring, OTHER), party=KPC)
    row = {
        "house_id": BREDA,
        "source_record_id": "gcos-2",
        "case_reference": None,
        "zsm_location": "ZSM Midden-Nederland",
        "lookup_time": NOW,
        "access_log_seq": response.access_log_entry,
    }
    with marked.engine.begin() as connection:
        connection.execute(insert(SignalRow), [row] * 5_001)

    assert len(pull(marked)) == 500
    assert len(pull(marked, size=7)) == 7
    assert len(pull(marked, size=1_000_000)) == 5_000


def test_a_page_of_signals_is_an_access_log_entry_and_an_empty_page_is_none(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    marked.lookup(subject(ring, PERSON), party=KPC)
    before = len(log_entries(marked))

    first, second = pull(marked)
    assert pull(marked, after=second.sequence) == []

    entries = log_entries(marked)
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.outcome, entry.party_id) == ("disclosed", FEEDBACK)
    body = entry.body
    assert (body["operation"], body["purpose"], body["role"]) == (PULL, "terugkoppeling", "service")
    assert body["processing_activity"] == "baken:signalering-veiligheidshuizen"
    assert (body["signal_count"], body["first_signal"], body["last_signal"]) == (
        2,
        first.sequence,
        second.sequence,
    )
    assert body["covenants"] == ["test-everything@v1"]
    assert "data_subject" not in body


@pytest.mark.parametrize(
    ("party", "reason"),
    [
        # A ZSM desk may feed back, but the signals are for the feedback service.
        (KPC, "NOT_A_FEEDBACK_SERVICE"),
        ("vh-midden-nederland-procesregie", "NOT_A_FEEDBACK_SERVICE"),
        ("adapter-gcos", "NOT_A_FEEDBACK_SERVICE"),
        # A service no covenant admits for terugkoppeling.
        ("registry", "NO_COVENANT"),
    ],
)
def test_pull_is_for_the_feedback_service_only_and_a_refusal_is_logged(
    marked: RunningRegistry, ring: KeyRing, party: str, reason: str
) -> None:
    marked.lookup(subject(ring, PERSON), party=KPC)
    before = stored(marked)
    stub = marked.stub_for(party)

    code, found, _ = refused(
        lambda: stub.PullSignals(pb.PullSignalsRequest(after_sequence=10**9), timeout=10)
    )

    assert (code, found) == (grpc.StatusCode.PERMISSION_DENIED, reason)
    assert stored(marked) == before  # nothing forgotten
    entry = log_entries(marked)[-1]
    assert (entry.outcome, entry.party_id, entry.body["denial_reason"]) == ("denied", party, reason)
    assert entry.body["operation"] == PULL


def test_pull_refuses_a_negative_sequence_or_page_size(marked: RunningRegistry) -> None:
    stub = marked.stub_for(FEEDBACK)

    code, reason, fields = refused(
        lambda: stub.PullSignals(pb.PullSignalsRequest(after_sequence=-1, page_size=-5), timeout=10)
    )

    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert fields == ["after_sequence", "page_size"]


def test_the_access_log_still_verifies_with_signals_pulled(
    marked: RunningRegistry, ring: KeyRing, capsys: pytest.CaptureFixture[str]
) -> None:
    marked.lookup(subject(ring, PERSON), party=KPC)
    marked.lookup(subject(ring, OTHER), party=OVJ, purpose=DECISION, case_reference=CASE)
    *_, last = pull(marked)
    pull(marked, after=last.sequence)
    refused(lambda: marked.stub_for(KPC).PullSignals(pb.PullSignalsRequest(), timeout=10))

    public_key = str(public_path(marked.settings.resolved_audit_signing_key()))
    if marked.database_url.startswith("sqlite"):
        args = ["audit", "verify", "--data-dir", str(marked.data_dir), "--public-key", public_key]
    else:
        args = ["audit", "verify", "--database-url", marked.database_url,
                "--public-key", public_key]  # fmt: skip
    assert main(args) == 0
    # The marking's match, two lookups, a page, a refusal.
    assert "5 entries" in capsys.readouterr().out


# --- The shipped covenants ------------------------------------------------------------------------


def test_with_the_shipped_covenants_the_feedback_service_pulls_what_any_zsm_desk_found(
    shipped_registry: RunningRegistry, ring: KeyRing
) -> None:
    shipped_registry.sync(Marking(PERSON, "pga-1", house=ROTTERDAM).upsert(ring))

    # Police at ZSM Midden-Nederland may not see where a Rotterdam marker is: withheld, yet
    # the house hears that its person flowed in.
    response = shipped_registry.lookup(subject(ring, PERSON), party="zsm-midden-nederland-politie")
    assert response.outcome == pb.LOOKUP_OUTCOME_WITHHELD
    zwb = shipped_registry.lookup(subject(ring, PERSON), party="zsm-zeeland-west-brabant-kpc")

    signals = pull(shipped_registry)

    assert [(s.house, s.zsm_location, s.access_log_entry) for s in signals] == [
        (f"houses/{ROTTERDAM}", "ZSM Midden-Nederland", response.access_log_entry),
        (f"houses/{ROTTERDAM}", "ZSM Zeeland-West-Brabant", zwb.access_log_entry),
    ]
    assert log_entries(shipped_registry)[-1].body["covenants"] == ["national@v1"]


def test_the_privacy_officer_sees_a_pull_as_signals_disclosed(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc

    marked.lookup(subject(ring, PERSON), party=KPC)
    assert len(pull(marked)) == 2
    with secure_channel(marked.pki_dir, marked.port, "privacy-auditor") as channel:
        entries = (
            audit_service_pb2_grpc.AuditServiceStub(channel)
            .ListAccessEntries(
                audit_service_pb2.ListAccessEntriesRequest(on_behalf_of="fg-01", party=FEEDBACK),
                timeout=10,
            )
            .entries
        )
    assert [e.outcome for e in entries] == [audit_service_pb2.ACCESS_OUTCOME_SIGNALS_DISCLOSED]


def test_a_successful_poll_writes_no_info_log_line_and_a_refused_one_does(
    registry: RunningRegistry,
) -> None:
    # The feedback service polls every second: 86,000 lines a day, 86 % of the registry's log.
    from structlog.testing import capture_logs

    with capture_logs() as captured:
        assert pull(registry) == []
        refused(lambda: registry.stub_for(KPC).PullSignals(pb.PullSignalsRequest(), timeout=10))

    polls = [e for e in captured if e.get("method") == PULL and e["log_level"] != "debug"]
    assert [(e["log_level"], e["party"], e["code"]) for e in polls] == [
        ("info", KPC, "PERMISSION_DENIED")
    ]
