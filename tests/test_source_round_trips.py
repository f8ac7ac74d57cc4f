"""Each source end to end: its export -> `baken adapter <source> sync` -> registry -> a ZSM
lookup; and `baken synth` exports for the four pilot regions through all three adapters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from builders import Person, subject
from harness import RunningRegistry

from adapters.records import SourceRecord
from adapters.sources import SOURCES
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2 as pb
from cli.main import main

FIXTURES = Path(__file__).parent / "fixtures"
EXPORTS = {
    "gcos": FIXTURES / "gcos" / "export.xml",
    "amazone": FIXTURES / "amazone" / "export.csv",
    "pga": FIXTURES / "pga" / "export.jsonl",
}


def sync_args(
    registry: RunningRegistry, system: str, sources: list[Path], tmp_path: Path
) -> list[str]:
    return [
        "adapter", system, "sync", "--source", *map(str, sources),
        "--registry", f"127.0.0.1:{registry.port}", "--pki-dir", str(registry.pki_dir),
        "--key-file", str(tmp_path / "edge-keys.json"), "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip


@pytest.fixture
def keys(tmp_path: Path, ring: KeyRing) -> KeyRing:
    ring.save(tmp_path / "edge-keys.json")
    return ring


@pytest.mark.parametrize("system", sorted(EXPORTS))
def test_a_source_export_round_trips_to_a_lookup(
    registry: RunningRegistry,
    keys: KeyRing,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    system: str,
) -> None:
    export = EXPORTS[system]
    records = [r for r in SOURCES[system].export().read(export) if isinstance(r, SourceRecord)]
    with_bsn = next(r for r in records if r.person.bsn)

    assert main(sync_args(registry, system, [export], tmp_path)) == 0
    out = capsys.readouterr().out
    assert main(sync_args(registry, system, [export], tmp_path)) == 0
    again = capsys.readouterr().out

    assert f"new {len(records)}, changed 0, deleted 0, unchanged 0, rejected 0" in out, out
    assert f"unchanged {len(records)}, rejected 0" in again
    response = registry.lookup(subject(keys, Person(bsn=with_bsn.person.bsn)))
    assert response.outcome == pb.LOOKUP_OUTCOME_HIT
    assert {m.source_record_id for m in response.markers} >= {with_bsn.record_id}
    assert f"houses/{with_bsn.house_id}" in {m.house.name for m in response.markers}


def test_synthetic_exports_of_the_four_regions_sync_through_the_three_adapters(
    registry: RunningRegistry, keys: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "sources"
    assert main(["synth", "--seed", "7", "--scale", "0.2", "--out", str(out_dir)]) == 0
    capsys.readouterr()
    houses = load_houses()
    files = sorted(out_dir.iterdir())
    assert {f.name.split("-", 1)[0] for f in files} == {"gcos", "amazone", "pga"}
    # GCOS per house; Amazone and PGA per region.
    gcos_houses = [h for h in houses.values() if h.source_system == 1]
    assert len([f for f in files if f.name.startswith("gcos-")]) == len(gcos_houses)

    counts: dict[str, dict[str, int]] = {}
    for system in ("gcos", "amazone", "pga"):
        sources = [f for f in files if f.name.startswith(f"{system}-")]
        code = main(sync_args(registry, system, sources, tmp_path))
        summary = capsys.readouterr().out.splitlines()[-1]
        counts[system] = {
            key: int(value)
            for key, value in re.findall(r"(new|changed|deleted|unchanged|rejected) (\d+)", summary)
        }
        assert code == (1 if counts[system]["rejected"] else 0), summary  # 1: records rejected
    assert all(c["new"] > 0 and c["deleted"] == 0 for c in counts.values()), counts
    # The sprinkling of bad records is refused, the rest lands.
    assert sum(c["rejected"] for c in counts.values()) > 0
    rows = {r["id"]: r for r in registry.tables()["markers"]}
    assert len(rows) == sum(c["new"] for c in counts.values())
    # Some persons are marked in two regions: travelling offenders.
    by_person: dict[bytes, set[str]] = {}
    for p in registry.tables()["marker_pseudonyms"]:
        region = houses[rows[p["marker_id"]]["house_id"]].region
        by_person.setdefault(p["value"], set()).add(region)
    assert any(len(regions) > 1 for regions in by_person.values())
