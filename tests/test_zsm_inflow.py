"""The ZSM inflow adapter end to end, over mTLS against a real registry and feedback service
with the shipped covenants: a shift's monitor in, every suspect looked up exactly once and
recorded in the desk's inflow, decisions fed back as `baken decide` would, through restarts,
cut-off exports and bad rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from builders import Marking, Person
from feedback_harness import KPC_UTRECHT, RunningFeedback
from harness import secure_channel
from pseudonymiser_harness import KEY_ID, running_pseudonymiser

from adapters.zsm import Inflow, InflowReport, InflowState, export_bytes, request_key, shift
from adapters.zsm.export import Decision, InflowRow
from baken.client import RegistryClient, Suspect
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2
from cli.main import main

UTRECHT = "vh-regio-utrecht-utrecht"
START = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)  # the clock stands at 11:00 UTC
ACCOUNT = "instroom"
REASON = "Meldplicht werkte niet: hij onttrok zich twee keer, dus dagvaarden."


class CountingRegistry:
    """The RegistryClient of the desk, counting each suspect it asks about."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.asked: Counter[str] = Counter()
        self.fail_after: int | None = None  # a kill after this many answers
        self.kill_at_call: int | None = None  # a kill before this BatchLookup call is made
        self.batches = 0

    def batch_lookup(
        self, suspects: Sequence[Suspect]
    ) -> Iterator[registry_service_pb2.BatchLookupResult]:
        self.batches += 1
        if self.kill_at_call == self.batches:
            raise KeyboardInterrupt("killed")
        self.asked.update(s.case_reference for s in suspects)
        for n, result in enumerate(self.client.batch_lookup(suspects)):
            if self.fail_after is not None and n >= self.fail_after:
                raise KeyboardInterrupt("killed")
            yield result


class CountingFeedback:
    """The desk's FeedbackServiceStub, counting calls per method; `fail` makes a method raise
    (a crash, or a service that is away) after that many calls."""

    def __init__(self, stub: Any) -> None:
        self.stub = stub
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, tuple[int, BaseException]] = {}

    def _call(self, method: str, request: Any, timeout: float) -> Any:
        after = self.fail.get(method)
        if after is not None and self.calls[method] >= after[0]:
            raise after[1]
        self.calls[method] += 1
        return getattr(self.stub, method)(request, timeout=timeout)

    def RecordInflow(self, request: Any, timeout: float) -> Any:
        return self._call("RecordInflow", request, timeout)

    def RecordDecision(self, request: Any, timeout: float) -> Any:
        return self._call("RecordDecision", request, timeout)


class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection refused"


class Down(CountingRegistry):
    """A registry that cannot be reached (UNAVAILABLE on every call)."""

    def batch_lookup(
        self, suspects: Sequence[Suspect]
    ) -> Iterator[registry_service_pb2.BatchLookupResult]:
        raise Unavailable()


@dataclasses.dataclass
class Desk:
    feedback: RunningFeedback
    registry: CountingRegistry
    state_path: Path
    source: Path
    stub: CountingFeedback
    chunk: int = 50
    ring: KeyRing | None = None  # the feedback harness's ring unless given

    def run(
        self, rows: Sequence[InflowRow | list[str]] | None = None, *, data: bytes | None = None
    ) -> InflowReport:
        if rows is not None or data is not None:
            self.source.write_bytes(data if data is not None else export_bytes(rows or []))
        state = InflowState(self.state_path)
        try:
            inflow = Inflow(
                ring=self.ring if self.ring is not None else self.feedback.ring,
                state=state,
                clock=self.feedback.registry.clock,
                registry=self.registry,
                feedback=self.stub,
                on_behalf_of=ACCOUNT,
                location="ZSM Midden-Nederland",
                sleep=lambda _: None,
                chunk=self.chunk,
            )
            return inflow.run(self.source)
        finally:
            state.close()

    def inflow(self) -> dict[str, pb.InflowEntry]:
        """The desk's inflow as its screen lists it, by case."""
        response = self.feedback.stub_for(KPC_UTRECHT).ListInflow(
            pb.ListInflowRequest(on_behalf_of="kpc-0042", page_size=200), timeout=10
        )
        return {e.case_reference: e for e in response.entries}

    def deliveries(self) -> list[tuple[str, str]]:
        """(house, case) of every item in the feedback outbox."""
        return sorted(
            (row["house_id"], self.feedback.stored(row).case_reference)
            for row in self.feedback.tables()["deliveries"]
        )

    def looked_up(self) -> Counter[str]:
        """Look-ups per case as the registry's access log has them, under the desk's party."""
        found: Counter[str] = Counter()
        for row in self.feedback.registry.tables()["access_log"]:
            body = json.loads(row["body"])
            if row["party_id"] == KPC_UTRECHT and body.get("case_reference"):
                found[body["case_reference"]] += 1
        return found


@pytest.fixture
def desk(feedback: RunningFeedback, tmp_path: Path) -> Iterator[Desk]:
    channel = secure_channel(feedback.registry.pki_dir, feedback.registry.port, KPC_UTRECHT)
    client = RegistryClient(
        channel, feedback.ring, on_behalf_of=ACCOUNT, clock=feedback.registry.clock
    )
    try:
        yield Desk(
            feedback,
            CountingRegistry(client),
            tmp_path / "state" / "zsm.state.db",
            tmp_path / "monitor.csv",
            CountingFeedback(feedback.stub_for(KPC_UTRECHT)),
        )
    finally:
        channel.close()


def mark(
    feedback: RunningFeedback, row: InflowRow, house: str = UTRECHT, *, advice: bool = True
) -> None:
    """The row's suspect marked by `house`, with CURRENT advice or none."""
    p = row.person
    person = Person(bsn=p.bsn, surname=p.surname, birth_date=p.birth_date)
    marking = Marking(person, f"{house}-{row.case_reference}", house=house)
    if not advice:
        marking = dataclasses.replace(marking, advice="", advice_date=None)
    feedback.registry.sync(marking.upsert(feedback.ring))


def decided(row: InflowRow, code: str = "dagvaarding", **fields: Any) -> InflowRow:
    """The row again, with a final decision (no advice line unless given)."""
    values: dict[str, Any] = {
        "code": code,
        "sepot_code": "02" if code == "sepot" else "",
        "stage": "final",
        "advice_followed": None,
        "deviation_reason": None,
        "probation_report_requested": False,
        **fields,
    }
    return dataclasses.replace(row, decision=Decision(**values))


def adults(count: int, seed: int = 11) -> list[InflowRow]:
    """`count` adult suspects of a shift, intake rows only."""
    rows = [r for r in shift(seed=seed, start=START, count=count * 3, decided=0) if not r.minor]
    return rows[:count]


def test_a_shift_is_looked_up_once_per_suspect_and_a_second_run_checks_nobody(desk: Desk) -> None:
    rows = shift(seed=11, start=START, count=12)
    adults = [r for r in rows if r.decision is None and not r.minor]
    mark(desk.feedback, adults[0])
    cases = {r.case_reference for r in rows}

    first = desk.run(rows)
    second = desk.run()

    assert (first.new, first.checked, first.unchecked) == (12, 12, 0)
    assert first.known == 1
    assert desk.registry.asked == Counter(dict.fromkeys(cases, 1))
    assert desk.looked_up() == Counter(dict.fromkeys(cases, 1))
    assert (second.new, second.checked, second.recorded) == (0, 0, 0)
    assert desk.looked_up() == Counter(dict.fromkeys(cases, 1))
    inflow = desk.inflow()
    assert set(inflow) == cases
    known = inflow[adults[0].case_reference]
    assert (
        known.known and known.checked_time.ToDatetime(dt.UTC) == desk.feedback.registry.clock.now()
    )
    assert known.arrest_time.ToDatetime(dt.UTC) == adults[0].arrest_time
    assert known.offence_category == adults[0].offence_category
    assert known.recorded_by == KPC_UTRECHT
    assert not any(e.known for c, e in inflow.items() if c != adults[0].case_reference)
    assert desk.stub.calls["RecordInflow"] == 12 + first.held  # a held decision: once more


def test_a_run_killed_between_look_ups_or_records_checks_nobody_twice_after_the_restart(
    desk: Desk,
) -> None:
    rows = adults(8)
    desk.chunk = 3
    desk.registry.kill_at_call = 2  # after the first 3 were answered and written down
    with pytest.raises(KeyboardInterrupt):
        desk.run(rows)
    assert desk.inflow() == {}
    desk.registry.kill_at_call = None
    desk.stub.fail["RecordInflow"] = (4, KeyboardInterrupt("killed"))
    with pytest.raises(KeyboardInterrupt):
        desk.run()
    desk.stub.fail.clear()
    last = desk.run()

    cases = {r.case_reference for r in rows}
    assert desk.looked_up() == Counter(dict.fromkeys(cases, 1))
    assert desk.registry.asked == Counter(dict.fromkeys(cases, 1))
    assert (last.checked, last.recorded) == (0, 4)
    assert set(desk.inflow()) == cases
    assert all(e.HasField("checked_time") for e in desk.inflow().values())


def test_a_kill_while_answers_come_in_asks_at_most_the_unwritten_ones_of_that_chunk_again(
    desk: Desk,
) -> None:
    """The window that remains: the registry answered, the adapter died before writing the
    answer down. Those suspects are asked again (at least once), nobody else."""
    rows = adults(6)
    desk.chunk = 3
    desk.registry.fail_after = 1  # one answer of the first chunk written, two in flight
    with pytest.raises(KeyboardInterrupt):
        desk.run(rows)
    desk.registry.fail_after = None
    desk.run()

    twice = [c for c, n in desk.looked_up().items() if n == 2]
    assert twice == [rows[1].case_reference, rows[2].case_reference]
    assert sum(desk.looked_up().values()) == 8


def test_an_unreachable_registry_records_the_inflow_unchecked_and_a_later_run_checks_him(
    desk: Desk,
) -> None:
    rows = adults(3)
    up = desk.registry
    desk.registry = Down(up.client)
    first = desk.run(rows)
    assert (first.checked, first.unchecked, first.recorded) == (0, 3, 3)
    assert first.failures == ["registry: UNAVAILABLE: not reachable"]
    assert not any(e.HasField("checked_time") for e in desk.inflow().values())

    desk.registry = up
    second = desk.run()
    third = desk.run()

    assert (second.checked, second.recorded) == (3, 3)
    assert (third.checked, third.recorded) == (0, 0)
    assert all(e.HasField("checked_time") for e in desk.inflow().values())
    assert desk.looked_up() == Counter({r.case_reference: 1 for r in rows})


def test_a_cut_off_export_changes_nothing_for_its_missing_part(desk: Desk) -> None:
    rows = adults(6)
    data = export_bytes(rows)
    cut = data[: data.index(rows[4].case_reference.encode()) + 4]

    report = desk.run(data=cut)
    assert report.incomplete is not None and "cut off" in report.incomplete
    whole = {r.case_reference for r in rows[:4]}
    assert set(desk.inflow()) == whole
    assert set(desk.looked_up()) == whole

    complete = desk.run(data=data)
    assert complete.incomplete is None
    assert (complete.new, complete.checked) == (2, 2)
    assert desk.looked_up() == Counter({r.case_reference: 1 for r in rows})


def test_decisions_in_a_later_export_reach_the_marking_house_once(desk: Desk) -> None:
    rows = adults(3)
    mark(desk.feedback, rows[0], advice=False)
    desk.run(rows)
    later = [*rows, decided(rows[0]), decided(rows[1], "sepot")]

    first = desk.run(later)
    again = desk.run(later)

    assert (first.decided, first.fed_back, first.held) == (2, 1, 0)
    assert (again.decided, again.held) == (0, 0)
    assert desk.stub.calls["RecordDecision"] == 2
    assert desk.deliveries() == [(UTRECHT, rows[0].case_reference)]
    entry = desk.inflow()[rows[0].case_reference]
    assert entry.decision.startswith("decisions/")
    assert entry.decision_stage == pb.DECISION_STAGE_FINAL


def test_a_followed_advice_is_carried_to_the_house(desk: Desk) -> None:
    (row,) = adults(1)
    mark(desk.feedback, row)
    report = desk.run([row, decided(row, advice_followed="followed")])
    assert (report.decided, report.held) == (1, 0)
    (delivery,) = [desk.feedback.stored(r) for r in desk.feedback.tables()["deliveries"]]
    assert delivery.decision.advice_followed == pb.ADVICE_FOLLOWED_FOLLOWED


def test_a_decision_without_the_deviation_reason_is_held_for_the_desk_and_not_retried(
    desk: Desk,
) -> None:
    (row,) = adults(1)
    mark(desk.feedback, row)  # CURRENT advice the desk could see: a line is required
    decision = decided(row, "strafbeschikking", probation_report_requested=True)

    first = desk.run([row, decision])
    again = desk.run()

    assert (first.decided, first.held) == (0, 1)
    assert (again.decided, again.held) == (0, 0)
    assert desk.stub.calls["RecordDecision"] == 1
    held = desk.inflow()[row.case_reference].held_decision
    assert held.code == pb.DECISION_CODE_STRAFBESCHIKKING
    assert held.stage == pb.DECISION_STAGE_FINAL
    assert held.request_key == request_key(row.case_reference, decision.decision)  # type: ignore[arg-type]
    assert held.request_key == f"zsm:{row.case_reference}:strafbeschikking:final"
    assert held.probation_report_requested
    assert "house_advice" in held.problem
    assert desk.deliveries() == []
    assert any(p.notice and "held for the desk" in p.reason for p in first.problems)


def test_an_empty_monitor_does_nothing_and_a_case_number_holding_a_bsn_is_refused(
    desk: Desk,
) -> None:
    empty = desk.run([])
    assert (empty.new, empty.checked, empty.recorded, empty.rejected) == (0, 0, 0, 0)
    assert empty.incomplete is None and empty.refused is None
    (row,) = adults(1)
    report = desk.run(
        [
            cells_of(row, Zaaknummer="111222333"),
            cells_of(row, **{"ZSM-locatie": "ZSM Rotterdam-Rijnmond"}),
        ]
    )
    assert [(p.where, p.record_id) for p in report.problems] == [
        ("monitor.csv:2", None),
        ("monitor.csv:3", row.case_reference),
    ]
    assert report.problems[1].reason == "ZSM-locatie: not this desk's location"
    assert desk.looked_up() == Counter()
    assert desk.inflow() == {}


def test_under_an_oprf_key_a_monitor_is_one_call_and_is_not_pseudonymised_again(
    desk: Desk, tmp_path: Path
) -> None:
    rows = adults(12)
    mark(desk.feedback, rows[0])  # under the run's key, which the desk keeps while it rotates
    registry = desk.feedback.registry
    with running_pseudonymiser(tmp_path, registry.pki_dir) as service:
        new_key = service.ring(KEY_ID, KPC_UTRECHT, ACCOUNT)
        desk.ring = new_key.with_oprf_key("k1", desk.feedback.ring.oprf["k1"])
        report = desk.run([*rows[:6], cells_of(rows[6], BSN="123456789"), *rows[7:]])
        again = desk.run()  # the monitor read again: its pseudonyms are remembered
        later = desk.run([*rows, decided(rows[0])])  # a decision for a case seen before
        calls = [e.body["elements"] for e in service.log_entries()]

    assert (report.new, report.checked, report.known, report.rejected) == (11, 11, 1, 1)
    (problem,) = report.problems
    assert (problem.where, problem.reason[:4]) == ("monitor.csv:8", "BSN:")
    assert (again.new, again.rejected, later.new, later.decided + later.held) == (0, 1, 1, 1)
    today = registry.clock.today()
    # One call for the monitor; later only for the row that was bad before.
    count = [len(r.person.identifiers(today)) for r in rows]
    assert calls == [sum(count) - count[6], count[6]]


def cli_args(desk: Desk, tmp_path: Path, *extra: str) -> list[str]:
    registry = desk.feedback.registry
    return [
        "adapter", "zsm", "sync", "--source", str(desk.source),
        "--registry", f"127.0.0.1:{registry.port}",
        "--feedback", f"127.0.0.1:{desk.feedback.server.port}",
        "--pki-dir", str(registry.pki_dir), "--party", KPC_UTRECHT,
        "--key-file", str(tmp_path / "desk-keys.json"),
        "--state-dir", str(tmp_path / "cli-state"), *extra,
    ]  # fmt: skip


def test_the_cli_syncs_a_monitor_and_names_bad_rows_by_line(
    desk: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk.feedback.ring.save(tmp_path / "desk-keys.json")
    start = real_time(desk) - dt.timedelta(hours=5)
    rows: list[InflowRow | list[str]] = list(shift(seed=5, start=start, count=3, decided=0))
    bsn_case = cells_of(rows[0], Zaaknummer="111222333")
    desk.source.write_bytes(export_bytes([*rows, bsn_case]))

    status = main(cli_args(desk, tmp_path))
    out, err = capsys.readouterr()

    assert "monitor.csv:5: Zaaknummer: looks like a BSN" in out
    assert "111222333" not in out + err
    assert "monitor.csv: suspects new 3, checked 3 (known 0)" in out
    assert status == 1
    assert "1 row(s) rejected, named above" in err
    assert desk.looked_up() == Counter(
        {r.case_reference: 1 for r in rows if isinstance(r, InflowRow)}
    )


def test_the_cli_refuses_what_is_no_monitor_and_a_party_that_is_no_desk(
    desk: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk.feedback.ring.save(tmp_path / "desk-keys.json")
    desk.source.write_bytes(b"")
    assert main(cli_args(desk, tmp_path)) == 2
    assert (
        "nothing done: monitor.csv:1: header: missing (the export is empty)"
        in capsys.readouterr().err
    )
    desk.source.write_bytes(b'{"registratie_id": "AT-1", "bsn": "111222333"}\n')
    assert main(cli_args(desk, tmp_path)) == 2
    assert "not a ZSM suspects monitor" in capsys.readouterr().err
    args = cli_args(desk, tmp_path)
    args[args.index(KPC_UTRECHT)] = "adapter-pga"
    assert main(args) == 2
    assert "--party adapter-pga: not a ZSM desk" in capsys.readouterr().err
    assert desk.looked_up() == Counter()
    assert main([*cli_args(desk, tmp_path), "--user", "Instroom Adapter"]) == 2
    assert "--user: not an account of" in capsys.readouterr().err


def real_time(desk: Desk) -> dt.datetime:
    """The services' clock set to now: the CLI's adapter runs on the system's clock."""
    clock = desk.feedback.registry.clock
    now = dt.datetime.now(dt.UTC)
    clock.advance(now - clock.now())
    return now


def cells_of(row: InflowRow | list[str], **changes: str) -> list[str]:
    from adapters.zsm.export import COLUMNS
    from adapters.zsm.write import cells

    values = list(row) if isinstance(row, list) else cells(row)
    for name, value in changes.items():
        values[COLUMNS.index(name)] = value
    return values


def test_the_cli_pseudonymises_through_the_service_under_an_oprf_key(
    desk: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = real_time(desk) - dt.timedelta(hours=5)
    rows = [r for r in shift(seed=5, start=start, count=9, decided=0) if not r.minor][:3]
    mark(desk.feedback, rows[0])  # under the run's key, which the desk keeps while it rotates
    desk.source.write_bytes(export_bytes(rows))
    with running_pseudonymiser(tmp_path, desk.feedback.registry.pki_dir) as service:
        desk.feedback.ring.with_oprf_key(KEY_ID, service.address).save(tmp_path / "desk-keys.json")
        status = main(cli_args(desk, tmp_path))
        calls = [
            (e.party_id, e.body["on_behalf_of"], e.body["purpose"], e.body["elements"])
            for e in service.log_entries()
        ]

    assert status == 0, capsys.readouterr().err
    assert "monitor.csv: suspects new 3, checked 3 (known 1)" in capsys.readouterr().out
    # The monitor's three suspects, BSN and name each, in one call.
    assert calls == [(KPC_UTRECHT, ACCOUNT, "intake-en-selectie", 6)]


def test_a_case_done_with_for_good_forgets_its_pseudonyms(tmp_path: Path) -> None:
    state = InflowState(tmp_path / "zsm.state.db")
    now = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
    state.remember([(b"a", "ZSM-1", b"s1"), (b"b", "ZSM-2", b"s2")], now, dt.timedelta(days=14))
    state.refuse("ZSM-1", "technisch sepot 01")
    assert state.pseudonyms() == {b"b": b"s2"}
    state.remember([], now + dt.timedelta(days=15), dt.timedelta(days=14))
    assert state.pseudonyms() == {}
    state.close()
