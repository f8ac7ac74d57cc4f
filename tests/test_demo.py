"""The main job: `baken demo` shows the travelling offender's nationwide hit, on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from baken import demo


def test_demo_shows_the_nationwide_hit_the_covenants_and_the_audit_trail(tmp_path: Path) -> None:
    lines: list[str] = []
    demo.run(tmp_path, seed=7, say=lines.append)
    text = "\n".join(lines)

    travelling = text.split("23:40")[1].split("00:15")[0]
    assert "HIT: known at 2 Safety Houses (match: BSN)" in travelling
    assert "Veiligheidshuis Rotterdam-Rijnmond" in travelling
    assert "AGED (" in text.split("00:15")[1].split("01:05")[0]
    assert "surname + date of birth only" in text.split("01:05")[1].split("02:30")[0]
    expired = text.split("02:30")[1].split("03:10")[0]
    assert "EXPIRED (" in expired
    assert "Dagvaarden" not in expired and "aanvragen" not in expired
    assert "NO HIT" in text.split("03:10")[1].split("03:12")[0]
    assert "fails the 11-proef" in text
    covenants = text.split("The covenants at work")[1].split("another CA")[0]
    assert "DENIED: PERMISSION_DENIED (PURPOSE_NOT_GRANTED), and logged." in covenants
    decision, glass = covenants.split("08:10")[1].split("08:14")
    outside = "(outside your covenant's region) [midden-nederland@v1 ovj-afdoening]"
    withheld = [line for line in decision.splitlines() if outside in line]
    assert withheld and all("advice" in line for line in withheld)
    assert "BREAK-GLASS" in glass and "A&T open cases" in glass
    feedback = text.split("5. Terugkoppeling")[1].split("another CA")[0]
    routed = feedback.split("08:30")[1].split("arrived in PGA")[0]
    assert "-> houses/vh-regio-utrecht-amersfoort" in routed
    assert "-> houses/vh-rotterdam-rijnmond" in routed
    pga = feedback.split("arrived in PGA (Rotterdam)")[1].split("arrived in GCOS")[0]
    assert '"dagvaarding"' in pga and "advies_gevolgd   false" in pga
    assert demo.DEVIATION_REASON in pga
    gcos = feedback.split("arrived in GCOS (Amersfoort)")[1].split("08:40")[0]
    assert "<gevolgd>nee</gevolgd>" in gcos and demo.DEVIATION_REASON in gcos
    assert "aanmelding to houses/vh-regio-utrecht-utrecht" in feedback
    assert "his BSN in the feedback service's database files: no" in feedback
    assert "technisch sepot 01. Nothing is fed back" in feedback
    assert "refused: UNAVAILABLE" in text.split("another CA")[1]
    assert "in the registry's database files: no" in text
    assert "advice text" in text.split("What the registry holds")[1]
    report = text.split("Data-subject access report")[1]
    assert "DENIED  zsm-midden-nederland-slachtofferhulp" in report
    assert "BREAK-GLASS  zsm-midden-nederland-ovj" in report
    assert f"break-glass reason  {demo.BREAK_GLASS_REASON}" in report
    assert "1 break-glass entry to review" in report
    assert "`baken audit verify`: the hash chain over" in report
    assert "YES" not in text
    assert (tmp_path / "registry" / "registry.db").exists()


def test_demo_refuses_a_data_dir_that_holds_a_registry(tmp_path: Path) -> None:
    demo.run(tmp_path, seed=7, say=lambda _line: None)
    with pytest.raises(SystemExit, match="already holds a registry"):
        demo.run(tmp_path, seed=7, say=lambda _line: None)
