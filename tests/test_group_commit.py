"""db.GroupCommit: writers that queue while a transaction commits share the next one, each in a
savepoint of its own; nobody hears "written" of what was not committed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def written(engine: Engine) -> set[int]:
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(text("SELECT n FROM written"))}


def insert(n: int) -> Callable[[Connection], int]:
    def work(connection: Connection) -> int:
        connection.execute(text("INSERT INTO written (n) VALUES (:n)"), {"n": n})
        if n == 3:
            raise ValueError("the third writer's own mistake")
        return n

    return work


def commits(engine: Engine) -> list[int]:
    counted: list[int] = []
    event.listen(engine, "commit", lambda _connection: counted.append(1))
    return counted


def queued_behind_first(group: db.GroupCommit, works: list[Callable[[Connection], Any]]) -> list:
    """Run the works from threads, the first holding its transaction open until the others
    have queued behind it; each writer's result or error."""
    started = threading.Event()
    release = threading.Event()
    first = works[0]

    def hold(connection: Connection) -> Any:
        started.set()
        assert release.wait(10)
        return first(connection)

    def call(work: Callable[[Connection], Any]) -> Any:
        try:
            return group.run(work)
        except Exception as error:
            return error

    with ThreadPoolExecutor(len(works)) as pool:
        futures = [pool.submit(call, hold)]
        assert started.wait(10)
        futures += [pool.submit(call, work) for work in works[1:]]
        while len(group._queue) < len(works) - 1:
            threading.Event().wait(0.005)
        release.set()
        return [f.result() for f in futures]


def test_writers_that_queue_share_one_transaction(engine: Engine) -> None:
    group = db.GroupCommit(engine)
    counted = commits(engine)
    works = [insert(n) for n in range(WRITERS) if n != 3]
    results = queued_behind_first(group, works)
    assert results == [n for n in range(WRITERS) if n != 3]
    assert written(engine) == set(results)
    # The first writer's transaction, then one for all who queued behind it.
    assert len(counted) == 2


def test_a_failing_writer_undoes_only_its_own_writes(engine: Engine) -> None:
    results = queued_behind_first(db.GroupCommit(engine), [insert(n) for n in range(WRITERS)])
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [n for n in range(WRITERS) if n != 3]
    assert written(engine) == set(range(WRITERS)) - {3}


def test_a_failed_commit_fails_every_writer_of_the_group(engine: Engine) -> None:
    group = db.GroupCommit(engine)
    commits = 0

    def refuse_the_second(_connection: Any) -> None:
        nonlocal commits
        commits += 1
        if commits == 2:
            raise OSError("disk full")

    event.listen(engine, "commit", refuse_the_second)
    works = [insert(n) for n in range(10, 10 + WRITERS)]
    results = queued_behind_first(group, works)
    assert results[0] == 10
    assert all(isinstance(r, OSError) for r in results[1:]), results
    assert written(engine) == {10}
    # The group is usable afterwards.
    assert group.run(insert(99)) == 99
    assert written(engine) == {10, 99}


def test_a_lone_writer_commits_at_once(engine: Engine) -> None:
    group = db.group_commit(engine)
    assert group is db.group_commit(engine)
    counted = commits(engine)
    assert [group.run(insert(n)) for n in (1, 2)] == [1, 2]
    assert len(counted) == 2
    with pytest.raises(ValueError, match="third writer"):
        group.run(insert(3))
    assert written(engine) == {1, 2}
