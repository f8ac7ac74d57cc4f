"""The access log rewritten by someone who holds the database (a copy of a stopped registry's
data dir, or write access to its PostgreSQL schema), as issue 14 measured it; each rewrite now
fails `baken audit verify` with a message that names it. Also: where the signing key may lie,
the timer that signs a quiet head, and the privacy officer's witness. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from builders import Marking, Person, subject, valid_bsns
from harness import RunningRegistry, lookup_request, running_registry, secure_channel
from sqlalchemy import Engine, select, text

from baken import logs
from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.clock import FixedClock
from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2_grpc
from baken.type.v1 import purpose_pb2
from cli.main import main
from cli.witness import FILE
from dev.topology import free_port
from services.accesslog import signing
from services.accesslog import store as access_log
from services.accesslog.signing import SigningKeyError, public_path
from services.accesslog.store import AccessLog, Entry, checkpoint_message
from services.common import db
from services.common.settings import FeedbackSettings, RegistrySettings, default_signing_key
from services.feedback.server import create_server as create_feedback
from services.registry.server import create_server

_bsns = valid_bsns(27_041_965)
MARKED = Person(bsn=next(_bsns))
UNKNOWN = Person(bsn=next(_bsns))
OVJ = "zsm-midden-nederland-ovj"
REASON = "spoedzitting: eerdere afspraken met het Veiligheidshuis nodig"
# Look-ups 10 s apart: the registry signs every fourth (a run spans at most 30 s).
APART = dt.timedelta(seconds=10)


@pytest.fixture(autouse=True)
def _logs_to_stderr() -> Iterator[None]:
    logs.configure(json=True)
    yield
    structlog.reset_defaults()


@dataclass
class Stopped:
    """A stopped registry's data as someone who holds the database sees it."""

    url: str  # SQLite: a copy of the data dir's database; PostgreSQL: the schema itself
    data_dir: Path  # the copy of the data dir (SQLite)
    engine: Engine
    settings: RegistrySettings
    public_key: Path  # the auditor's copy of the public key, handed over out of band
    witness: Path  # the privacy officer's witness store
    glass: int  # the break-glass entry

    def verify(self, *extra: str) -> int:
        return main(
            ["audit", "verify", "--database-url", self.url,
             "--public-key", str(self.public_key), *extra]
        )  # fmt: skip


def witness_once(registry: RunningRegistry, public_key: Path, store: Path, *extra: str) -> int:
    return main(
        ["audit", "witness", "--once", "--store", str(store), "--public-key", str(public_key),
         "--target", f"127.0.0.1:{registry.port}", "--pki-dir", str(registry.pki_dir), *extra]
    )  # fmt: skip


def auditor_copy(settings: RegistrySettings, tmp_path: Path) -> Path:
    """The public key as the auditors received it when the registry was set up."""
    copy = tmp_path / "auditor" / "registry.pub"
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(public_path(settings.resolved_audit_signing_key()), copy)
    return copy


@pytest.fixture
def stopped(
    database_url: str,
    tmp_path: Path,
    clock: FixedClock,
    engines: Callable[[str], Engine],
    pki_dir: Path,
    ring: KeyRing,
) -> Stopped:
    """A night of look-ups with a break-glass in the middle, the witness asking now and then,
    then a clean stop."""
    with running_registry(database_url, tmp_path, clock, engines, pki_dir) as registry:
        public_key = auditor_copy(registry.settings, tmp_path)
        registry.sync(Marking(MARKED, "pga-1").upsert(ring))
        for n in range(24):
            if n == 12:
                glass = registry.lookup(
                    subject(ring, Person(bsn=MARKED.bsn)),
                    party=OVJ,
                    purpose=purpose_pb2.PURPOSE_AFDOENINGSBESLISSING,
                    case_reference="PN-2026-000123",
                    on_behalf_of="ovj-0007",
                    break_glass_reason=REASON,
                ).access_log_entry
            else:
                registry.lookup(subject(ring, UNKNOWN))
            clock.advance(APART)
            if n % 8 == 7:
                assert witness_once(registry, public_key, tmp_path / "witness") == 0
        settings = registry.settings
    url = settings.resolved_database_url()
    copy = tmp_path / "copy"
    if url.startswith("sqlite"):
        shutil.copytree(settings.data_dir, copy)
        url = db.sqlite_url(copy, "registry.db")
    return Stopped(url, copy, engines(url), settings, public_key, tmp_path / "witness", glass)


def rewrite(engine: Engine, drop: int, sign_with: signing.SigningKey | None = None) -> None:
    """Delete entry `drop`, renumber the entries after it and re-hash the whole chain, as plain
    SQL; delete every checkpoint, or sign one at every entry anew with `sign_with`."""
    with engine.begin() as connection:
        found = connection.execute(text("SELECT * FROM access_log ORDER BY seq"))
        rows = [dict(r._mapping) for r in found]
        named = connection.execute(text("SELECT value, seq FROM access_log_subjects")).all()
        signals = [dict(r._mapping) for r in connection.execute(text("SELECT * FROM signals"))]
        for table in ("signals", "access_log_subjects", "access_log_checkpoints", "access_log"):
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608
        renumbered: dict[int, int] = {}
        prev = access_log.GENESIS
        for row in rows:
            if row["seq"] == drop:
                continue
            seq = renumbered[row["seq"]] = len(renumbered) + 1
            hash_ = access_log.entry_hash(prev, seq, row["body"])
            connection.execute(
                text(
                    "INSERT INTO access_log (seq, entry_time, party_id, outcome, reviews_seq,"
                    " body, prev_hash, entry_hash) VALUES (:seq, :entry_time, :party_id,"
                    " :outcome, :reviews_seq, :body, :prev_hash, :entry_hash)"
                ),
                {**row, "seq": seq, "prev_hash": prev, "entry_hash": hash_},
            )
            if sign_with is not None:
                at = access_log.raw_time(row["entry_time"])
                assert at is not None
                connection.execute(
                    text(
                        "INSERT INTO access_log_checkpoints (seq, entry_hash, signed_time,"
                        " key_id, signature) VALUES (:seq, :hash, :at, :key_id, :signature)"
                    ),
                    {
                        "seq": seq,
                        "hash": hash_,
                        "at": at,
                        "key_id": sign_with.key_id,
                        "signature": sign_with.sign(checkpoint_message(seq, hash_, at)),
                    },
                )
            prev = hash_
        for value, seq in named:
            if seq in renumbered:
                connection.execute(
                    text("INSERT INTO access_log_subjects (value, seq) VALUES (:v, :s)"),
                    {"v": value, "s": renumbered[seq]},
                )
        for signal in signals:
            if signal["access_log_seq"] in renumbered:
                signal["access_log_seq"] = renumbered[signal["access_log_seq"]]
                names = ", ".join(signal)
                values = ", ".join(f":{name}" for name in signal)
                connection.execute(text(f"INSERT INTO signals ({names}) VALUES ({values})"), signal)  # noqa: S608


def outcome_at(engine: Engine, seq: int) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(
                text("SELECT outcome FROM access_log WHERE seq = :s"), {"s": seq}
            ).scalar_one()
        )


# --- the three measured rewrites ------------------------------------------------------------------


def test_a_break_glass_entry_deleted_with_the_chain_rehashed_and_the_checkpoints_deleted_fails(
    stopped: Stopped, capsys: pytest.CaptureFixture[str]
) -> None:
    assert outcome_at(stopped.engine, stopped.glass) == "break-glass"
    assert stopped.verify() == 0
    capsys.readouterr()

    rewrite(stopped.engine, drop=stopped.glass)

    assert stopped.verify() == 1
    out, err = capsys.readouterr()
    assert "OK" not in out
    assert (
        "BROKEN at #4: unsigned: no checkpoint between entries 1 to 4 and entry 5, written 40 s "
        "apart: one is due within 30 s of a run's first entry; checkpoints were deleted "
        "(23 entries, 0 checkpoints)"
    ) in err


def test_the_same_rewrite_re_signed_with_a_key_of_the_attackers_own_fails(
    stopped: Stopped, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing in the data dir signs: the registry keeps its key elsewhere.
    assert [p.name for p in stopped.data_dir.rglob("*") if p.suffix in (".key", ".pub")] == []
    with stopped.engine.connect() as connection:
        key_id = connection.execute(select(access_log.checkpoints.c.key_id)).scalars().first()
    assert key_id
    forged = signing.generate(key_id)  # the same key id, so only the key itself differs
    signing.save(forged, stopped.data_dir / "audit-signing.key")  # where verify once looked

    rewrite(stopped.engine, drop=stopped.glass, sign_with=forged)

    assert stopped.verify() == 1
    err = capsys.readouterr().err
    assert f"BROKEN at #1: checkpoint: checkpoint 1: the signature of {key_id!r} is bad" in err
    # verify takes no key it is not given: without the auditor's, it does not start.
    with pytest.raises(SystemExit):
        main(["audit", "verify", "--database-url", stopped.url])
    assert "the following arguments are required: --public-key" in capsys.readouterr().err


def test_the_same_rewrite_re_signed_with_the_stolen_signing_key_fails_against_the_witness(
    stopped: Stopped, capsys: pytest.CaptureFixture[str]
) -> None:
    stolen = signing.load(stopped.settings.resolved_audit_signing_key())

    rewrite(stopped.engine, drop=stopped.glass, sign_with=stolen)

    assert stopped.verify() == 0  # with the key itself, the database alone shows nothing
    capsys.readouterr()
    assert stopped.verify("--witness", str(stopped.witness)) == 1
    err = capsys.readouterr().err
    # The witness saw the heads at #4, #12 and #20; the break-glass entry was #13.
    assert "BROKEN at #20: rewritten: entry #20's hash differs from the head the witness saw" in err
    assert "the chain up to #20 was rewritten after #12, the last head the witness saw" in err


@pytest.fixture
def long_log(
    database_url: str,
    tmp_path: Path,
    clock: FixedClock,
    engines: Callable[[str], Engine],
    pki_dir: Path,
) -> Stopped:
    """6,000 entries, written with the registry's own key and policy while it runs (as 6,000
    look-ups would, faster), the witness asking at the end; then a clean stop."""
    with running_registry(database_url, tmp_path, clock, engines, pki_dir) as registry:
        settings = registry.settings
        public_key = auditor_copy(settings, tmp_path)
        writer = AccessLog(
            signing.load(settings.resolved_audit_signing_key()),
            checkpoint_every=settings.checkpoint_every,
            checkpoint_seconds=settings.checkpoint_seconds,
        )
        for batch in range(6):
            now = clock.now() + dt.timedelta(seconds=batch)
            entries = [
                Entry(now, "no-hit", "zsm-midden-nederland-kpc", {"request_id": f"r{n}"})
                for n in range(1000)
            ]
            with registry.engine.begin() as connection:
                writer.append(connection, entries, now)
        assert witness_once(registry, public_key, tmp_path / "witness") == 0
    url = settings.resolved_database_url()
    return Stopped(
        url, settings.data_dir, engines(url), settings, public_key, tmp_path / "witness", 0
    )


def test_the_last_5000_entries_cut_with_their_checkpoints_fail_against_the_witness(
    long_log: Stopped, capsys: pytest.CaptureFixture[str]
) -> None:
    with long_log.engine.begin() as connection:
        connection.execute(text("DELETE FROM access_log_subjects WHERE seq > 1000"))
        connection.execute(text("DELETE FROM access_log WHERE seq > 1000"))
        connection.execute(text("DELETE FROM access_log_checkpoints WHERE seq > 1000"))

    assert long_log.verify() == 0  # a cut at a checkpoint: the database alone cannot show it
    capsys.readouterr()
    assert long_log.verify("--witness", str(long_log.witness)) == 1
    err = capsys.readouterr().err
    assert (
        "BROKEN at #1001: truncated: the log ends at #1000 but the witness saw a signed head at "
        "#6000 ("
    ) in err
    assert "entries 1001 to 6000 were cut off" in err


def test_an_intact_log_verifies_against_its_witness(
    stopped: Stopped, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stopped.verify("--witness", str(stopped.witness)) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: the access log verifies: 24 entries, ")
    assert (
        "the newest valid one at #24; the witness saw 3 heads, the newest the log still leads "
        "to at #20."
    ) in out


# --- the signing key's place -----------------------------------------------------------------


def test_by_default_the_signing_key_lies_beside_the_data_dir_not_in_it(tmp_path: Path) -> None:
    settings = RegistrySettings(data_dir=tmp_path / "registry")
    assert settings.resolved_audit_signing_key() == tmp_path / "keys" / "registry-audit-signing.key"
    feedback = FeedbackSettings(data_dir=tmp_path / "feedback")
    assert feedback.resolved_audit_signing_key() == tmp_path / "keys" / "feedback-audit-signing.key"


@pytest.mark.parametrize("service", ["registry", "feedback"])
@pytest.mark.parametrize("where", ["configured", "left by an earlier version"])
def test_a_service_refuses_to_start_with_its_signing_key_in_its_data_dir(
    tmp_path: Path, pki_dir: Path, service: str, where: str
) -> None:
    data_dir = tmp_path / service
    data_dir.mkdir()
    options: dict[str, Any] = {"address": "127.0.0.1:0", "data_dir": data_dir, "pki_dir": pki_dir}
    if where == "configured":
        options["audit_signing_key"] = data_dir / "keys" / "audit.key"
    else:
        signing.save(signing.generate("k2026-10"), data_dir / "audit-signing.key")
    start: Callable[[], Any] = (
        (lambda: create_server(RegistrySettings(**options)))
        if service == "registry"
        else (lambda: create_feedback(FeedbackSettings(**options)))
    )
    with pytest.raises(SigningKeyError) as refused:
        start()
    prefix = f"BAKEN_{service.upper()}_"
    assert f"{prefix}ALLOW_SIGNING_KEY_IN_DATA_DIR" in str(refused.value)
    assert "audit signing key" in str(refused.value)
    assert not (data_dir / "keys").exists()


def test_the_registry_starts_with_its_key_in_the_data_dir_when_told_to(
    tmp_path: Path, pki_dir: Path
) -> None:
    data_dir = tmp_path / "registry"
    settings = RegistrySettings(
        address="127.0.0.1:0",
        data_dir=data_dir,
        pki_dir=pki_dir,
        audit_signing_key=data_dir / "audit-signing.key",
        allow_signing_key_in_data_dir=True,
    )
    running = create_server(settings)
    running.stop(grace=None)
    assert (data_dir / "audit-signing.key").is_file()


def test_baken_serve_says_why_it_will_not_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "registry"
    monkeypatch.setenv("BAKEN_REGISTRY_AUDIT_SIGNING_KEY", str(data_dir / "audit.key"))
    assert main(["serve", "registry", "--data-dir", str(data_dir), "--address", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert "the audit signing key lies in the data dir" in err
    assert "Traceback" not in err


# --- checkpoints while the service runs --------------------------------------------------------


def test_a_quiet_head_is_signed_within_checkpoint_seconds(
    database_url: str,
    tmp_path: Path,
    clock: FixedClock,
    engines: Callable[[str], Engine],
    pki_dir: Path,
    ring: KeyRing,
) -> None:
    with running_registry(
        database_url, tmp_path, clock, engines, pki_dir, checkpoint_seconds=0.5
    ) as registry:
        for _ in range(3):
            registry.lookup(subject(ring, UNKNOWN))
        deadline = time.monotonic() + 20
        with registry.engine.connect() as connection:
            while (head := access_log.signed_head(connection)) is None or head.seq < 3:
                assert time.monotonic() < deadline, "the head was not signed"
                time.sleep(0.1)
                connection.rollback()
    assert head.seq == 3


# --- the witness ------------------------------------------------------------------------------


def test_the_witness_keeps_heads_in_its_own_owner_only_store(
    registry: RunningRegistry, ring: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public_key = auditor_copy(registry.settings, tmp_path)
    store = tmp_path / "witness"
    assert witness_once(registry, public_key, store) == 0  # nothing signed yet: nothing kept
    registry.lookup(subject(ring, UNKNOWN))
    with registry.engine.begin() as connection:
        AccessLog(signing.load(registry.settings.resolved_audit_signing_key())).checkpoint(
            connection, registry.clock.now()
        )
    assert witness_once(registry, public_key, store) == 0
    assert witness_once(registry, public_key, store) == 0
    assert capsys.readouterr().out.count("kept the registry's signed head at #1") == 1
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE((store / FILE).stat().st_mode) == 0o600


def test_the_witness_raises_an_alarm_when_the_head_goes_back(
    registry: RunningRegistry, ring: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public_key = auditor_copy(registry.settings, tmp_path)
    signer = AccessLog(signing.load(registry.settings.resolved_audit_signing_key()))
    for _ in range(2):
        registry.lookup(subject(ring, UNKNOWN))
        with registry.engine.begin() as connection:
            signer.checkpoint(connection, registry.clock.now())
    assert witness_once(registry, public_key, tmp_path / "witness") == 0
    with registry.engine.begin() as connection:  # the tail cut, with its checkpoint
        connection.execute(text("DELETE FROM access_log_subjects WHERE seq = 2"))
        connection.execute(text("DELETE FROM access_log WHERE seq = 2"))
        connection.execute(text("DELETE FROM access_log_checkpoints WHERE seq = 2"))

    assert witness_once(registry, public_key, tmp_path / "witness") == 1
    assert (
        "ALARM: the registry's newest signed head is #1, but the witness saw #2: the log was cut,"
        " or its database restored from a backup"
    ) in capsys.readouterr().err


def test_the_witness_keeps_no_head_that_does_not_verify_with_the_auditors_key(
    registry: RunningRegistry, ring: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.lookup(subject(ring, UNKNOWN))
    with registry.engine.begin() as connection:
        AccessLog(signing.load(registry.settings.resolved_audit_signing_key())).checkpoint(
            connection, registry.clock.now()
        )
    other = tmp_path / "other" / "audit.key"
    with registry.engine.connect() as connection:
        head = access_log.signed_head(connection)
    assert head is not None
    signing.save(signing.generate(head.key_id), other)

    assert witness_once(registry, public_path(other), tmp_path / "witness") == 1
    assert (
        "ALARM: the head at #1 does not verify with the given public keys"
        in capsys.readouterr().err
    )
    assert main(
        ["audit", "verify", "--database-url", registry.database_url, "--public-key",
         str(auditor_copy(registry.settings, tmp_path)), "--witness", str(tmp_path / "witness")]
    ) == 0  # fmt: skip
    assert "the witness saw 0 heads" in capsys.readouterr().out


def test_only_the_privacy_auditor_gets_the_signed_head_and_asking_writes_nothing(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.lookup(subject(ring, UNKNOWN))
    before = registry.tables()
    for party in ("zsm-midden-nederland-kpc", "adapter-pga", "feedback"):
        with secure_channel(registry.pki_dir, registry.port, party) as channel:
            stub = audit_service_pb2_grpc.AuditServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetSignedHead(audit_service_pb2.GetSignedHeadRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, party
    with secure_channel(registry.pki_dir, registry.port, "privacy-auditor") as channel:
        stub = audit_service_pb2_grpc.AuditServiceStub(channel)
        head = stub.GetSignedHead(audit_service_pb2.GetSignedHeadRequest(), timeout=10)
    assert head.sequence == 0  # one look-up, not signed yet
    assert registry.tables() == before


def test_the_feedback_service_gives_the_witness_its_own_signed_head(
    feedback: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with feedback.engine.begin() as connection:
        AccessLog(signing.load(feedback.settings.resolved_audit_signing_key())).append(
            connection,
            [Entry(feedback.registry.clock.now(), "purged", "feedback", {"request_id": "r1"})],
            feedback.registry.clock.now(),
        )
        AccessLog(signing.load(feedback.settings.resolved_audit_signing_key())).checkpoint(
            connection, feedback.registry.clock.now()
        )
    public_key = public_path(feedback.settings.resolved_audit_signing_key())
    store = tmp_path / "witness"
    code = main(
        ["audit", "witness", "--once", "--service", "feedback", "--store", str(store),
         "--public-key", str(public_key), "--target", f"127.0.0.1:{feedback.server.port}",
         "--pki-dir", str(feedback.registry.pki_dir)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "kept the feedback service's signed head at #1" in capsys.readouterr().out
    code = main(
        ["audit", "verify", "--service", "feedback", "--database-url",
         feedback.settings.resolved_database_url(), "--public-key", str(public_key),
         "--witness", str(store)]
    )  # fmt: skip
    assert code == 0
    assert (
        "the witness saw 1 head, the newest the log still leads to at #1" in capsys.readouterr().out
    )


def test_after_a_kill_9_no_entry_older_than_checkpoint_seconds_is_unsigned(
    database_url: str,
    tmp_path: Path,
    pki_dir: Path,
    ring: KeyRing,
    engines: Callable[[str], Engine],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir, port = tmp_path / "registry", free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "registry", "--address",
         f"127.0.0.1:{port}", "--data-dir", str(data_dir), "--pki-dir", str(pki_dir)],
        env={**os.environ, "BAKEN_REGISTRY_DATABASE_URL": database_url,
             "BAKEN_REGISTRY_CHECKPOINT_SECONDS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with secure_channel(pki_dir, port, "zsm-rotterdam-rijnmond-kpc") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
            for _ in range(5):
                stub.Lookup(lookup_request(subject(ring, UNKNOWN)), timeout=10)
        engine = engines(database_url)
        deadline = time.monotonic() + 30
        with engine.connect() as connection:  # the service's timer signs the quiet head
            while (head := access_log.signed_head(connection)) is None or head.seq < 5:
                assert time.monotonic() < deadline, "the head was not signed"
                time.sleep(0.1)
                connection.rollback()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    public_key = public_path(default_signing_key(data_dir, "registry"))
    args = ["audit", "verify", "--database-url", database_url, "--public-key", str(public_key)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: the access log verifies: 5 entries, ")
    assert out.endswith(", the newest valid one at #5.\n")  # nothing after it unsigned
