"""db.Grouped (group commit): writers that queue while a transaction commits share the next
one; a refused request is its caller's alone; nobody hears "written" of what was not committed.
And the writers' queue at a SQLite database, across processes."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

from services.common import db

WRITERS = 8


@pytest.fixture
def engine(database_url: str, engines: Callable[[str], Engine]) -> Engine:
    engine = engines(database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE written (n INTEGER PRIMARY KEY)"))
    return engine


def in_transaction(
    engine: Engine, handle: Callable[[Connection, list[int]], list[int | Exception]]
) -> Callable[[list[int]], list[int | Exception]]:
    """A group's handler that hands the group to `handle` in one write transaction."""

    def handled(numbers: list[int]) -> list[int | Exception]:
        with db.write_transaction(engine) as connection:
            return handle(connection, numbers)

    return handled


def written(engine: Engine) -> set[int]:
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(text("SELECT n FROM written"))}


def insert_all(connection: Connection, numbers: list[int]) -> list[int | Exception]:
    """One insert for the group; 3 is refused, and written by nobody."""
    kept = [n for n in numbers if n != 3]
    if kept:
        connection.execute(text("INSERT INTO written (n) VALUES (:n)"), [{"n": n} for n in kept])
    return [ValueError("3 is refused") if n == 3 else n for n in numbers]


def commits(engine: Engine) -> list[int]:
    counted: list[int] = []
    event.listen(engine, "commit", lambda _connection: counted.append(1))
    return counted


class Held:
    """A group commit of insert_all whose first group waits, its transaction open, until the
    test lets it go."""

    def __init__(self, engine: Engine) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.group: db.Grouped[int, int] = db.Grouped(in_transaction(engine, self._handle))
        self._first = True

    def _handle(self, connection: Connection, numbers: list[int]) -> list[int | Exception]:
        if self._first:
            self._first = False
            self.started.set()
            assert self.release.wait(10)
        return insert_all(connection, numbers)


def queued_behind_first(engine: Engine, numbers: list[int]) -> list[Any]:
    """Each number from a thread of its own, the first one's transaction open until the others
    have queued behind it; each writer's result or error."""
    held = Held(engine)

    def call(n: int) -> Any:
        try:
            return held.group.run(n)
        except Exception as error:
            return error

    with ThreadPoolExecutor(len(numbers)) as pool:
        futures = [pool.submit(call, numbers[0])]
        assert held.started.wait(10)
        futures += [pool.submit(call, n) for n in numbers[1:]]
        while len(held.group._queue) < len(numbers) - 1:
            threading.Event().wait(0.005)
        held.release.set()
        return [f.result() for f in futures]


def test_writers_that_queue_share_one_transaction(engine: Engine) -> None:
    counted = commits(engine)
    results = queued_behind_first(engine, [n for n in range(WRITERS) if n != 3])
    assert results == [n for n in range(WRITERS) if n != 3]
    assert written(engine) == set(results)
    # The first writer's transaction, then one for all who queued behind it.
    assert len(counted) == 2


def test_a_refused_writer_alone_hears_it(engine: Engine) -> None:
    results = queued_behind_first(engine, list(range(WRITERS)))
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [n for n in range(WRITERS) if n != 3]
    assert written(engine) == set(range(WRITERS)) - {3}


def test_a_failed_commit_fails_every_writer_of_the_group(engine: Engine) -> None:
    commits = 0

    def refuse_the_second(_connection: Any) -> None:
        nonlocal commits
        commits += 1
        if commits == 2:
            raise OSError("disk full")

    event.listen(engine, "commit", refuse_the_second)
    results = queued_behind_first(engine, list(range(10, 10 + WRITERS)))
    assert results[0] == 10
    assert all(isinstance(r, OSError) for r in results[1:]), results
    assert written(engine) == {10}
    # Its callers heard, and the next group commits.
    assert db.Grouped(in_transaction(engine, insert_all)).run(99) == 99
    assert written(engine) == {10, 99}


def test_a_lone_writer_commits_at_once(engine: Engine) -> None:
    group = db.Grouped(in_transaction(engine, insert_all))
    counted = commits(engine)
    assert [group.run(n) for n in (1, 2)] == [1, 2]
    assert len(counted) == 2
    with pytest.raises(ValueError, match="3 is refused"):
        group.run(3)
    assert written(engine) == {1, 2}


def test_a_handler_that_raises_fails_the_whole_group_and_writes_nothing(engine: Engine) -> None:
    def half_then_fail(connection: Connection, numbers: list[int]) -> list[int | Exception]:
        insert_all(connection, numbers)
        raise RuntimeError("lost the connection")

    with pytest.raises(RuntimeError, match="lost the connection"):
        db.Grouped(in_transaction(engine, half_then_fail)).run(5)
    assert written(engine) == set()


def hold_the_turn(url: str, held: Any, release: Any) -> None:
    engine = db.make_engine(url)
    with db._SqliteWriters(engine).turn():
        held.set()
        release.wait(10)
    engine.dispose()


def test_sqlite_writers_of_another_process_queue_before_ours(tmp_path: Path) -> None:
    """The instances of one registry take turns at the file beside the database: a writer of
    ours waits while another process has its turn, and goes once that ends."""
    url = db.sqlite_url(tmp_path, "registry.db")
    engine = db.make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE written (n INTEGER PRIMARY KEY)"))
    spawn = multiprocessing.get_context("spawn")
    held, release = spawn.Event(), spawn.Event()
    other = spawn.Process(target=hold_the_turn, args=(url, held, release))
    other.start()
    try:
        assert held.wait(30)
        entered = threading.Event()

        def write() -> None:
            with db.write_transaction(engine) as connection:
                entered.set()
                connection.execute(text("INSERT INTO written (n) VALUES (1)"))

        writer = threading.Thread(target=write)
        writer.start()
        assert not entered.wait(0.5)
        release.set()
        assert entered.wait(10)
        writer.join(10)
    finally:
        release.set()
        other.join(10)
        engine.dispose()
    assert written(engine) == {1}
    assert (tmp_path / "registry.db-writers").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("at_once", [1, 2, 3])
def test_many_callers_each_get_their_own_answer_once(at_once: int) -> None:
    """Hundreds of callers from many threads: each gets its own result, every request is
    handled exactly once, and no more groups are in hand at once than allowed."""
    handled: list[int] = []
    in_hand = 0
    most = 0
    guard = threading.Lock()

    def handle(numbers: list[int]) -> list[int | Exception]:
        nonlocal in_hand, most
        with guard:
            in_hand += 1
            most = max(most, in_hand)
        threading.Event().wait(0.001)
        with guard:
            in_hand -= 1
            handled.extend(numbers)
        return [ValueError(n) if n % 7 == 0 else n * 2 for n in numbers]

    grouped: db.Grouped[int, int] = db.Grouped(handle, at_once=at_once, limit=16)

    def call(n: int) -> int | str:
        try:
            return grouped.run(n)
        except ValueError as error:
            return f"refused {error}"

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(call, range(600)))
    assert results == [f"refused {n}" if n % 7 == 0 else n * 2 for n in range(600)]
    assert sorted(handled) == list(range(600))
    assert most <= at_once
    assert grouped._leaders == 0 and not grouped._queue
