"""Database plumbing shared by the services: declarative base, column types, engines, migrations."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import operator
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    Insert,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry

R = TypeVar("R")
T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class _Bytes(TypeDecorator[bytes]):
    """Binary passed to the driver as it is: sqlite3 and psycopg both take `bytes`, so the
    per-value conversion of LargeBinary is skipped on the bulk paths."""

    impl = LargeBinary
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


Digest = Annotated[bytes, mapped_column(_Bytes(32))]
# A key id (length byte + id) and an HMAC-SHA256: see services/common/at_rest.py.
KeyedDigest = Annotated[bytes, mapped_column(_Bytes(64))]
Id = Annotated[str, mapped_column(String(64))]
UtcTime = Annotated[dt.datetime, mapped_column(DateTime(timezone=True))]


class SchemaError(Exception):
    """The database is at a schema this code does not know (newer, or foreign)."""


def sqlite_url(data_dir: Path, name: str) -> str:
    return f"sqlite:///{data_dir / name}"


def make_engine(url: str, *, pool_size: int = 16) -> Engine:
    """An engine for SQLite (WAL, foreign keys, busy timeout) or PostgreSQL (psycopg 3). Its
    errors never quote a statement's parameters (pseudonyms, sealed fields, case references)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, pool_size=pool_size, max_overflow=pool_size, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            # Per connection: 32 MiB of page cache (the default is 2 MiB) keeps the upper
            # levels of the indexes of a million markers in memory while a sync writes; reads
            # share the file through 1 GiB of memory map instead of copying pages in.
            cursor.execute("PRAGMA cache_size=-32768")
            cursor.execute("PRAGMA mmap_size=1073741824")
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
    )


class Bulk:
    """A Core INSERT or UPDATE compiled once for a dialect and run straight on the DBAPI
    connection, in the caller's transaction. SQLAlchemy's per-row work (parameter construction,
    bind processing through its wrappers) cost more than the database's own on the bulk paths;
    here only the types that need it (SQLite's dates and times) are converted. `COPY_ROWS` rows
    or more to INSERT on PostgreSQL go as a COPY (a third of the CPU a row of psycopg's
    executemany, for a round trip more); anything else is one executemany. `keys` are the rows'
    keys: the columns to set, and the statement's own bind parameters."""

    COPY_ROWS = 32

    def __init__(self, statement: Any, dialect: Dialect, keys: Iterable[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self._sql = str(compiled)
        positional = compiled.positiontup
        self._names: tuple[str, ...] = tuple(positional or compiled.binds)
        self._positional = positional is not None
        self._copy: str | None = None
        if dialect.name == "postgresql" and isinstance(statement, Insert):
            quote = dialect.identifier_preparer
            columns = ", ".join(quote.quote(statement.table.c[n].name) for n in self._names)
            self._copy = f"COPY {quote.format_table(statement.table)} ({columns}) FROM STDIN"
        processors = {
            name: processor
            for name in self._names
            if (bind := compiled.binds[name]).type is not None
            # Both drivers take bytes as they are; SQLite's processor only wraps them.
            and not isinstance(bind.type, LargeBinary)
            and (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        self._processors = processors
        self._columns = [(operator.itemgetter(n), processors.get(n)) for n in self._names]

    def _params(self, rows: Iterable[Mapping[str, Any]]) -> list[Any]:
        """The rows as this statement's DBAPI parameters."""
        if self._positional:
            return self._tuples(rows)
        processors = self._processors
        if not processors:
            return list(rows)
        return [{**row, **{n: p(row[n]) for n, p in processors.items()}} for row in rows]

    def _tuples(self, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The rows' values in the statement's order, built a column at a time: each column's
        values taken in C, and converted only where the type needs it."""
        rows = rows if isinstance(rows, list) else list(rows)
        columns = [
            map(value, rows) if convert is None else map(convert, map(value, rows))
            for value, convert in self._columns
        ]
        return list(zip(*columns, strict=True))

    def run(self, connection: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        self.write(connection.connection.dbapi_connection, rows)

    def write(self, dbapi: Any, rows: Iterable[Mapping[str, Any]]) -> None:
        """The rows, on a DBAPI connection in a transaction."""
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        cursor = dbapi.cursor()
        try:
            if self._copy is None or len(rows) < self.COPY_ROWS:
                cursor.executemany(self._sql, self._params(rows))
                return
            with cursor.copy(self._copy) as copy:
                for row in self._tuples(rows):
                    copy.write_row(row)
        finally:
            cursor.close()


class PerDialect(Generic[T]):
    """What is built once for each SQL dialect (compiled statements), taken by the dialect of
    the connection at hand."""

    def __init__(self, build: Callable[[Dialect], T]) -> None:
        self._build = build
        self._built: dict[str, T] = {}

    def __call__(self, connection: Connection) -> T:
        built = self._built.get(connection.dialect.name)
        if built is None:
            built = self._built[connection.dialect.name] = self._build(connection.dialect)
        return built


class _SqliteWriters:
    """The writers' queue at one SQLite database: this process's writers take a thread lock,
    then every process's writers an flock on a file beside the database (`<file>-writers`).
    Both wait in the kernel and wake at once, where SQLite's own busy handler sleeps for
    milliseconds at a time: behind a few dozen writers the slowest look-ups waited 200 ms,
    and the instances of `baken serve registry --instances` would queue there too. A writer
    that does not come through here (a migration) still meets SQLite's busy handler."""

    def __init__(self, engine: Engine) -> None:
        self._thread = threading.Lock()
        self._fd: int | None = None
        path = engine.url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            self._fd = os.open(f"{path}-writers", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            weakref.finalize(self, os.close, self._fd)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._thread:
            if self._fd is None:
                yield
                return
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


_sqlite_writers: weakref.WeakKeyDictionary[Engine, _SqliteWriters] = weakref.WeakKeyDictionary()
_writers_guard = threading.Lock()


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that is going to write.

    On SQLite the write lock is taken at BEGIN (IMMEDIATE), so what the transaction reads is
    read under it (pysqlite would begin only at the first write), after the writers ahead of
    it in every process (_SqliteWriters); the writer waits there before it takes a pooled
    connection."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    with _sqlite_writers_of(engine).turn(), engine.connect() as connection, _immediate(connection):
        yield connection


def _sqlite_writers_of(engine: Engine) -> _SqliteWriters:
    with _writers_guard:
        writers = _sqlite_writers.get(engine)
        if writers is None:
            writers = _sqlite_writers[engine] = _SqliteWriters(engine)
        return writers


@contextlib.contextmanager
def _immediate(connection: Connection) -> Iterator[None]:
    """A SQLite transaction that holds the write lock from its BEGIN, on the connection."""
    with connection.begin():
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield


@dataclass(frozen=True, slots=True)
class ReadThenWrite:
    """A transaction that reads, then writes: `reading` for the reads, `writing()` for the
    writes (entered once), on the same connection."""

    reading: Connection
    writing: Callable[[], contextlib.AbstractContextManager[Connection]]


@contextlib.contextmanager
def read_then_write(engine: Engine) -> Iterator[ReadThenWrite]:
    """Reads, then writes that hold the write lock only while they write, committed when the
    block ends. PostgreSQL: one transaction (its writes take their own locks, such as the
    access log's advisory lock). SQLite, whose write lock comes at BEGIN IMMEDIATE: the reads
    outside a transaction (each statement a consistent snapshot; read them on the DBAPI
    connection, as SQLAlchemy would begin one), then the writers' turn and the write
    transaction."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield ReadThenWrite(connection, lambda: contextlib.nullcontext(connection))
        return

    @contextlib.contextmanager
    def writing() -> Iterator[Connection]:
        with _sqlite_writers_of(engine).turn(), _immediate(connection):
            yield connection

    with engine.connect() as connection:
        yield ReadThenWrite(connection, writing)


class _Call(Generic[R, T]):
    __slots__ = ("done", "error", "leads", "request", "value", "woken")

    def __init__(self, request: R) -> None:
        self.request = request
        self.woken = threading.Event()
        self.leads = False
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None


class Grouped(Generic[R, T]):
    """Callers whose requests are handled together (group commit). `run(request)` queues the
    request; a leader hands the requests that queued meanwhile to `handle(requests)`, and only
    when that returns does each caller get its own result: one per request, or an exception
    for a request it refused, which that caller alone gets. When `handle` raises, every caller
    of the group gets that error.

    `handle` writes the group in one transaction and returns once it committed, so nobody
    hears "written" of what was not, and a transaction's fixed costs (the write lock, BEGIN,
    each statement's round trip, COMMIT and its WAL write or fsync) are paid once per group
    instead of once per call.

    A caller that finds fewer than `at_once` groups in hand leads one: it takes the queue (up
    to `limit` requests), handles it, then hands the lead to the first caller that queued
    meanwhile. Nobody waits for a group to fill: a lone caller goes at once. With `at_once`
    2, one group can read and decide while another waits for its commit."""

    def __init__(
        self,
        handle: Callable[[list[R]], list[T | Exception]],
        *,
        limit: int = 64,
        at_once: int = 1,
    ) -> None:
        self._handle = handle
        self._limit = limit
        self._at_once = at_once
        self._mutex = threading.Lock()
        self._queue: list[_Call[R, T]] = []
        self._leaders = 0

    def run(self, request: R) -> T:
        call: _Call[R, T] = _Call(request)
        with self._mutex:
            self._queue.append(call)
            if self._leaders < self._at_once:
                self._leaders += 1
                call.leads = True
        # The flags are set before the event, and read after it is cleared: no wake is lost.
        while True:
            if call.leads:
                call.leads = False
                self._lead()
            if call.done:
                break
            call.woken.wait()
            call.woken.clear()
        if call.error is not None:
            raise call.error
        return cast(T, call.value)

    def _lead(self) -> None:
        with self._mutex:
            group, self._queue = self._queue[: self._limit], self._queue[self._limit :]
        try:
            if group:
                self._answer(group)
        finally:
            for call in group:
                call.done = True
                call.woken.set()
            with self._mutex:
                # The lead goes to the first caller in the queue, unless one there leads.
                if self._queue and not any(c.leads for c in self._queue):
                    self._queue[0].leads = True
                    self._queue[0].woken.set()
                else:
                    self._leaders -= 1

    def _answer(self, group: list[_Call[R, T]]) -> None:
        try:
            results = self._handle([call.request for call in group])
            if len(results) != len(group):
                raise RuntimeError("a group's handler answered another number of requests")
            for call, result in zip(group, results, strict=True):
                if isinstance(result, Exception):
                    call.error = result
                else:
                    call.value = result
        except BaseException as error:
            for call in group:
                call.error = error
            if not isinstance(error, Exception):
                raise


@contextlib.contextmanager
def scratch_schema(base_url: str, prefix: str = "t") -> Iterator[str]:
    """A fresh, empty PostgreSQL schema first on the search path of the URL it yields; dropped
    with everything in it at the end. For tests and benchmarks (one database per service)."""
    import psycopg
    from psycopg import sql

    schema = f"{prefix}_{uuid.uuid4().hex}"
    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def run_migrations(metadata: MetaData) -> None:
    """The body of a service's migrations/env.py: the engine comes from the caller
    (upgrade_to_head or the tests) through config.attributes."""
    from alembic import context

    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


def alembic_config(script_location: Path, engine: Engine, **attributes: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["engine"] = engine
    config.attributes.update(attributes)
    return config


def upgrade_to_head(script_location: Path, engine: Engine, **attributes: Any) -> str:
    """Migrate to the newest revision; refuse a database that is ahead of this code.
    `attributes` reach the migrations (config.attributes), e.g. the registry's sealer."""
    config = alembic_config(script_location, engine, **attributes)
    script = ScriptDirectory.from_config(config)
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    # get_revision() raises on an unknown id instead of returning None: compare with the known ones.
    if current is not None and current not in {s.revision for s in script.walk_revisions()}:
        raise SchemaError(
            f"the database is at schema revision {current}, which this version of Baken does not "
            "know; run a newer Baken or restore a matching backup"
        )
    command.upgrade(config, "head")
    head = script.get_current_head()
    assert head is not None
    return head


def utc(value: dt.datetime) -> dt.datetime:
    """A database time as aware UTC: SQLite hands back naive UTC, PostgreSQL the session's zone."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
