"""The adapter framework against a real registry: incremental sync, tombstones, bad records, and
a crash at every point of a sync losing and duplicating nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from builders import TODAY, valid_bsns
from harness import RunningRegistry, secure_channel
from pseudonymiser_harness import KEY_ID, running_pseudonymiser

from adapters.framework import MAX_DELETE_SHARE, Adapter
from adapters.records import BadRecord, Person, SourceRecord
from adapters.state import Sent, State
from adapters.transport import Send, sender
from baken.age import minor_until
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.registry.v1 import marker_pb2, registry_service_pb2

HOUSES = load_houses()
_bsns = valid_bsns(50_000_000)


def record(n: int, **fields: object) -> SourceRecord:
    values: dict[str, object] = {
        "record_id": f"AT-{n:05d}",
        "house_id": "vh-rotterdam-rijnmond",
        "person": Person(next(_bsns), "Jansen", dt.date(1990, 1, 1)),
        "target_group": "veelpleger",
        "plan_status": "active",
        "mark_date": dt.date(2026, 9, 1),
        "advice": f"dagvaarden, plan {n}",
        "advice_date": dt.date(2026, 9, 1),
        "at_information": {"open_cases": "1 zaak"},
        "where": f"export.jsonl:{n + 1}",
    }
    values.update(fields)
    return SourceRecord(**values)  # type: ignore[arg-type]


class Export:
    """A PGA-like export held in memory."""

    source_system = "pga"
    party = "adapter-pga"

    def __init__(self, items: Sequence[SourceRecord | BadRecord]) -> None:
        self.items = list(items)

    def read(self, path: Path) -> Iterator[SourceRecord | BadRecord]:
        return iter(self.items)


class Crash(Exception):
    """The adapter process dies here."""


@pytest.fixture
def channel(registry: RunningRegistry) -> Iterator[grpc.Channel]:
    with secure_channel(registry.pki_dir, registry.port, "adapter-pga") as channel:
        yield channel


def adapter(
    export: Export,
    tmp_path: Path,
    send: Send,
    clock: object,
    ring: KeyRing,
    *,
    batch: int = 1000,
    max_delete_share: float = MAX_DELETE_SHARE,
) -> tuple[Adapter, State]:
    """Small exports: one record leaving may be above the default limit; tests of tombstones
    say how many they let go."""
    state = State(tmp_path / "state" / "pga.state.db")
    return (
        Adapter(
            export,
            ring=ring,
            state=state,
            houses=HOUSES,
            clock=clock,  # type: ignore[arg-type]
            send=send,
            batch=batch,
            max_delete_share=max_delete_share,
        ),
        state,
    )


def live(registry: RunningRegistry) -> dict[str, int]:
    """record id -> version of every live marker in the registry."""
    return {
        row["source_record_id"]: row["source_version"]
        for row in registry.tables()["markers"]
        if not row["deleted"]
    }


def counting(send: Send, calls: list[int]) -> Send:
    def wrapped(
        changes: Sequence[marker_pb2.MarkerChange],
    ) -> registry_service_pb2.SyncMarkersResponse:
        calls.append(len(changes))
        return send(changes)

    return wrapped


def test_a_rerun_without_source_changes_sends_nothing(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    export = Export([record(n) for n in range(5)])
    calls: list[int] = []
    run, state = adapter(export, tmp_path, counting(sender(channel), calls), registry.clock, ring)

    first = run.sync(tmp_path / "export.jsonl")
    second = run.sync(tmp_path / "export.jsonl")
    state.close()

    assert (first.new, first.changed, first.deleted, first.unchanged, first.rejected) == (
        5,
        0,
        0,
        0,
        0,
    )
    assert (second.new, second.unchanged) == (0, 5)
    assert calls == [5]
    assert live(registry) == {f"AT-{n:05d}": 1 for n in range(5)}


def test_a_changed_record_updates_and_one_that_left_becomes_a_tombstone(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    records = [record(n) for n in range(4)]
    export = Export(records)
    run, state = adapter(
        export, tmp_path, sender(channel), registry.clock, ring, max_delete_share=0.5
    )
    run.sync(tmp_path / "x")

    export.items = [dataclasses.replace(records[0], plan_status="aftercare"), *records[1:3]]
    report = run.sync(tmp_path / "x")
    state.close()

    assert (report.changed, report.deleted, report.unchanged) == (1, 1, 2)
    assert live(registry) == {"AT-00000": 2, "AT-00001": 1, "AT-00002": 1}


def test_bad_records_are_reported_by_place_and_the_rest_syncs(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    good = record(0)
    items: list[SourceRecord | BadRecord] = [
        good,
        record(1, person=Person("123456789", None, None)),  # fails the 11-proef
        record(2, house_id="vh-nowhere"),
        record(3, house_id="vh-twente"),  # an Amazone house
        record(4, advice_date=TODAY + dt.timedelta(days=1)),
        record(5, person=Person(None, "Jansen", None)),  # no BSN and no birth date
        BadRecord("export.jsonl:7", "AT-00006", "doelgroep: 'Onbekend' is not a target group"),
        record(0, where="export.jsonl:8"),  # the same record id twice
    ]
    run, state = adapter(Export(items), tmp_path, sender(channel), registry.clock, ring)
    report = run.sync(tmp_path / "x")
    state.close()

    assert (report.new, report.rejected) == (1, 7)
    problems = {(p.where, p.record_id): p.reason for p in report.problems}
    assert problems[("export.jsonl:2", "AT-00001")].startswith("bsn:")
    assert "123456789" not in problems[("export.jsonl:2", "AT-00001")]
    assert problems[("export.jsonl:3", "AT-00002")].startswith("house:")
    assert "does not keep its markers in pga" in problems[("export.jsonl:4", "AT-00003")]
    assert problems[("export.jsonl:5", "AT-00004")].startswith("advice date:")
    assert problems[("export.jsonl:6", "AT-00005")].startswith("birth_date")
    assert "twice" in problems[("export.jsonl:8", "AT-00000")]
    assert live(registry) == {"AT-00000": 1}


def test_a_record_that_turns_bad_keeps_its_marker(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    first = record(0)
    export = Export([first, record(1)])
    run, state = adapter(export, tmp_path, sender(channel), registry.clock, ring)
    run.sync(tmp_path / "x")

    export.items = [first, BadRecord("export.jsonl:2", "AT-00001", "invalid JSON")]
    report = run.sync(tmp_path / "x")
    state.close()

    assert (report.deleted, report.rejected) == (0, 1)
    assert live(registry) == {"AT-00000": 1, "AT-00001": 1}


@pytest.mark.parametrize("applied", [False, True], ids=["before-the-registry", "after-it"])
@pytest.mark.parametrize("crash_at", [0, 1, 2])
def test_a_crash_at_any_batch_loses_and_duplicates_nothing(
    registry: RunningRegistry,
    channel: grpc.Channel,
    tmp_path: Path,
    ring: KeyRing,
    crash_at: int,
    applied: bool,
) -> None:
    records = [record(n) for n in range(9)]
    export = Export(records)
    real = sender(channel)
    calls: list[int] = []

    def dying(
        changes: Sequence[marker_pb2.MarkerChange],
    ) -> registry_service_pb2.SyncMarkersResponse:
        calls.append(len(changes))
        if len(calls) == crash_at + 1:
            if applied:
                real(changes)
            raise Crash
        return real(changes)

    run, state = adapter(export, tmp_path, dying, registry.clock, ring, batch=3)
    with pytest.raises(Crash):
        run.sync(tmp_path / "x")
    state.close()

    # Meanwhile the source changed one record and dropped another.
    export.items = [dataclasses.replace(records[1], advice="nieuw advies"), *records[2:]]
    rerun, state = adapter(
        export, tmp_path, real, registry.clock, ring, batch=3, max_delete_share=0.5
    )
    report = rerun.sync(tmp_path / "x")
    again = rerun.sync(tmp_path / "x")
    state.close()

    assert report.rejected == 0, report.problems
    assert set(live(registry)) == {f"AT-{n:05d}" for n in range(1, 9)}
    assert again.unchanged == 8 and again.new == again.changed == again.deleted == 0


def test_the_sender_retries_while_the_registry_is_unreachable() -> None:
    naps: list[float] = []
    with grpc.insecure_channel("127.0.0.1:1") as nowhere:
        send = sender(nowhere, timeout_s=1, sleep=naps.append)
        with pytest.raises(grpc.RpcError) as caught:
            send([])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(naps) == 5 and all(0 < nap <= 15 for nap in naps)


def test_an_export_that_cannot_prove_it_is_complete_changes_nothing(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    records = [record(n) for n in range(3)]
    export = Export(records)
    calls: list[int] = []
    run, state = adapter(export, tmp_path, counting(sender(channel), calls), registry.clock, ring)
    run.sync(tmp_path / "x")
    before = state.load()

    cut = BadRecord("export.csv:3", None, "footer: missing (cut off?)", incomplete=True)
    changed = dataclasses.replace(records[0], advice="nieuw advies")
    export.items = [changed, record(7), cut]
    report = run.sync(tmp_path / "x")
    after = state.load()
    state.close()

    assert (report.new, report.changed, report.deleted, report.rejected) == (0, 0, 0, 1)
    assert report.refused == (
        "the export cannot prove it is complete (export.csv:3: footer: missing (cut off?))"
    )
    assert "nothing changed: the export cannot prove" in report.summary()
    assert calls == [3] and after == before
    assert live(registry) == {"AT-00000": 1, "AT-00001": 1, "AT-00002": 1}


def _synced(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing, count: int
) -> tuple[Export, list[SourceRecord]]:
    records = [record(n) for n in range(count)]
    run, state = adapter(Export(records), tmp_path, sender(channel), registry.clock, ring)
    run.sync(tmp_path / "x")
    state.close()
    return Export(records), records


def test_a_run_that_would_delete_more_than_the_limit_changes_nothing(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    """The attack: an export missing most of the source (a wrong or half-written file)."""
    export, records = _synced(registry, channel, tmp_path, ring, 20)
    export.items = [dataclasses.replace(records[0], advice="nieuw advies"), *records[1:17]]
    calls: list[int] = []
    run, state = adapter(export, tmp_path, counting(sender(channel), calls), registry.clock, ring)
    before = state.load()

    report = run.sync(tmp_path / "x")
    wrong = run.sync(tmp_path / "x", confirm_deletions=2)
    after = state.load()
    state.close()

    assert report.refused == (
        "the run would delete 3 of 20 live markers (15.0%), more than the limit of 10%"
    )
    assert (report.deletions_to_confirm, report.changed, report.deleted) == (3, 0, 0)
    assert wrong.refused is not None and wrong.refused.endswith("2 were confirmed, not 3")
    assert calls == [] and after == before
    assert live(registry) == {f"AT-{n:05d}": 1 for n in range(20)}


def test_a_confirmed_mass_deletion_deletes_exactly_what_left(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    export, records = _synced(registry, channel, tmp_path, ring, 20)
    export.items = records[:2]
    run, state = adapter(export, tmp_path, sender(channel), registry.clock, ring)

    report = run.sync(tmp_path / "x", confirm_deletions=18)
    again = run.sync(tmp_path / "x")
    state.close()

    assert (report.refused, report.deleted, report.unchanged) == (None, 18, 2)
    assert (again.refused, again.deleted, again.unchanged) == (None, 0, 2)
    assert live(registry) == {"AT-00000": 1, "AT-00001": 1}


def test_deletions_within_the_limit_need_no_confirmation(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    export, records = _synced(registry, channel, tmp_path, ring, 20)
    export.items = records[:18]
    run, state = adapter(export, tmp_path, sender(channel), registry.clock, ring)

    report = run.sync(tmp_path / "x")
    state.close()

    assert (report.refused, report.deleted) == (None, 2)
    assert set(live(registry)) == {f"AT-{n:05d}" for n in range(18)}


def test_a_bad_record_without_a_readable_id_withholds_every_deletion(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    export, records = _synced(registry, channel, tmp_path, ring, 20)
    unreadable = BadRecord("export.jsonl:2", None, "invalid JSON: Expecting value at column 1")
    export.items = [unreadable, *records[2:]]
    run, state = adapter(export, tmp_path, sender(channel), registry.clock, ring)

    report = run.sync(tmp_path / "x")
    state.close()

    assert (report.deleted, report.deletions_withheld, report.refused) == (0, 2, None)
    assert "deletions withheld 2" in report.summary()
    assert len(live(registry)) == 20


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"advice": "Dag.\x1b[2J\x1b[HNO HIT"}, "advice: holds a control character (U+001B)"),
        ({"advice": "Dagvaarden.\x9b2J"}, "advice: holds a control character (U+009B)"),
        ({"advice": "Dagvaarden.\x7f"}, "advice: holds a control character (U+007F)"),
        ({"advice": "Dag\u202evaarden"}, "advice: holds a control character (U+202E)"),
        (
            {"at_information": {"open_cases": "1 zaak\x07"}},
            "at_information.open_cases: holds a control character (U+0007)",
        ),
        ({"record_id": "AT-\x1b[2J"}, "record id: holds a control character (U+001B)"),
    ],
    ids=["esc", "c1-csi", "del", "bidi-override", "bel-in-at-field", "record-id"],
)
def test_a_text_with_control_characters_is_refused_by_line_and_field(
    registry: RunningRegistry,
    channel: grpc.Channel,
    tmp_path: Path,
    ring: KeyRing,
    fields: dict[str, object],
    reason: str,
) -> None:
    """An ESC sequence in an advice would reach the KPC'er's terminal: clear it, forge NO HIT."""
    items: list[SourceRecord | BadRecord] = [
        record(0, advice="Dagvaarden.\nBij nieuw feit:\tvoorgeleiden."),  # LF, TAB are text
        record(1, **fields),
    ]
    run, state = adapter(Export(items), tmp_path, sender(channel), registry.clock, ring)
    report = run.sync(tmp_path / "x")
    state.close()

    assert [(p.where, p.reason) for p in report.problems] == [("export.jsonl:2", reason)]
    assert set(live(registry)) == {"AT-00000"}


def test_a_minor_in_the_source_is_a_minor_in_the_registry_by_month_only(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path, ring: KeyRing
) -> None:
    # The registry learns the month he comes of age, never his date of birth.
    today = registry.clock.today()
    born = today.replace(year=today.year - 17, day=14)
    export = Export([record(1, person=Person(next(_bsns), "Jansen", born)), record(2)])
    run, state = adapter(export, tmp_path, sender(channel), registry.clock, ring)
    run.sync(tmp_path / "export.jsonl")
    state.close()

    rows = {r["source_record_id"]: r["minor_until"] for r in registry.tables()["markers"]}
    until = rows["AT-00001"]
    until = dt.date.fromisoformat(until) if isinstance(until, str) else until
    assert until == minor_until(born, today)
    assert until.day == 1 and until > born.replace(year=born.year + 18)
    assert rows["AT-00002"] is None  # an adult: nothing
    assert born.isoformat() not in repr(registry.tables())


def test_under_an_oprf_key_a_chunk_of_records_is_one_call_and_a_rerun_asks_only_for_changes(
    registry: RunningRegistry, channel: grpc.Channel, tmp_path: Path
) -> None:
    with running_pseudonymiser(tmp_path, registry.pki_dir) as service:
        items = [record(n) for n in range(601)]
        items[300] = record(300, person=Person("123456789", None, None))  # fails the 11-proef
        ring = service.ring(KEY_ID, "adapter-pga", "sync")
        export = Export(items)
        run, state = adapter(export, tmp_path, sender(channel), registry.clock, ring)
        first = run.sync(tmp_path / "x")
        again = run.sync(tmp_path / "x")
        moved = dataclasses.replace(items[7].person, surname="Jansen-de Vries")
        export.items[7] = dataclasses.replace(items[7], person=moved)
        changed = run.sync(tmp_path / "x")
        state.close()
        calls = [e.body["elements"] for e in service.log_entries()]

    assert (first.new, first.rejected, again.unchanged) == (600, 1, 600)
    (problem,) = first.problems
    assert (problem.where, problem.reason[:4]) == ("export.jsonl:301", "bsn:")
    # BSN and name of each person: 1,200 identifiers, in calls of at most 1,000 (pipelined: the
    # log has them as they ended); a rerun asks nothing for unchanged persons, and for a changed
    # one his identifiers only.
    assert (sorted(calls[:2]), calls[2:]) == ([200, 1000], [2])
    assert (changed.changed, changed.unchanged) == (1, 599)
    assert {row["key_id"] for row in registry.tables()["marker_pseudonyms"]} == {KEY_ID}


def test_a_state_file_from_before_opens_with_nothing_remembered_and_keeps_its_salt(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.state.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE records (key TEXT PRIMARY KEY, record_id TEXT NOT NULL, version INTEGER"
        " NOT NULL, fingerprint BLOB NOT NULL, deleted INTEGER NOT NULL, confirmed INTEGER"
        " NOT NULL)"
    )
    db.execute("INSERT INTO records VALUES ('vh-x/r', 'r', 3, x'00', 0, 1)")
    db.commit()
    db.close()
    state = State(path)
    assert state.load() == {"vh-x/r": Sent("r", 3, b"\x00", False, True, b"", b"")}
    salt = state.salt
    state.close()
    again = State(path)
    assert again.salt == salt and len(salt) == 32
    again.close()
