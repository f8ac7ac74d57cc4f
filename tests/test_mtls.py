"""mTLS: the registry answers only callers with a valid certificate from its CA, and every log
line names the calling party taken from that certificate."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from builders import NOW
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import RunningRegistry, secure_channel

from baken import pki
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from services.common import covenants

HOUSE = registry_service_pb2.GetHouseRequest(name="houses/vh-twente")


def _get_house(channel: grpc.Channel) -> grpc.StatusCode:
    stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
    try:
        stub.GetHouse(HOUSE, timeout=5)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return, attr-defined]
    return grpc.StatusCode.OK


def _target(registry: RunningRegistry) -> str:
    return f"127.0.0.1:{registry.port}"


def _ca_pem(registry: RunningRegistry) -> bytes:
    return (registry.settings.pki_dir / "ca.pem").read_bytes()


def test_a_party_with_a_certificate_from_the_ca_is_answered(registry: RunningRegistry) -> None:
    with secure_channel(registry.settings.pki_dir, registry.port, "adapter-pga") as channel:
        assert _get_house(channel) == grpc.StatusCode.OK


def test_a_plaintext_caller_is_refused(registry: RunningRegistry) -> None:
    with grpc.insecure_channel(_target(registry)) as channel:
        assert _get_house(channel) == grpc.StatusCode.UNAVAILABLE


def test_a_caller_without_a_client_certificate_is_refused(registry: RunningRegistry) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=_ca_pem(registry))
    with grpc.secure_channel(_target(registry), credentials) as channel:
        assert _get_house(channel) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_from_another_ca_is_refused(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    foreign = pki.init(
        tmp_path / "foreign",
        [i for i in covenants.identities() if i.id == "zsm-midden-nederland-kpc"],
        now=NOW,
    )
    cert, key, _ = foreign["zsm-midden-nederland-kpc"].read()
    credentials = grpc.ssl_channel_credentials(_ca_pem(registry), key, cert)
    with grpc.secure_channel(_target(registry), credentials) as channel:
        assert _get_house(channel) == grpc.StatusCode.UNAVAILABLE


def test_an_expired_certificate_from_the_ca_is_refused(registry: RunningRegistry) -> None:
    directory = registry.settings.pki_dir
    ca = pki.Issued((directory / "ca.pem").read_bytes(), (directory / "ca.key").read_bytes())
    party = pki.Identity("zsm-expired", "OM ZSM Midden-Nederland", "kpc")
    expired = pki.issue(ca, party, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), days=2)
    credentials = grpc.ssl_channel_credentials(_ca_pem(registry), expired.key_pem, expired.cert_pem)
    with grpc.secure_channel(_target(registry), credentials) as channel:
        assert _get_house(channel) == grpc.StatusCode.UNAVAILABLE


def test_the_log_line_names_the_party_from_the_certificate(
    json_logs: Callable[[], str], registry: RunningRegistry
) -> None:
    with secure_channel(registry.settings.pki_dir, registry.port, "adapter-gcos") as channel:
        assert _get_house(channel) == grpc.StatusCode.OK
    lines = [json.loads(line) for line in json_logs().splitlines() if line.startswith("{")]
    rpc = [line for line in lines if line.get("method", "").endswith("/GetHouse")]
    assert [line["party"] for line in rpc] == ["adapter-gcos"]


def test_a_certificate_names_its_party_organisation_and_role(pki_dir: Path) -> None:
    cert, _, _ = pki.TlsFiles.of(pki_dir, "zsm-midden-nederland-ovj").read()
    assert pki.party_of(cert) == pki.Identity(
        "zsm-midden-nederland-ovj", "OM ZSM Midden-Nederland", "zsm-officier"
    )


def test_an_unknown_role_is_not_a_party() -> None:
    with pytest.raises(pki.PkiError, match="unknown role"):
        pki.Identity("x", "Somewhere", "superuser")


def test_a_certificate_without_a_role_names_no_party() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(pki.PkiError):
        pki.party_of(cert.public_bytes(serialization.Encoding.PEM))
