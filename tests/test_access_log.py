"""The access log: a hash chain with signed checkpoints that names each kind of tampering, on
SQLite and PostgreSQL; and the checkpoint signing keys."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from builders import NOW
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

import services.common.db
from services.accesslog import signing
from services.accesslog import store as access_log
from services.accesslog import verify as log_verify
from services.accesslog.signing import SigningKeyError
from services.accesslog.store import AccessLog, Entry

MIGRATIONS = Path(__file__).resolve().parent.parent / "services" / "registry" / "migrations"
SUBJECT_A = b"\xaa" * 32
SUBJECT_B = b"\xbb" * 32
SUBJECT_C = b"\xcc" * 32


@pytest.fixture
def engine(database_url: str, engines: Callable[[str], Engine]) -> Engine:
    engine = engines(database_url)
    services.common.db.upgrade_to_head(MIGRATIONS, engine)
    return engine


@pytest.fixture
def signer() -> signing.SigningKey:
    return signing.generate("cp1")


@pytest.fixture
def keys(signer: signing.SigningKey) -> dict[str, Any]:
    return {"cp1": signer.public_key()}


def entry(
    n: int = 0,
    *,
    party: str = "zsm-rotterdam",
    outcome: str = "hit",
    subject: tuple[bytes, ...] = (),
    reviews_seq: int | None = None,
) -> Entry:
    return Entry(
        time=NOW + dt.timedelta(seconds=n),
        outcome=outcome,
        party_id=party,
        body={"method": "Lookup", "request_id": f"r{n}"},
        subject=subject,
        reviews_seq=reviews_seq,
    )


def fill(engine: Engine, log: AccessLog, count: int) -> None:
    """`count` entries, one transaction each, as lookups write them."""
    for n in range(count):
        with engine.begin() as connection:
            log.append(connection, [entry(n)], NOW + dt.timedelta(seconds=n))


def tamper(engine: Engine, *statements: str, **params: Any) -> None:
    """Plain SQL, as someone with write access to the database would run it."""
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), params)


def verify(
    engine: Engine,
    keys: dict[str, Any],
    every: int = 1000,
    witnessed: tuple[access_log.SignedHead, ...] = (),
) -> log_verify.Verification:
    with engine.connect() as connection:
        policy = access_log.CheckpointPolicy(every, 30)
        return log_verify.verify(connection, keys, policy, witnessed)


def first_break(engine: Engine, keys: dict[str, Any], every: int = 1000) -> tuple[int, str]:
    result = verify(engine, keys, every)
    assert result.first_break is not None, "verify found no break"
    return result.first_break.seq, result.first_break.kind


def detail(engine: Engine, keys: dict[str, Any], every: int = 1000) -> str:
    found = verify(engine, keys, every).first_break
    assert found is not None, "verify found no break"
    return found.detail


def first_break_of(result: log_verify.Verification) -> tuple[int, str]:
    assert result.first_break is not None, "verify found no break"
    return result.first_break.seq, result.first_break.kind


def row(connection: Connection, seq: int) -> dict[str, Any]:
    found = connection.execute(text("SELECT * FROM access_log WHERE seq = :s"), {"s": seq})
    return dict(found.one()._mapping)


def move(engine: Engine, pairs: list[tuple[int, int]]) -> None:
    """Renumber entries (old seq -> new seq) through negative seqs, so no two collide."""
    with engine.begin() as connection:
        for old, _ in pairs:
            connection.execute(text("UPDATE access_log SET seq = -seq WHERE seq = :o"), {"o": old})
        for old, new in pairs:
            connection.execute(
                text("UPDATE access_log SET seq = :n WHERE seq = :o"), {"o": -old, "n": new}
            )


def insert_raw(connection: Connection, values: dict[str, Any]) -> None:
    connection.execute(
        text(
            "INSERT INTO access_log (seq, entry_time, party_id, outcome, reviews_seq, body,"
            " prev_hash, entry_hash) VALUES (:seq, :entry_time, :party_id, :outcome,"
            " :reviews_seq, :body, :prev_hash, :entry_hash)"
        ),
        values,
    )


# --- appending -------------------------------------------------------------------------------


def test_appends_get_contiguous_seqs_and_a_valid_chain(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any]
) -> None:
    log = AccessLog(signer)
    with engine.begin() as connection:
        assert log.append(connection, [entry(0)], NOW) == [1]
        assert log.append(connection, [entry(1), entry(2), entry(3)], NOW) == [2, 3, 4]
        assert log.append(connection, [], NOW) == []
    with engine.connect() as connection:
        first, second = row(connection, 1), row(connection, 2)
    assert bytes(first["prev_hash"]) == bytes(32)
    assert bytes(second["prev_hash"]) == bytes(first["entry_hash"])
    assert bytes(first["entry_hash"]) == access_log.entry_hash(bytes(32), 1, first["body"])
    result = verify(engine, keys)
    assert result.ok
    assert (result.entries, result.checkpoints, result.last_signed_seq) == (4, 0, 0)


@pytest.mark.parametrize("count", [3, services.common.db.Bulk.COPY_ROWS + 5])
def test_a_batch_of_entries_is_stored_as_given_whichever_way_it_is_written(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any], count: int
) -> None:
    """A few rows go as one executemany, a batch's as a COPY on PostgreSQL: the same rows,
    searchable by every subject value, in one chain."""
    amsterdam = dt.timezone(dt.timedelta(hours=1))
    given = [
        dataclasses.replace(
            entry(n, subject=(bytes([n]) * 32, SUBJECT_A), reviews_seq=n or None),
            time=(NOW + dt.timedelta(seconds=n, microseconds=n)).astimezone(amsterdam),
            body={"reason": "één\\\t\"'", "n": n},
        )
        for n in range(count)
    ]
    with engine.begin() as connection:
        assert AccessLog(signer).append(connection, given, NOW) == list(range(1, count + 1))
    with engine.connect() as connection:
        stored = access_log.search(connection, limit=count + 1)
        assert [e.seq for e in access_log.search(connection, subject=[bytes([2]) * 32])] == [3]
        assert len(access_log.search(connection, subject=[SUBJECT_A], limit=count + 1)) == count
    assert [(e.time, e.reviews_seq, e.body["reason"], e.body["n"]) for e in stored] == [
        (g.time.astimezone(dt.UTC), g.reviews_seq, "één\\\t\"'", n) for n, g in enumerate(given)
    ]
    assert verify(engine, keys).ok


def test_the_body_is_canonical_json_that_carries_time_outcome_and_party(
    engine: Engine, signer: signing.SigningKey
) -> None:
    amsterdam = dt.timezone(dt.timedelta(hours=1))
    review = Entry(
        time=dt.datetime(2026, 11, 28, 12, 0, 0, 5, tzinfo=amsterdam),
        outcome="review",
        party_id="vh-rotterdam-rijnmond",
        body={"reason": "één", "a": 1},
        reviews_seq=7,
    )
    with engine.begin() as connection:
        AccessLog(signer).append(connection, [review], NOW)
        stored = row(connection, 1)
    assert stored["body"] == (
        '{"a":1,"outcome":"review","party_id":"vh-rotterdam-rijnmond","reason":"één",'
        '"reviews_seq":7,"time":"2026-11-28T11:00:00.000005+00:00"}'
    )
    with engine.connect() as connection:
        [found] = access_log.search(connection)
    assert found.time == dt.datetime(2026, 11, 28, 11, 0, 0, 5, tzinfo=dt.UTC)
    assert (found.party_id, found.outcome, found.reviews_seq) == (
        "vh-rotterdam-rijnmond",
        "review",
        7,
    )
    assert found.body == json.loads(stored["body"])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _JSON, max_size=6))
def test_the_canonical_text_is_that_of_json_dumps_sorted_and_compact(body: dict[str, Any]) -> None:
    """The log's older entries were written by json.dumps; what an auditor's tool recomputes
    from the rule (sorted keys, no spaces, non-ASCII as itself) must be what is stored."""
    assert access_log.canonical(body) == json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def test_a_body_with_a_value_json_has_no_type_for_is_refused() -> None:
    for value in (NOW, dataclasses.make_dataclass("D", [])(), b"\x00"):
        with pytest.raises(TypeError):
            Entry(time=NOW, outcome="hit", party_id="p", body={"v": value}).canonical_body()


def test_an_entry_refuses_a_naive_time_a_short_subject_and_a_conflicting_body() -> None:
    with pytest.raises(ValueError, match="aware"):
        Entry(time=NOW.replace(tzinfo=None), outcome="hit", party_id="p", body={})
    with pytest.raises(ValueError, match="32 bytes"):
        Entry(time=NOW, outcome="hit", party_id="p", body={}, subject=(b"x",))
    with pytest.raises(ValueError, match="outcome"):
        Entry(time=NOW, outcome="hit", party_id="p", body={"outcome": "no-hit"}).canonical_body()


def test_a_failed_transaction_logs_nothing(engine: Engine, signer: signing.SigningKey) -> None:
    log = AccessLog(signer)

    def lookup_that_fails() -> None:
        with engine.begin() as connection:
            log.append(connection, [entry(0, subject=(SUBJECT_A,))], NOW)
            raise RuntimeError("the answer could not be sent")

    with pytest.raises(RuntimeError):
        lookup_that_fails()
    with engine.begin() as connection:
        assert log.append(connection, [entry(1)], NOW) == [1]
        assert access_log.search(connection, subject=[SUBJECT_A]) == []


def signed_seqs(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        found = connection.execute(text("SELECT seq FROM access_log_checkpoints ORDER BY seq"))
        return list(found.scalars())


def test_checkpoints_are_signed_every_n_entries_also_inside_a_batch_and_on_request(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any]
) -> None:
    log = AccessLog(signer, checkpoint_every=3)
    fill(engine, log, 7)
    with engine.begin() as connection:
        log.append(connection, [entry(n) for n in range(5)], NOW)  # 8..12: at 9 and at 12
        assert log.checkpoint(connection, NOW) == 12  # signed already
        log.append(connection, [entry(13)], NOW)
        assert log.checkpoint(connection, NOW) == 13
    assert signed_seqs(engine) == [3, 6, 9, 12, 13]
    result = verify(engine, keys, every=3)
    assert result.ok
    assert (result.entries, result.checkpoints, result.last_signed_seq) == (13, 5, 13)


def test_the_head_is_signed_before_an_entry_more_than_t_seconds_after_its_run_began(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any]
) -> None:
    log = AccessLog(signer, checkpoint_every=1000, checkpoint_seconds=30)
    with engine.begin() as connection:
        for offset in (0, 10, 30, 31, 40, 61, 62):  # 30 s after the first is still in its run
            at = NOW + dt.timedelta(seconds=offset)
            log.append(connection, [entry(offset)], at)
        # A batch spanning a quiet spell: signed before the entry that falls outside the run.
        late = [entry(200), entry(201), entry(260)]
        log.append(connection, late, NOW + dt.timedelta(seconds=260))
    assert signed_seqs(engine) == [3, 6, 7, 9]
    assert verify(engine, keys).ok


def test_two_processes_appending_in_turn_keep_the_runs_short(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any]
) -> None:
    # Each AccessLog stands for a registry instance on the same database.
    first, second = (AccessLog(signer, checkpoint_every=4, checkpoint_seconds=30) for _ in "ab")
    for n in range(20):
        with engine.begin() as connection:
            (first if n % 3 else second).append(connection, [entry(n)], NOW)
    for n in range(6):  # 20 s apart: a run holds two
        with engine.begin() as connection:
            (first if n % 2 else second).append(connection, [entry(1000 + 20 * n)], NOW)
    result = verify(engine, keys, every=4)
    assert result.ok
    assert signed_seqs(engine) == [4, 8, 12, 16, 20, 22, 24]


def test_a_rolled_back_checkpoint_is_signed_again_by_the_next_append(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any]
) -> None:
    log = AccessLog(signer, checkpoint_every=2)
    fill(engine, log, 1)

    def append_that_fails() -> None:
        with engine.begin() as connection:
            log.append(connection, [entry(1)], NOW)  # signs entry 2, then rolls back
            raise RuntimeError("the answer could not be sent")

    with pytest.raises(RuntimeError):
        append_that_fails()
    fill(engine, log, 3)
    assert signed_seqs(engine) == [2, 4]
    assert verify(engine, keys, every=2).ok


def test_a_checkpoint_of_an_empty_log_signs_nothing(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any]
) -> None:
    with engine.begin() as connection:
        assert AccessLog(signer).checkpoint(connection, NOW) is None
    assert verify(engine, keys) == log_verify.Verification(0, 0, 0, None)


def test_concurrent_appends_from_threads_keep_one_unbroken_chain(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any]
) -> None:
    log = AccessLog(signer, checkpoint_every=10)
    threads, per_thread = 8, 25
    got: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            start.wait()
            for n in range(per_thread):
                with engine.begin() as connection:
                    seqs = log.append(connection, [entry(n, party=f"p{t}")], NOW)
                with lock:
                    got.extend(seqs)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert sorted(got) == list(range(1, threads * per_thread + 1))
    result = verify(engine, keys)
    assert result.ok
    assert (result.entries, result.last_signed_seq) == (200, 200)


# --- search -----------------------------------------------------------------------------------


@pytest.fixture
def searchable(engine: Engine, signer: signing.SigningKey) -> Engine:
    log = AccessLog(signer)
    with engine.begin() as connection:
        log.append(
            connection,
            [
                entry(0, party="zsm-a", subject=(SUBJECT_A, SUBJECT_A)),
                entry(60, party="zsm-b", subject=(SUBJECT_B,), outcome="no-hit"),
                entry(120, party="zsm-a", subject=(SUBJECT_A, SUBJECT_B)),
                entry(180, party="vh-x", outcome="break-glass", subject=(SUBJECT_C,)),
                entry(240, party="zsm-a", outcome="no-hit"),
            ],
            NOW,
        )
    return engine


def seqs(engine: Engine, **criteria: Any) -> list[int]:
    with engine.connect() as connection:
        return [e.seq for e in access_log.search(connection, **criteria)]


def test_search_finds_entries_naming_any_of_the_subject_values(searchable: Engine) -> None:
    assert seqs(searchable, subject=[SUBJECT_A]) == [1, 3]
    assert seqs(searchable, subject=[SUBJECT_A, SUBJECT_B]) == [1, 2, 3]
    assert seqs(searchable, subject=[b"\x00" * 32]) == []


def test_search_by_party_time_and_outcome_combines_the_criteria(searchable: Engine) -> None:
    assert seqs(searchable, party_id="zsm-a") == [1, 3, 5]
    assert seqs(searchable, outcome="no-hit") == [2, 5]
    assert seqs(searchable, party_id="zsm-a", outcome="no-hit") == [5]
    one_minute = NOW + dt.timedelta(seconds=60)
    assert seqs(searchable, start=one_minute, end=NOW + dt.timedelta(seconds=180)) == [2, 3]
    amsterdam = dt.timezone(dt.timedelta(hours=1))
    assert seqs(searchable, start=one_minute.astimezone(amsterdam), party_id="zsm-a") == [3, 5]
    assert seqs(searchable, subject=[SUBJECT_B], party_id="zsm-a") == [3]


def test_search_pages_by_seq(searchable: Engine) -> None:
    assert seqs(searchable, limit=2) == [1, 2]
    assert seqs(searchable, after_seq=2, limit=2) == [3, 4]
    assert seqs(searchable, after_seq=4, limit=2) == [5]


def test_pending_reviews_lists_break_glass_entries_nobody_reviewed(
    engine: Engine, signer: signing.SigningKey
) -> None:
    log = AccessLog(signer)
    with engine.begin() as connection:
        log.append(
            connection,
            [entry(0, outcome="break-glass"), entry(1), entry(2, outcome="break-glass")],
            NOW,
        )
        assert [e.seq for e in access_log.pending_reviews(connection)] == [1, 3]
        log.append(connection, [entry(3, outcome="review", party="auditor", reviews_seq=1)], NOW)
        assert [e.seq for e in access_log.pending_reviews(connection)] == [3]
        log.append(connection, [entry(4, outcome="review", party="auditor", reviews_seq=3)], NOW)
        assert access_log.pending_reviews(connection) == []


# --- tampering --------------------------------------------------------------------------------


@pytest.fixture
def chain(engine: Engine, signer: signing.SigningKey, keys: dict[str, Any]) -> Engine:
    """Ten entries, checkpoints at 5 and 10, verified intact."""
    fill(engine, AccessLog(signer, checkpoint_every=5), 10)
    assert verify(engine, keys).ok
    return engine


def test_verify_names_an_altered_body(chain: Engine, keys: dict[str, Any]) -> None:
    tamper(chain, "UPDATE access_log SET body = replace(body, '\"r3\"', '\"r9\"') WHERE seq = 4")
    assert first_break(chain, keys) == (4, "altered")


def test_verify_names_an_altered_search_column(chain: Engine, keys: dict[str, Any]) -> None:
    tamper(chain, "UPDATE access_log SET party_id = 'zsm-other' WHERE seq = 4")
    assert first_break(chain, keys) == (4, "altered")


def test_verify_names_an_altered_entry_time_column(chain: Engine, keys: dict[str, Any]) -> None:
    # 'yesterday' is a time to PostgreSQL, and text SQLAlchemy cannot read to SQLite.
    tamper(chain, "UPDATE access_log SET entry_time = 'yesterday' WHERE seq = 7")
    assert first_break(chain, keys) == (7, "altered")


def test_verify_names_an_altered_entry_whose_hash_was_recomputed(
    chain: Engine, keys: dict[str, Any]
) -> None:
    with chain.begin() as connection:
        stored = row(connection, 7)
        body = stored["body"].replace('"r6"', '"r0"')
        new_hash = access_log.entry_hash(bytes(stored["prev_hash"]), 7, body)
        connection.execute(
            text("UPDATE access_log SET body = :b, entry_hash = :h WHERE seq = 7"),
            {"b": body, "h": new_hash},
        )
    assert first_break(chain, keys) == (7, "altered")


def test_verify_names_a_deleted_entry(chain: Engine, keys: dict[str, Any]) -> None:
    tamper(chain, "DELETE FROM access_log WHERE seq = 4")
    assert first_break(chain, keys) == (4, "deleted")
    assert detail(chain, keys) == "entry 4 is missing"


def test_verify_names_deleted_entries_in_one_phrase(chain: Engine, keys: dict[str, Any]) -> None:
    tamper(chain, "DELETE FROM access_log WHERE seq IN (1, 2, 3)")
    assert first_break(chain, keys) == (1, "deleted")
    assert detail(chain, keys) == "entries 1 to 3 are missing"


def test_verify_names_a_deleted_first_entry(chain: Engine, keys: dict[str, Any]) -> None:
    tamper(chain, "DELETE FROM access_log WHERE seq = 1")
    assert first_break(chain, keys) == (1, "deleted")


def test_verify_names_a_deleted_entry_whose_gap_was_closed(
    chain: Engine, keys: dict[str, Any]
) -> None:
    tamper(chain, "DELETE FROM access_log WHERE seq = 4")
    move(chain, [(s, s - 1) for s in range(5, 11)])
    assert first_break(chain, keys) == (4, "deleted")


def test_verify_names_an_inserted_entry_that_links_correctly(
    chain: Engine, keys: dict[str, Any]
) -> None:
    move(chain, [(s, s + 1) for s in range(4, 11)])
    with chain.begin() as connection:
        forged = Entry(time=NOW, outcome="no-hit", party_id="zsm-x", body={"request_id": "x"})
        body = forged.canonical_body()
        prev = bytes(row(connection, 3)["entry_hash"])
        insert_raw(
            connection,
            {
                "seq": 4,
                "entry_time": NOW,
                "party_id": "zsm-x",
                "outcome": "no-hit",
                "reviews_seq": None,
                "body": body,
                "prev_hash": prev,
                "entry_hash": access_log.entry_hash(prev, 4, body),
            },
        )
    assert first_break(chain, keys) == (4, "inserted")


def test_verify_names_an_inserted_entry_that_does_not_fit(
    chain: Engine, keys: dict[str, Any]
) -> None:
    move(chain, [(s, s + 1) for s in range(4, 11)])
    with chain.begin() as connection:
        copy = row(connection, 2)
        insert_raw(connection, {**copy, "seq": 4, "prev_hash": b"\x01" * 32})
    assert first_break(chain, keys) == (4, "inserted")


def test_verify_names_an_entry_before_the_first_as_inserted(
    chain: Engine, keys: dict[str, Any]
) -> None:
    with chain.begin() as connection:
        insert_raw(connection, {**row(connection, 1), "seq": 0})
    assert first_break(chain, keys) == (0, "inserted")


def test_verify_names_swapped_entries_as_reordered(chain: Engine, keys: dict[str, Any]) -> None:
    move(chain, [(4, 7), (7, 4)])
    assert first_break(chain, keys) == (4, "reordered")


def test_verify_names_swapped_neighbours_as_reordered(chain: Engine, keys: dict[str, Any]) -> None:
    move(chain, [(6, 7), (7, 6)])
    assert first_break(chain, keys) == (6, "reordered")


def test_verify_names_swapped_bodies_and_hashes_as_reordered(
    chain: Engine, keys: dict[str, Any]
) -> None:
    with chain.begin() as connection:
        three, eight = row(connection, 3), row(connection, 8)
        for seq, other in ((3, eight), (8, three)):
            connection.execute(
                text("UPDATE access_log SET body = :b, entry_hash = :h WHERE seq = :s"),
                {"b": other["body"], "h": other["entry_hash"], "s": seq},
            )
    assert first_break(chain, keys) == (3, "reordered")


def test_verify_names_a_truncated_tail_after_a_checkpoint(
    chain: Engine, keys: dict[str, Any]
) -> None:
    tamper(chain, "DELETE FROM access_log WHERE seq > 7")
    assert first_break(chain, keys) == (8, "truncated")
    assert verify(chain, keys).last_signed_seq == 5


def test_verify_names_a_run_longer_than_n_entries_as_a_missing_checkpoint(
    chain: Engine, keys: dict[str, Any]
) -> None:
    tamper(chain, "DELETE FROM access_log_checkpoints WHERE seq = 5")
    assert first_break(chain, keys, every=5) == (5, "unsigned")
    assert detail(chain, keys, every=5) == (
        "no checkpoint signs entries 1 to 6: one is due every 5 entries, at entry 5 at the "
        "latest; checkpoints were deleted"
    )


def test_verify_names_a_run_longer_than_t_seconds_as_a_missing_checkpoint(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any]
) -> None:
    log = AccessLog(signer, checkpoint_seconds=30)
    for n in range(6):
        with engine.begin() as connection:
            log.append(connection, [entry(10 * n)], NOW)
    assert signed_seqs(engine) == [4]
    assert verify(engine, keys).ok

    tamper(engine, "DELETE FROM access_log_checkpoints")

    assert first_break(engine, keys) == (4, "unsigned")
    assert detail(engine, keys) == (
        "no checkpoint between entries 1 to 4 and entry 5, written 40 s apart: one is due "
        "within 30 s of a run's first entry; checkpoints were deleted"
    )


def heads(engine: Engine) -> list[access_log.SignedHead]:
    """Every checkpoint as the witness would have kept it."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT seq FROM access_log_checkpoints ORDER BY seq"))
        kept = []
        for seq in rows.scalars().all():
            head = access_log.signed_head(connection, seq)
            assert head is not None
            kept.append(head)
    return kept


def test_a_witness_head_names_a_tail_cut_with_its_checkpoints(
    chain: Engine, keys: dict[str, Any]
) -> None:
    seen = tuple(heads(chain))
    tamper(
        chain,
        "DELETE FROM access_log WHERE seq > 5",
        "DELETE FROM access_log_checkpoints WHERE seq > 5",
    )
    assert verify(chain, keys).ok  # what the database alone shows
    result = verify(chain, keys, witnessed=seen)
    assert result.first_break == log_verify.Break(
        6,
        "truncated",
        f"the log ends at #5 but the witness saw a signed head at #10 "
        f"({seen[1].signed_time.isoformat(timespec='seconds')}): entries 6 to 10 were cut off",
    )
    assert result.witnessed_seq == 5


def test_a_witness_head_names_a_chain_rewritten_and_re_signed_with_the_signing_key(
    chain: Engine, signer: signing.SigningKey, keys: dict[str, Any]
) -> None:
    seen = tuple(heads(chain))
    with chain.begin() as connection:  # entry 7 deleted, the rest renumbered, re-hashed, re-signed
        kept = [row(connection, seq) for seq in range(1, 11) if seq != 7]
        connection.execute(text("DELETE FROM access_log"))
        connection.execute(text("DELETE FROM access_log_checkpoints"))
    rewrite = AccessLog(signer, checkpoint_every=5)
    for stored in kept:
        body = json.loads(stored["body"])
        forged = Entry(
            time=dt.datetime.fromisoformat(body["time"]),
            outcome=body["outcome"],
            party_id=body["party_id"],
            body=body,
        )
        with chain.begin() as connection:
            rewrite.append(connection, [forged], NOW)
    with chain.begin() as connection:  # and the registry writes on
        rewrite.append(connection, [entry(99)], NOW)
        rewrite.checkpoint(connection, NOW)
    assert verify(chain, keys).ok  # the signing key was stolen: the database alone shows nothing

    result = verify(chain, keys, witnessed=seen)

    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.kind) == (10, "rewritten")
    assert result.first_break.detail.startswith(
        "entry #10's hash differs from the head the witness saw at "
    )
    assert result.first_break.detail.endswith(
        "the chain up to #10 was rewritten after #5, the last head the witness saw that still "
        "matches"
    )


def test_a_witness_head_that_does_not_verify_is_named(chain: Engine, keys: dict[str, Any]) -> None:
    forged = dataclasses.replace(heads(chain)[0], signature=bytes(64))
    assert first_break_of(verify(chain, keys, witnessed=(forged,))) == (5, "witness")


def test_verify_names_a_forged_checkpoint_signature(chain: Engine, keys: dict[str, Any]) -> None:
    tamper(chain, "UPDATE access_log_checkpoints SET signature = :s WHERE seq = 5", s=bytes(64))
    assert first_break(chain, keys) == (5, "checkpoint")
    assert verify(chain, keys).last_signed_seq == 10
    tamper(chain, "UPDATE access_log_checkpoints SET signed_time = 'yesterday' WHERE seq = 10")
    assert first_break(chain, keys) == (5, "checkpoint")
    assert verify(chain, keys).last_signed_seq == 0


def test_verify_names_a_checkpoint_signed_by_an_unknown_key(
    chain: Engine, keys: dict[str, Any]
) -> None:
    with chain.begin() as connection:
        AccessLog(signing.generate("cp-other")).append(connection, [entry(10)], NOW)
        AccessLog(signing.generate("cp-other")).checkpoint(connection, NOW)
    assert first_break(chain, keys) == (11, "checkpoint")


def test_verify_names_a_chain_rewritten_after_signing_at_its_checkpoint(
    chain: Engine, keys: dict[str, Any]
) -> None:
    with chain.begin() as connection:
        prev = bytes(row(connection, 2)["entry_hash"])
        for seq in range(3, 11):
            body = row(connection, seq)["body"]
            if seq == 3:
                body = body.replace('"r2"', '"r0"')
            prev = access_log.entry_hash(prev, seq, body)
            connection.execute(
                text(
                    "UPDATE access_log SET body = :b, prev_hash = :p, entry_hash = :h"
                    " WHERE seq = :s"
                ),
                {"b": body, "p": row(connection, seq - 1)["entry_hash"], "h": prev, "s": seq},
            )
    assert first_break(chain, keys) == (5, "checkpoint")


def test_verify_reads_the_log_in_chunks(
    chain: Engine, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_verify, "VERIFY_CHUNK", 3)
    assert verify(chain, keys) == log_verify.Verification(10, 2, 10, None, 10)
    tamper(chain, "DELETE FROM access_log WHERE seq = 7")
    assert first_break(chain, keys) == (7, "deleted")


def test_a_break_detail_names_seqs_but_no_entry_content(
    chain: Engine, keys: dict[str, Any]
) -> None:
    tamper(chain, "UPDATE access_log SET body = replace(body, 'zsm-rotterdam', 'zsm-x')")
    result = verify(chain, keys)
    assert result.first_break is not None
    assert "entry 1" in result.first_break.detail
    assert "zsm" not in result.first_break.detail


# --- signing keys -----------------------------------------------------------------------------


def test_a_saved_signing_key_loads_back_and_its_public_file_verifies(tmp_path: Path) -> None:
    key = signing.generate("cp2026-11")
    path = tmp_path / "keys" / "checkpoint.key"
    signing.save(key, path)
    loaded = signing.load(path)
    assert loaded.key_id == "cp2026-11"
    assert loaded.public_pem() == key.public_pem()
    public = signing.load_public_keys([tmp_path / "keys" / "checkpoint.pub"])
    public["cp2026-11"].verify(loaded.sign(b"message"), b"message")


def test_the_private_key_file_is_owner_only_and_the_public_file_readable(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.key"
    path.write_text("{}")
    path.chmod(0o644)
    signing.save(signing.generate("cp1"), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "checkpoint.pub").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.key", "checkpoint.pub"]


def test_load_or_create_creates_a_key_once_and_then_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.key"
    first = signing.load_or_create(path, "k2026-11")
    assert (tmp_path / "checkpoint.pub").exists()
    again = signing.load_or_create(path, "k2026-12")  # a restart in a later month
    assert (again.key_id, again.public_pem()) == ("k2026-11", first.public_pem())


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"key_id": "cp1"}',
        '{"key_id": "cp1", "private_pem": "-----BEGIN PRIVATE KEY-----\\nAAAA\\n"}',
        '{"key_id": "Not An Id", "private_pem": "x"}',
    ],
)
def test_a_corrupt_key_file_is_an_error_naming_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "checkpoint.key"
    path.write_text(content)
    with pytest.raises(SigningKeyError, match=str(path)) as caught:
        signing.load(path)
    assert "AAAA" not in str(caught.value)


def test_a_missing_or_mismatched_public_key_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="no such key file"):
        signing.load_public_keys([tmp_path / "absent.pub"])
    signing.save(signing.generate("cp1"), tmp_path / "a.key")
    signing.save(signing.generate("cp1"), tmp_path / "b.key")
    with pytest.raises(SigningKeyError, match=r"b\.pub: another file holds a different key"):
        signing.load_public_keys([tmp_path / "a.pub", tmp_path / "b.pub"])


def test_a_signing_key_never_shows_its_private_key() -> None:
    key = signing.generate("cp1")
    assert "cp1" in repr(key)
    assert "PRIVATE" not in repr(key)
    assert "private=" not in repr(key)


@pytest.mark.parametrize(
    "statement",
    [
        # Deleting an entry's index rows would hide it from a data-subject report.
        "DELETE FROM access_log_subjects WHERE seq = 2",
        # An index row naming another person would put the entry in that person's report.
        "UPDATE access_log_subjects SET value = :other WHERE seq = 2",
    ],
)
def test_verify_names_an_entry_whose_subject_index_was_changed(
    engine: Engine, signer: signing.SigningKey, keys: dict[str, Any], statement: str
) -> None:
    log = AccessLog(signer)
    for n in range(3):
        with engine.begin() as connection:
            log.append(connection, [entry(n, subject=(SUBJECT_A,))], NOW)
    assert verify(engine, keys).ok

    tamper(engine, statement, **({"other": SUBJECT_B} if ":other" in statement else {}))

    assert first_break(engine, keys) == (2, "altered")
