"""Settings per service, from the environment (BAKEN_<SERVICE>_*) and command-line options."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from baken.db import sqlite_url


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BAKEN_REGISTRY_", frozen=True)

    # host:port to listen on; port 0 picks a free one.
    address: str = "127.0.0.1:50051"
    # Where the SQLite database lives when no database_url is given.
    data_dir: Path = Path("var/registry")
    # Overrides data_dir: e.g. postgresql://baken@db.internal/baken.
    database_url: str | None = None
    # Threads answering RPCs; the GIL caps the benefit of more.
    max_workers: int = 16
    # mTLS: the CA certificate (ca.pem) and this service's certificate and key
    # ({party}.pem, {party}.key) lie here; `baken pki init` makes a development set.
    pki_dir: Path = Path("var/pki")
    party: str = "registry"

    def resolved_database_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir, "registry.db")
