"""Migrations: models and migrations agree (our `alembic check`), and the service refuses a
database at a schema it does not know."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, inspect, text

from services.common import db
from services.common.settings import RegistrySettings
from services.feedback import models as feedback_models
from services.feedback.server import MIGRATIONS as FEEDBACK_MIGRATIONS
from services.pseudonymiser import models as pseudonymiser_models
from services.pseudonymiser.server import MIGRATIONS as PSEUDONYMISER_MIGRATIONS
from services.registry import models  # noqa: F401  (registers the tables on Base.metadata)
from services.registry.server import MIGRATIONS, create_server

# Each service's migrations and the models they must end in.
SERVICES = pytest.mark.parametrize(
    ("migrations", "metadata"),
    [
        (MIGRATIONS, db.Base.metadata),
        (FEEDBACK_MIGRATIONS, feedback_models.Base.metadata),
        (PSEUDONYMISER_MIGRATIONS, pseudonymiser_models.Base.metadata),
    ],
    ids=["registry", "feedback", "pseudonymiser"],
)


@SERVICES
def test_the_migrations_end_in_exactly_the_models(
    database_url: str, engines: Callable[[str], Engine], migrations: Path, metadata: MetaData
) -> None:
    engine = engines(database_url)
    head = db.upgrade_to_head(migrations, engine)

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert context.get_current_revision() == head
        differences = compare_metadata(context, metadata)

    assert differences == []


@SERVICES
def test_there_is_one_head(
    database_url: str, engines: Callable[[str], Engine], migrations: Path, metadata: MetaData
) -> None:
    script = ScriptDirectory.from_config(db.alembic_config(migrations, engines(database_url)))
    assert len(script.get_heads()) == 1


def test_upgrading_twice_is_harmless(database_url: str, engines: Callable[[str], Engine]) -> None:
    engine = engines(database_url)
    first = db.upgrade_to_head(MIGRATIONS, engine)
    assert db.upgrade_to_head(MIGRATIONS, engine) == first


@SERVICES
def test_every_migration_downgrades_to_an_empty_database_and_back(
    database_url: str, engines: Callable[[str], Engine], migrations: Path, metadata: MetaData
) -> None:
    engine = engines(database_url)
    db.upgrade_to_head(migrations, engine)
    config = db.alembic_config(migrations, engine)

    command.downgrade(config, "base")
    with engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
    db.upgrade_to_head(migrations, engine)

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_the_server_refuses_a_database_at_an_unknown_revision(
    database_url: str, engines: Callable[[str], Engine], tmp_path: Path
) -> None:
    engine = engines(database_url)
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        )
        connection.execute(text("INSERT INTO alembic_version VALUES ('9999_from_the_future')"))
    settings = RegistrySettings(
        address="127.0.0.1:0", database_url=database_url, data_dir=tmp_path / "data"
    )

    with pytest.raises(db.SchemaError) as caught:
        create_server(settings)

    assert "9999_from_the_future" in str(caught.value)
    with engine.connect() as connection:
        assert inspect(connection).get_table_names() == ["alembic_version"]


def test_the_server_upgrades_a_fresh_sqlite_data_dir_in_wal_mode(
    tmp_path: Path, engines: Callable[[str], Engine]
) -> None:
    data_dir = tmp_path / "not" / "there" / "yet"
    running = create_server(RegistrySettings(address="127.0.0.1:0", data_dir=data_dir))
    try:
        assert running.port > 0
        assert (data_dir / "registry.db").exists()
        engine = engines(db.sqlite_url(data_dir, "registry.db"))
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert {"markers", "marker_pseudonyms"} <= set(inspect(connection).get_table_names())
    finally:
        running.server.stop(grace=None).wait()
