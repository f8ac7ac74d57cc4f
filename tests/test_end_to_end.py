"""The whole system, for real: `baken up`'s topology (registry, feedback service, three adapters,
the four desks' inflow adapters, each a process of its own, mTLS), a ZSM shift across the four
regions: each desk's suspects monitor dropped into its inflow adapter's folder (every suspect
looked up once, by itself), decisions from a later monitor and from the public APIs, every
delivery in its source exactly once, and the month's report agreeing with what was played, its
coverage figures with the inflow.
On SQLite, and on PostgreSQL (a schema per service) where BAKEN_TEST_DATABASE_URL is given."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from test_shift import check_numbers, check_sources, listed, played

from baken.clock import read_offset
from baken.houses import load_houses
from baken.pki import TlsFiles
from baken.stuurinformatie.client import Request, fetch_report
from baken.stuurinformatie.figures import SMALL_CELL, Level, Month
from baken.stuurinformatie.report import Cell, Report
from dev.topology import Topology

PG_ENV = "BAKEN_TEST_DATABASE_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[tuple[str | None, str]]:
    """(database URL or None for SQLite, schema prefix); PostgreSQL schemas dropped after."""
    if request.param == "sqlite":
        yield None, "baken"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"set {PG_ENV} to a PostgreSQL URL")
    prefix = f"e2e_{secrets.token_hex(4)}"
    try:
        yield base, prefix
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            for service in ("registry", "feedback"):
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(f"{prefix}_{service}")
                    )
                )


def expect(report: Report, month: Month, metric: str, region: str, house: str, n: int) -> None:
    cell = report.cell(month, metric, region, house)
    want = Cell(None, small=True) if n < SMALL_CELL else Cell(float(n))
    assert cell == want, f"{metric} {region} {house or ''}: played {n}, report {cell}"


def test_a_shift_through_every_process_and_its_months_report(
    tmp_path: Path, database: tuple[str | None, str]
) -> None:
    url, prefix = database
    clock_file = tmp_path / "clock"
    with Topology(
        tmp_path / "up",
        database_url=url,
        schema_prefix=prefix,
        clock_file=clock_file,
        watch_interval=0.5,
        say=lambda _line: None,
    ) as up:
        started = Month.of(dt.datetime.now(dt.UTC))
        result, _text = played(up.endpoints)
        check_numbers(result, overdue=True)
        check_sources(up.endpoints, result)
        assert [r.name for r in listed(up.endpoints, overdue_only=True)] == result.advice_overdue
        shifted = Month.of(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=read_offset(clock_file)))
        report = _report(up, started)
        assert all(p.running() and p.restarts == 0 for p in up.processes.values())

    houses = load_houses()
    for region, n in result.lookups.items():
        for metric, truth in (
            ("zsm.lookups", n),
            ("zsm.hits", result.hits[region]),
            ("zsm.persons", result.persons[region]),
            ("zsm.known_persons", result.known_persons[region]),
            ("zsm.travelling_hits", result.travelling_hits.get(region, 0)),
            ("zsm.deviations", result.deviations.get(region, 0)),
            # Coverage: the desk's inflow, every suspect of its monitors checked.
            ("zsm.inflow", result.inflow[region]),
            ("zsm.inflow_checked", result.inflow[region]),
            ("zsm.inflow_checked_in_time", result.inflow[region]),
            ("zsm.inflow_known", result.inflow_known.get(region, 0)),
        ):
            expect(report, started, metric, region, "", truth)
        late = result.late_decisions.get(region, 0) if shifted != started else 0
        expect(report, started, "zsm.decisions", region, "", result.decisions[region] - late)
    for house, n in result.advice_requested.items():
        expect(report, started, "advice.requested", houses[house].region, house, n)
    for house, n in result.aanmeldingen.items():
        expect(report, started, "house.aanmeldingen", houses[house].region, house, n)
    if shifted == started:  # else the items after the clock moved fall in the next month
        for house, n in result.items_per_house().items():
            # Matchingsmeldingen are counted apart (feedback.matches), not as items.
            matches = result.items[house].get("match", 0)
            made = n - result.purged.get(house, 0) - matches
            for metric in ("feedback.items", "feedback.delivered", "feedback.acknowledged"):
                expect(report, started, metric, houses[house].region, house, made)
            expect(report, started, "feedback.matches", houses[house].region, house, matches)


def _report(up: Topology, month: Month) -> Report:
    """The month's report once every item is acknowledged (an adapter acknowledges just after
    it wrote the item into its source)."""
    tls = TlsFiles.of(up.endpoints.pki_dir, "landelijke-stuurgroep")
    request = Request(month, on_behalf_of="stuurgroep-secretaris")
    deadline = time.monotonic() + 20
    while True:
        report = fetch_report(up.endpoints.registry, up.endpoints.feedback, tls, request)
        behind = [
            (r, h)
            for r, h in report.scopes(Level.HOUSE)
            if report.cell(month, "feedback.items", r, h)
            != report.cell(month, "feedback.acknowledged", r, h)
        ]
        if not behind or time.monotonic() > deadline:
            return report
        time.sleep(0.2)
