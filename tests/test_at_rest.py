"""waarom-informatie sealed at rest: AES-GCM bound to marker and column, key rotation with
`baken keys reseal`, and migration 0002 sealing what an older registry stored in clear."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from builders import Marking, Person, subject, valid_bsns
from harness import RunningRegistry, lookup_request, secure_channel
from sqlalchemy import Engine, text

from baken.keyring import KeyFileError, KeyRing
from baken.registry.v1 import registry_service_pb2 as pb
from baken.registry.v1 import registry_service_pb2_grpc
from cli.main import main
from services.common import db
from services.common.at_rest import Sealer, SealError
from services.registry.markers import content_bytes
from services.registry.server import MIGRATIONS, create_server

_bsns = valid_bsns(40_000_000)
PERSON = Person(bsn=next(_bsns))
OTHER = Person(bsn=next(_bsns))
AT = {"open_cases": "Eén openstaande zaak (winkeldiefstal)."}


def test_a_sealed_value_opens_only_for_its_marker_and_column() -> None:
    sealer = Sealer(KeyRing.generate("k1"))
    sealed = sealer.seal("uid-1", "advice", "dagvaarden")

    assert b"dagvaarden" not in sealed
    assert sealer.open("uid-1", "advice", sealed) == "dagvaarden"
    for uid, column in (("uid-2", "advice"), ("uid-1", "at_information")):
        with pytest.raises(SealError):
            sealer.open(uid, column, sealed)
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError):
        sealer.open("uid-1", "advice", flipped)


def test_a_new_key_seals_new_values_and_reads_old_ones() -> None:
    old = KeyRing.generate("k1")
    sealed = Sealer(old).seal("u", "advice", "tekst")
    both = Sealer(old.with_new_key("k2"))

    assert both.current == "k2"
    assert both.open("u", "advice", sealed) == "tekst"
    moved = both.reseal("u", "advice", sealed)
    assert moved is not None and Sealer.key_of(moved) == "k2"
    assert both.reseal("u", "advice", moved) is None
    with pytest.raises(SealError):
        Sealer(old).open("u", "advice", moved)  # k2 is not in the old ring


def _stored(engine: Engine) -> list[tuple[str, bytes | None, bytes | None]]:
    with engine.connect() as connection:
        return [
            (uid, bytes(a) if a is not None else None, bytes(t) if t is not None else None)
            for uid, a, t in connection.execute(
                text("SELECT uid, advice, at_information FROM markers ORDER BY uid")
            )
        ]


@contextmanager
def _server(
    registry: RunningRegistry, party: str = "zsm-midden-nederland-kpc"
) -> Iterator[registry_service_pb2_grpc.RegistryServiceStub]:
    """Another registry process on the same database and data dir (e.g. after a restart)."""
    running = create_server(registry.settings, registry.clock)
    running.start()
    try:
        with secure_channel(registry.pki_dir, running.port, party) as channel:
            yield registry_service_pb2_grpc.RegistryServiceStub(channel)
    finally:
        running.server.stop(grace=None).wait()


def _resync(registry: RunningRegistry, *changes: Any) -> Any:
    with _server(registry, "adapter-pga") as stub:
        return stub.SyncMarkers(iter([pb.SyncMarkersRequest(changes=changes)]), timeout=10)


def test_rotating_the_at_rest_key_reseals_every_marker_and_loses_nothing(
    registry: RunningRegistry, ring: KeyRing, capsys: pytest.CaptureFixture[str]
) -> None:
    changes = (
        Marking(PERSON, "pga-1", at_information=AT).upsert(ring),
        Marking(OTHER, "pga-2").upsert(ring),
    )
    registry.sync(*changes)
    key_file = registry.settings.resolved_at_rest_key_file()
    (old_key,) = KeyRing.load(key_file)
    url = registry.database_url

    # 1. Add a key; 2. restart (new values are sealed under it); 3. reseal; 4. retire the old one.
    assert main(["keys", "add", "--key-file", str(key_file), "--key-id", "k-next"]) == 0
    with _server(registry) as stub:
        stub.Lookup(lookup_request(subject(ring, PERSON)), timeout=10)
    # A resync before the reseal compares with the digests under the old key: a replay.
    assert _resync(registry, changes[0]).unchanged == 1
    assert main(["keys", "reseal", "--key-file", str(key_file), "--database-url", url]) == 0
    assert "2 markers resealed under key k-next" in capsys.readouterr().out
    assert {Sealer.key_of(a) for _, a, _ in _stored(registry.engine) if a} == {"k-next"}
    assert {Sealer.key_of(d) for d in _digests(registry.engine)} == {"k-next"}
    assert main(["keys", "retire", "--key-file", str(key_file), "--key-id", old_key]) == 0
    assert _resync(registry, *changes).unchanged == 2

    with _server(registry) as stub:
        response = stub.Lookup(lookup_request(subject(ring, PERSON)), timeout=10)
    (marker,) = response.markers
    assert marker.advice.text.startswith("dagvaarden")
    assert marker.at_information.open_cases == AT["open_cases"]
    # A second reseal finds nothing to do.
    assert main(["keys", "reseal", "--key-file", str(key_file), "--database-url", url]) == 0
    assert "0 markers resealed" in capsys.readouterr().out


def _digests(engine: Engine) -> list[bytes]:
    with engine.connect() as connection:
        return [bytes(d) for (d,) in connection.execute(text("SELECT content_digest FROM markers"))]


def test_digests_of_marker_content_are_keyed(registry: RunningRegistry, ring: KeyRing) -> None:
    # A plain hash of the content could be matched against guessed advice texts.
    marking = Marking(PERSON, "pga-1", at_information=AT)
    registry.sync(marking.upsert(ring))
    record = marking.record(ring).SerializeToString(deterministic=True)
    with registry.engine.connect() as connection:
        ((content, stored_record),) = connection.execute(
            text("SELECT content_digest, record_digest FROM markers")
        ).all()
    plain = [hashlib.sha256(record).digest()]
    for guess in (marking.advice, "iets anders"):
        plain.append(
            hashlib.sha256(
                content_bytes(
                    "veelpleger", "active", "2026-09-01", guess, "2026-09-01",
                    json.dumps(AT, ensure_ascii=False, sort_keys=True),
                )
            ).digest()
        )  # fmt: skip
    for digest in (bytes(content), bytes(stored_record)):
        assert Sealer.key_of(digest) == next(
            iter(KeyRing.load(registry.settings.resolved_at_rest_key_file()))
        )
        assert not any(p in digest for p in plain)


def test_advice_moved_to_another_marker_does_not_open_and_discloses_nothing(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(
        Marking(PERSON, "pga-1", advice="geheim advies voor persoon een").upsert(ring),
        Marking(OTHER, "pga-2", advice="ander advies").upsert(ring),
    )
    with registry.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE markers SET advice = (SELECT advice FROM markers WHERE source_record_id ="
                " 'pga-1') WHERE source_record_id = 'pga-2'"
            )
        )

    with pytest.raises(grpc.RpcError) as caught:
        registry.lookup(subject(ring, OTHER))

    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "geheim" not in (caught.value.details() or "")
    assert registry.tables()["access_log"] == []  # nothing was disclosed, so nothing logged


def test_migration_0002_seals_advice_an_older_registry_stored_in_clear(
    database_url: str, engines: Callable[[str], Engine]
) -> None:
    engine = engines(database_url)
    command.upgrade(db.alembic_config(MIGRATIONS, engine), "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO markers (uid, source_system, house_id, source_record_id,"
                " source_version, deleted, target_group, plan_status, mark_date, advice,"
                " advice_date, at_information, content_digest, pseudonyms_digest,"
                " record_digest, synced_time) VALUES ('u1', 'pga', 'vh-rotterdam-rijnmond',"
                " 'r1', 1, false, 'veelpleger', 'active', '2026-09-01', 'dagvaarden in clear',"
                " '2026-09-01', '{\"open_cases\": \"een zaak\"}', :d, :d, :d, :t)"
            ),
            {"d": b"\0" * 32, "t": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)},
        )

    with pytest.raises(RuntimeError, match="at-rest keys"):
        db.upgrade_to_head(MIGRATIONS, engine)

    sealer = Sealer(KeyRing.generate("k1"))
    head = ScriptDirectory.from_config(db.alembic_config(MIGRATIONS, engine)).get_current_head()
    assert db.upgrade_to_head(MIGRATIONS, engine, sealer=sealer) == head
    ((uid, advice, at),) = _stored(engine)
    assert advice is not None and at is not None
    with engine.connect() as connection:
        ((content, record),) = connection.execute(
            text("SELECT content_digest, record_digest FROM markers")
        ).all()
    assert Sealer.key_of(bytes(content)) == "k1" and bytes(record) == b""
    assert b"dagvaarden" not in advice
    assert sealer.open(uid, "advice", advice) == "dagvaarden in clear"
    assert sealer.open(uid, "at_information", at) == '{"open_cases": "een zaak"}'


def test_a_lost_or_wrong_at_rest_key_file_stops_the_start(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(PERSON, "pga-1").upsert(ring))
    key_file = registry.settings.resolved_at_rest_key_file()
    original = key_file.read_bytes()

    key_file.unlink()
    with pytest.raises(KeyFileError, match="restore the key file"):
        create_server(registry.settings, registry.clock)
    assert not key_file.exists()  # no new ring made over sealed data

    KeyRing.generate("k-other").save(key_file)
    with pytest.raises(KeyFileError, match="sealed under key"):
        create_server(registry.settings, registry.clock)

    key_file.write_bytes(original)
    with _server(registry) as stub:
        (marker,) = stub.Lookup(lookup_request(subject(ring, PERSON)), timeout=10).markers
    assert marker.advice.text.startswith("dagvaarden")
