"""Expiry of the access log (docs/RETENTION.md): old entries go a signed segment at a time, the
rest still verifies (with the witness's heads too), a boundary nobody signed does not, and no
entry younger than the period goes. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from builders import NOW
from sqlalchemy import Engine, text

import services.common.db
from services.accesslog import signing
from services.accesslog import store as access_log
from services.accesslog import verify as log_verify
from services.accesslog.store import AccessLog, Entry, Expired
from services.registry.server import MIGRATIONS

MINUTE = dt.timedelta(minutes=1)
POLICY = access_log.CheckpointPolicy(5, 1e9)


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


@pytest.fixture
def log(signer: signing.SigningKey) -> AccessLog:
    return AccessLog(signer, checkpoint_every=POLICY.every, checkpoint_seconds=POLICY.seconds)


def entry(minutes: int, outcome: str = "hit") -> Entry:
    time = NOW + minutes * MINUTE
    return Entry(
        time=time, outcome=outcome, party_id="zsm-rotterdam", body={}, subject=(b"a" * 32,)
    )


def fill(engine: Engine, log: AccessLog, minutes: list[int], outcome: str = "hit") -> None:
    for m in minutes:
        with engine.begin() as connection:
            log.append(connection, [entry(m, outcome)], NOW + m * MINUTE)


def expire(engine: Engine, log: AccessLog, before_minutes: int) -> Expired | None:
    with engine.begin() as connection:
        return log.expire(connection, NOW + before_minutes * MINUTE, NOW + 1000 * MINUTE)


def verify(
    engine: Engine, keys: dict[str, Any], witnessed: tuple[access_log.SignedHead, ...] = ()
) -> log_verify.Verification:
    with engine.connect() as connection:
        return log_verify.verify(connection, keys, POLICY, witnessed)


def seqs(engine: Engine, table: str = "access_log") -> list[int]:
    with engine.connect() as connection:
        query = text(f"SELECT seq FROM {table} ORDER BY seq")  # noqa: S608 (a table of ours)
        return list(connection.execute(query).scalars())


def heads(engine: Engine) -> tuple[access_log.SignedHead, ...]:
    with engine.connect() as connection:
        found = [
            access_log.signed_head(connection, seq)
            for seq in seqs(engine, "access_log_checkpoints")
        ]
    return tuple(h for h in found if h is not None)


def test_a_period_goes_up_to_the_last_checkpoint_before_it_and_the_rest_verifies(
    engine: Engine, log: AccessLog, keys: dict[str, Any]
) -> None:
    fill(engine, log, list(range(20)))  # checkpoints at 5, 10, 15, 20
    seen = heads(engine)

    assert expire(engine, log, 12) == Expired(1, 10, NOW + 12 * MINUTE)

    assert seqs(engine) == list(range(11, 21))  # 11 and 12 are old too, but no checkpoint signs 12
    assert seqs(engine, "access_log_subjects") == list(range(11, 21))
    assert seqs(engine, "access_log_checkpoints") == [10, 15, 20]
    result = verify(engine, keys)
    assert result.ok, result.first_break
    assert (result.entries, result.expired_seq, result.last_signed_seq) == (10, 10, 20)
    assert result.expired_before == NOW + 12 * MINUTE
    witnessed = verify(engine, keys, seen)
    assert witnessed.ok, witnessed.first_break
    assert witnessed.witnessed_seq == 20


def test_the_log_goes_on_after_an_expiry_and_expires_again(
    engine: Engine, signer: signing.SigningKey, log: AccessLog, keys: dict[str, Any]
) -> None:
    fill(engine, log, list(range(12)))
    assert expire(engine, log, 12) == Expired(1, 10, NOW + 12 * MINUTE)
    assert expire(engine, log, 12) is None  # nothing more is signed and old
    fill(engine, log, list(range(12, 30)))
    restarted = AccessLog(signer, checkpoint_every=5, checkpoint_seconds=1e9)
    fill(engine, restarted, [30, 31])
    assert expire(engine, restarted, 26) == Expired(11, 25, NOW + 26 * MINUTE)
    result = verify(engine, keys)
    assert result.ok, result.first_break
    assert (result.entries, result.expired_seq, result.last_seq) == (7, 25, 32)


def test_an_entry_younger_than_the_period_is_never_removed(
    engine: Engine, log: AccessLog, keys: dict[str, Any]
) -> None:
    fill(engine, log, [0, 1, 500, 2, 3, 4, 5, 6, 7, 8])  # entry 3 is young
    assert expire(engine, log, 100) is None
    assert seqs(engine) == list(range(1, 11))
    fill(engine, log, [9, 10, 11, 12, 13])
    assert expire(engine, log, 600) == Expired(1, 15, NOW + 600 * MINUTE)


def test_an_unreviewed_break_glass_entry_holds_expiry_back(
    engine: Engine, log: AccessLog, keys: dict[str, Any]
) -> None:
    fill(engine, log, [0, 1, 2])
    fill(engine, log, [3], outcome="break-glass")
    fill(engine, log, list(range(4, 15)))
    assert expire(engine, log, 100) is None  # checkpoints at 5, 10, 15: all after entry 4
    with engine.begin() as connection:
        review = Entry(
            time=NOW + 15 * MINUTE, outcome="review", party_id="privacy", body={}, reviews_seq=4
        )
        log.append(connection, [review], NOW + 15 * MINUTE)
    assert expire(engine, log, 100) == Expired(1, 15, NOW + 100 * MINUTE)
    assert verify(engine, keys).ok


def test_entries_cut_and_called_expiry_without_the_key_do_not_verify(
    engine: Engine, log: AccessLog, keys: dict[str, Any]
) -> None:
    fill(engine, log, list(range(20)))
    with engine.begin() as connection:  # a boundary forged by whoever holds the database
        connection.execute(
            text("INSERT INTO access_log_expiries VALUES (15, :h, :t, :t, 'cp1', :s)"),
            {"h": heads(engine)[2].entry_hash, "t": NOW, "s": bytes(64)},
        )
        connection.execute(text("DELETE FROM access_log_subjects WHERE seq <= 15"))
        connection.execute(text("DELETE FROM access_log WHERE seq <= 15"))
    result = verify(engine, keys)
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.kind) == (1, "deleted")
    assert not result.expired_seq
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM access_log_expiries"))
    assert verify(engine, keys).first_break == log_verify.Break(
        1, "deleted", "entries 1 to 15 are missing"
    )


def test_recent_entries_cut_behind_a_real_boundary_do_not_verify(
    engine: Engine, log: AccessLog, keys: dict[str, Any]
) -> None:
    fill(engine, log, list(range(20)))
    assert expire(engine, log, 12) == Expired(1, 10, NOW + 12 * MINUTE)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM access_log_subjects WHERE seq <= 15"))
        connection.execute(text("DELETE FROM access_log WHERE seq <= 15"))
    assert verify(engine, keys).first_break == log_verify.Break(
        11, "deleted", "entries 11 to 15 are missing"
    )
    with engine.begin() as connection:  # the real boundary moved up to the cut
        connection.execute(
            text("UPDATE access_log_expiries SET seq = 15, entry_hash = :h"),
            {"h": heads(engine)[1].entry_hash},
        )
    result = verify(engine, keys)  # the moved boundary's signature fails: walked from entry 1
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.kind) == (1, "deleted")
