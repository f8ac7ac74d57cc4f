"""Rotating from an HMAC key to an OPRF key without a flag day: `keys add --kind oprf`, resync,
`keys retire` the HMAC key, resync; a look-up hits at every step, and the edge's key file holds
no secret at the end."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from builders import TODAY, Marking, Person
from harness import RunningRegistry
from pseudonymiser_harness import KEY_ID, RunningPseudonymiser, running_pseudonymiser

from baken import pki
from baken.keyring import KeyFileError, KeyRing
from baken.pseudonym import person_pseudonyms
from baken.pseudonymiser_client import ServiceOprf
from baken.registry.v1 import marker_pb2, registry_service_pb2
from baken.type.v1 import pseudonym_pb2
from cli.main import main

HIT = registry_service_pb2.LOOKUP_OUTCOME_HIT
NO_HIT = registry_service_pb2.LOOKUP_OUTCOME_NO_HIT
PERSON = Person(bsn="111222333", surname="Öztürk", birth_date=dt.date(1995, 5, 5))


@pytest.fixture
def service(tmp_path: Path, pki_dir: Path) -> Iterator[RunningPseudonymiser]:
    with running_pseudonymiser(tmp_path, pki_dir) as running:
        yield running


def _oprf(pki_dir: Path, party: str, user: str) -> ServiceOprf:
    credentials = pki.channel_credentials(pki.TlsFiles.of(pki_dir, party))
    return ServiceOprf(lambda address: grpc.secure_channel(address, credentials), on_behalf_of=user)


def _subject(ring: KeyRing, oprf: ServiceOprf) -> pseudonym_pb2.Subject:
    return pseudonym_pb2.Subject(
        pseudonyms=[
            pseudonym_pb2.Pseudonym(kind=p.kind, key_id=p.key_id, value=p.value)
            for p in person_pseudonyms(
                ring.served_by(oprf),
                bsn=PERSON.bsn,
                surname=PERSON.surname,
                birth_date=PERSON.birth_date,
                today=TODAY,
            )
        ]
    )


def _keys(path: Path, *args: str) -> None:
    assert main(["keys", *args, "--key-file", str(path)]) in (0, None)


def test_a_rotation_to_an_oprf_key_keeps_every_lookup_hitting(
    registry: RunningRegistry, service: RunningPseudonymiser, tmp_path: Path
) -> None:
    adapter = _oprf(registry.pki_dir, "adapter-pga", "sync")
    desk = _oprf(registry.pki_dir, "zsm-midden-nederland-kpc", "kpc-0117")
    marking = Marking(PERSON, "pga-1")
    edge_keys = tmp_path / "edge-keys.json"
    _keys(edge_keys, "init", "--kind", "hmac", "--key-id", "k1")

    def sync() -> registry_service_pb2.SyncMarkersResponse:
        record = marking.record(KeyRing.generate("k1"))
        record.subject.CopyFrom(_subject(KeyRing.load(edge_keys), adapter))
        return registry.sync(marker_pb2.MarkerChange(upsert=record))

    def lookup(ring: KeyRing) -> int:
        return registry.lookup(_subject(ring, desk)).outcome

    assert sync().created == 1
    hmac_only = KeyRing.load(edge_keys)
    assert lookup(hmac_only) == HIT

    _keys(edge_keys, "add", "--kind", "oprf", "--key-id", KEY_ID, "--service", service.address)
    both = KeyRing.load(edge_keys)
    assert both.ids == ["k1", KEY_ID]
    assert lookup(both) == HIT  # the markers are still under k1 only
    assert sync().updated == 1
    oprf_only = both.without_key("k1")
    for ring in (hmac_only, both, oprf_only):
        assert lookup(ring) == HIT

    _keys(edge_keys, "retire", "--key-id", "k1")
    assert sync().updated == 1
    assert lookup(oprf_only) == HIT
    assert lookup(hmac_only) == NO_HIT
    document = json.loads(edge_keys.read_text())
    assert document == {"keys": [{"id": KEY_ID, "kind": "oprf", "service": service.address}]}
    # Each sync and look-up under the OPRF key was one call of the service, logged.
    assert {e.party_id for e in service.log_entries()} == {
        "adapter-pga",
        "zsm-midden-nederland-kpc",
    }


def test_an_oprf_ring_without_the_service_cannot_pseudonymise() -> None:
    ring = KeyRing({}, {KEY_ID: "127.0.0.1:1"})
    with pytest.raises(KeyFileError, match="through the service"):
        person_pseudonyms(ring, bsn=PERSON.bsn, today=TODAY)


def test_an_old_key_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"keys": [{"id": "k1", "secret": "A" * 43 + "="}]}))
    ring = KeyRing.load(path)
    assert (ring.ids, dict(ring.oprf)) == (["k1"], {})
