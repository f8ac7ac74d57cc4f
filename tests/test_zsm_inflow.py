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

import pytest
from builders import Marking, Person
from feedback_harness import KPC_UTRECHT, RunningFeedback
from harness import secure_channel

from adapters.zsm import Inflow, InflowReport, InflowState, export_bytes, shift
from adapters.zsm.export import InflowRow
from baken.client import RegistryClient, Suspect
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
        self.fail_after: int | None = None  # raise (a crash) after this many answers

    def batch_lookup(
        self, suspects: Sequence[Suspect]
    ) -> Iterator[registry_service_pb2.BatchLookupResult]:
        self.asked.update(s.case_reference for s in suspects)
        for n, result in enumerate(self.client.batch_lookup(suspects)):
            if self.fail_after is not None and n >= self.fail_after:
                raise KeyboardInterrupt("killed")
            yield result


@dataclasses.dataclass
class Desk:
    feedback: RunningFeedback
    registry: CountingRegistry
    state_path: Path
    source: Path
    stub: object

    def run(
        self, rows: Sequence[InflowRow | list[str]] | None = None, *, data: bytes | None = None
    ) -> InflowReport:
        if rows is not None or data is not None:
            self.source.write_bytes(data if data is not None else export_bytes(rows or []))
        state = InflowState(self.state_path)
        try:
            inflow = Inflow(
                ring=self.feedback.ring,
                state=state,
                clock=self.feedback.registry.clock,
                registry=self.registry,
                feedback=self.stub,  # type: ignore[arg-type]
                on_behalf_of=ACCOUNT,
                location="ZSM Midden-Nederland",
                sleep=lambda _: None,
            )
            return inflow.run(self.source)
        finally:
            state.close()

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
            feedback.stub_for(KPC_UTRECHT),
        )
    finally:
        channel.close()


def mark(feedback: RunningFeedback, row: InflowRow, house: str = UTRECHT) -> None:
    p = row.person
    person = Person(bsn=p.bsn, surname=p.surname, birth_date=p.birth_date)
    feedback.registry.sync(
        Marking(person, f"{house}-{row.case_reference}", house=house).upsert(feedback.ring)
    )


def test_a_shift_is_looked_up_once_per_suspect_and_a_second_run_checks_nobody(desk: Desk) -> None:
    rows = shift(seed=11, start=START, count=12)
    adults = [r for r in rows if r.decision is None and not r.minor]
    mark(desk.feedback, adults[0])
    cases = {r.case_reference for r in rows}

    first = desk.run(rows)
    second = desk.run()

    print(first.summary(), first.failures, first.problems)
    assert (first.new, first.checked, first.unchecked) == (12, 12, 0)
    assert first.known == 1
    assert desk.registry.asked == Counter(dict.fromkeys(cases, 1))
    assert desk.looked_up() == Counter(dict.fromkeys(cases, 1))
    assert (second.new, second.checked) == (0, 0)
    assert desk.looked_up() == Counter(dict.fromkeys(cases, 1))


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
    rows: list[InflowRow | list[str]] = list(shift(seed=5, start=START, count=3, decided=0))
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


def cells_of(row: InflowRow | list[str], **changes: str) -> list[str]:
    from adapters.zsm.export import COLUMNS
    from adapters.zsm.write import cells

    values = list(row) if isinstance(row, list) else cells(row)
    for name, value in changes.items():
        values[COLUMNS.index(name)] = value
    return values
