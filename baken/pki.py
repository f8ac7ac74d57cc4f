"""A development PKI: one CA and one certificate per party, made with `cryptography`.

A party's identity lives in its certificate subject: CN = party id, O = organisation,
OU = role. Services take the caller's identity from the verified certificate, never from a
request field. Service certificates also carry the host names clients dial (SAN).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES = frozenset(
    {
        "zsm-officier",  # the OvJ at ZSM who decides
        "kpc",  # ketenprocescoordinator: checks every suspect, sends feedback
        "police",
        "probation",  # reclassering (3RO)
        "rvdk",  # Raad voor de Kinderbescherming
        "victim-support",  # Slachtofferhulp Nederland
        "vh-process-director",  # Safety House procesregisseur
        "vh-chair",  # chair of the casusoverleg
        "source-adapter",
        "privacy-auditor",
        "operator",
        "steering-group",  # a steering group: management information (aggregates) only
        "service",  # a Baken service itself (server certificates)
    }
)
CA_DAYS = 3650
PARTY_DAYS = 397


class PkiError(Exception):
    """A certificate that cannot serve as a Baken identity; the message says why."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A party as its certificate states it: CN = id, O = organisation, OU = role."""

    id: str
    organisation: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise PkiError(f"party {self.id}: unknown role {self.role!r}")


@dataclass(frozen=True, slots=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _name(party: Identity) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, party.id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, party.organisation),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, party.role),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def issue_ca(name: str, *, now: dt.datetime, days: int = CA_DAYS) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: Issued,
    party: Identity,
    *,
    now: dt.datetime,
    days: int = PARTY_DAYS,
    hosts: Iterable[str] = (),
) -> Issued:
    """A certificate for `party`, signed by `ca`; `hosts` makes it usable as a server too."""
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise PkiError("the CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(party))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    if names:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(
        ca_key, hashes.SHA256()
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def party_of(cert_pem: bytes) -> Identity:
    """The party a (verified) certificate names."""
    cert = x509.load_pem_x509_certificate(cert_pem)

    def one(oid: x509.ObjectIdentifier) -> str:
        values = cert.subject.get_attributes_for_oid(oid)
        if len(values) != 1:
            raise PkiError(f"the certificate subject needs exactly one {oid._name}")
        return str(values[0].value)

    return Identity(
        one(NameOID.COMMON_NAME),
        one(NameOID.ORGANIZATION_NAME),
        one(NameOID.ORGANIZATIONAL_UNIT_NAME),
    )


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where one party's certificate, key and the CA certificate lie."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def of(cls, directory: Path, party_id: str) -> TlsFiles:
        return cls(
            directory / f"{party_id}.pem", directory / f"{party_id}.key", directory / "ca.pem"
        )

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(certificate, key, CA certificate) as PEM bytes."""
        try:
            return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()
        except OSError as exc:
            raise PkiError(
                f"{exc.filename}: cannot read ({exc.strerror}); run `baken pki init`"
            ) from None


def _write(path: Path, data: bytes) -> None:
    """A key is its owner's alone; so, like everything Baken writes, is a certificate."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # also when the file was there
        f.write(data)


def write(directory: Path, name: str, issued: Issued) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles.of(directory, name)
    _write(files.cert, issued.cert_pem)
    _write(files.key, issued.key_pem)
    return files


SERVICE_HOSTS = ("localhost", "127.0.0.1")


def init(
    directory: Path,
    parties: Iterable[Identity],
    *,
    now: dt.datetime,
    service_hosts: Iterable[str] = (),
) -> dict[str, TlsFiles]:
    """A fresh CA and a certificate per party under `directory`; services also get SANs:
    localhost, 127.0.0.1 and `service_hosts` (e.g. the service names of docker-compose.yml)."""
    hosts = (*SERVICE_HOSTS, *service_hosts)
    ca = issue_ca("Baken development CA", now=now)
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / "ca.pem", ca.cert_pem)
    _write(directory / "ca.key", ca.key_pem)
    return {
        party.id: write(
            directory,
            party.id,
            issue(ca, party, now=now, hosts=hosts if party.role == "service" else ()),
        )
        for party in parties
    }


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """TLS that demands a client certificate from the same CA: no anonymous callers."""
    cert, key, ca = files.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    cert, key, ca = files.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
