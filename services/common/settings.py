"""Settings per service, from the environment (BAKEN_<SERVICE>_*) and command-line options."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.admission import FIRST_MESSAGE_SECONDS
from services.common.covenants import DEFAULT_DIR
from services.common.db import sqlite_url
from services.common.grpc_server import MAX_MESSAGE_BYTES


class ServiceSettings(BaseSettings):
    """What every Baken service is configured with; each service's own class sets its
    environment prefix, its defaults and what is its alone."""

    # The service's name: its SQLite file and its audit signing key are named after it.
    SERVICE: ClassVar[str]

    # host:port to listen on; port 0 picks a free one.
    address: str
    # host:port of the Prometheus metrics endpoint (HTTPS, an operator's client certificate of
    # the CA); port 0 picks a free one. Empty: no metrics endpoint.
    metrics_address: str = ""
    # Where the SQLite database lives when no database_url is given.
    data_dir: Path
    # Overrides data_dir: the service's own database, e.g. postgresql://baken@db.internal/baken.
    database_url: str | None = None
    # Threads answering RPCs; the GIL caps the benefit of more.
    max_workers: int = 16
    # mTLS: the CA certificate (ca.pem) and this service's certificate and key
    # ({party}.pem, {party}.key) lie here; `baken pki init` makes a development set.
    pki_dir: Path = Path("var/pki")
    party: str
    # The party register (parties.toml) and one file per covenant; checked at start.
    covenants_dir: Path = DEFAULT_DIR
    # Ed25519 key that signs access-log checkpoints; its public half (.pub) goes to the
    # auditors. Never in the data dir (the service refuses to start) unless
    # allow_signing_key_in_data_dir. Default: keys/{service}-audit-signing.key beside the data
    # dir.
    audit_signing_key: Path | None = None
    allow_signing_key_in_data_dir: bool = False
    # A run of the access log (docs/AUDIT.md) holds at most this many entries, each within this
    # many seconds of its first; an unsigned head is signed within the seconds, and at shutdown.
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 30.0
    # The largest request or answer, in bytes; larger is RESOURCE_EXHAUSTED.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # Every party's rate and burst come from its role in the party register
    # (services/common/admission.py); this multiplies them all (a capacity benchmark raises it).
    rate_scale: float = Field(default=1.0, gt=0)
    # A stream that sends no first message for this long is refused (DEADLINE_EXCEEDED).
    first_message_seconds: float = Field(default=FIRST_MESSAGE_SECONDS, gt=0)
    # Share the address with the other instances of this service on this machine
    # (SO_REUSEPORT); set by `baken serve --instances` for its children. Off, a second server
    # on a port in use fails instead of silently sharing it.
    reuse_port: bool = False

    def resolved_database_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir, f"{self.SERVICE}.db")

    def resolved_audit_signing_key(self) -> Path:
        return self.audit_signing_key or default_signing_key(self.data_dir, self.SERVICE)


def default_signing_key(data_dir: Path, service: str) -> Path:
    """Beside the data dir, never in it: a copy of the data dir cannot re-sign its log."""
    return data_dir.parent / "keys" / f"{service}-audit-signing.key"


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BAKEN_REGISTRY_", frozen=True)
    SERVICE: ClassVar[str] = "registry"

    address: str = "127.0.0.1:50051"
    data_dir: Path = Path("var/registry")
    party: str = "registry"
    # AES-GCM key ring for waarom-informatie at rest (made on first start when absent; keep a
    # backup apart from the database's). Default: data_dir/at-rest-keys.json.
    at_rest_key_file: Path | None = None

    def resolved_at_rest_key_file(self) -> Path:
        return self.at_rest_key_file or self.data_dir / "at-rest-keys.json"


class FeedbackSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BAKEN_FEEDBACK_", frozen=True)
    SERVICE: ClassVar[str] = "feedback"

    address: str = "127.0.0.1:50052"
    data_dir: Path = Path("var/feedback")
    # Every subscribed house holds one for its stream.
    max_workers: int = 64
    party: str = "feedback"
    # The registry: routing lookups and the signals of ZSM lookups.
    registry: str = "127.0.0.1:50051"
    # Calls to the registry at once, at most: the share it admits Baken's own services (half of
    # its 16 workers); more wait here.
    registry_calls_in_flight: int = Field(default=8, ge=1)
    # AES-GCM key ring for delivery items at rest (made on first start when absent; keep a
    # backup apart from the database's). Default: data_dir/at-rest-keys.json.
    at_rest_key_file: Path | None = None
    # An item not acknowledged comes again after base, 2x base, 4x base ... up to cap seconds;
    # after max_attempts sends, or max_failures refusals by the source, it is a dead letter.
    redelivery_base_seconds: float = 2.0
    redelivery_cap_seconds: float = 3600.0
    max_attempts: int = 12
    max_failures: int = 3
    # Items sent to a house and not yet acknowledged, at most: more would wait in the stream's
    # buffers until their backoff ran out and come again as duplicates.
    delivery_window: int = 16
    # How often a waiting stream looks for items committed by another process, and how often
    # the registry is asked for new signals.
    poll_seconds: float = 1.0
    signal_poll_seconds: float = 1.0

    def resolved_at_rest_key_file(self) -> Path:
        return self.at_rest_key_file or self.data_dir / "at-rest-keys.json"


class PseudonymiserSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BAKEN_PSEUDONYMISER_", frozen=True)
    SERVICE: ClassVar[str] = "pseudonymiser"

    address: str = "127.0.0.1:50053"
    data_dir: Path = Path("var/pseudonymiser")
    party: str = "pseudonymiser"
    # The OPRF keys (a seed per key id; made on first start when absent, readable by the service
    # alone). Never beside an edge's key file, never in the data dir's backups without
    # encryption: whoever holds it can pseudonymise offline. Default: keys/pseudonymiser-keys.json
    # beside the data dir.
    key_file: Path | None = None
    # The key id a new key file gets.
    first_key_id: str = "k2027-01"

    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir.parent / "keys" / "pseudonymiser-keys.json"


class RetentionSettings(BaseSettings):
    """The retention schedule (docs/RETENTION.md): how long each kind of data is kept, one
    section for every service and for `baken audit verify`. Months are calendar months in
    Dutch time and a kind kept in months goes a whole month at a time, so that every month
    the management information can still show is whole."""

    model_config = SettingsConfigDict(env_prefix="BAKEN_RETENTION_", frozen=True)

    # Entries of every service's access log: what the privacy officer must be able to look back.
    access_log_months: int = Field(default=24, ge=1)
    # Feedback: decisions (with their decision_advice) by the month recorded, once every item
    # made of them was acknowledged or given up; the items themselves by the month created,
    # once acknowledged or given up; advice requests by the month asked, once answered or
    # cancelled; the inflow by the month of arrest; purged-case digests by the month purged.
    decision_months: int = Field(default=24, ge=1)
    delivery_months: int = Field(default=24, ge=1)
    advice_request_months: int = Field(default=24, ge=1)
    inflow_months: int = Field(default=24, ge=1)
    purged_case_months: int = Field(default=24, ge=1)
    # Registry: a marker whose plan ended, or that its source has not synced for this long,
    # lapses (VIR's lapse); a signal not taken over, and a match, go after their days.
    marker_lapse_days: int = Field(default=365, ge=1)
    signal_days: int = Field(default=90, ge=1)
    match_days: int = Field(default=365, ge=1)
    # How often each service expires what its schedule says went; also once at start.
    interval_seconds: float = Field(default=3600.0, gt=0)
