"""`baken register`: the register of processing activities, generated from the covenants. It
covers every purpose and every grant of the shipped files, and follows a change of a file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from baken.houses import load_houses
from baken.purposes import PURPOSES
from cli.main import main
from services.common import covenants
from services.common.processing_register import register_markdown


def sections(text: str) -> dict[str, str]:
    """The register's text under each "## Doel: purpose" heading."""
    return {
        part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in text.split("\n## Doel: ")[1:]
    }


def test_the_register_covers_every_purpose_and_grant_of_the_shipped_covenants() -> None:
    houses = load_houses()
    shipped = covenants.load(covenants.DEFAULT_DIR, houses)

    text = register_markdown(shipped, houses)

    by_purpose = sections(text)
    assert set(by_purpose) == set(PURPOSES)
    for c in shipped.covenants:
        assert c.basis and c.basis in text, c.ref
        for g in c.grants:
            for purpose in g.purposes:
                [row] = [
                    line
                    for line in by_purpose[purpose].splitlines()
                    if line.startswith(f"| {c.ref} |") and f"| {g.id}" in line
                ]
                assert all(f"{f} (" in row for f in g.fields), (c.ref, g.id)
                assert f"{c.valid_from} t/m {c.valid_until}" in row
                for p in c.parties:
                    if shipped.parties[p].role in g.roles:
                        assert f"({p}, " in row, (c.ref, g.id, p)
    # Every purpose with its periods from the retention schedule, the access log's included.
    assert text.count("Bewaartermijn: ") == len(PURPOSES)
    assert text.count("toegangslog 24 maanden") == len(PURPOSES)
    assert "beslissingen 24 maanden" in by_purpose["terugkoppeling"]


def test_baken_register_follows_a_change_of_a_covenant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "covenants"
    shutil.copytree(covenants.DEFAULT_DIR, directory, ignore=shutil.ignore_patterns("*.md"))
    assert main(["register", "--covenants", str(directory), "--out", str(tmp_path / "a.md")]) == 0
    midden = directory / "midden-nederland.toml"
    text = midden.read_text()
    changed = text.replace('id = "politie-zsm"', 'id = "politie-zsm-beperkt"', 1)
    changed = changed.replace("art. 20 Wpg (politie)", "art. 20 Wpg (politie, gewijzigd)", 1)
    assert changed != text
    midden.write_text(changed)

    assert main(["register", "--covenants", str(directory), "--out", str(tmp_path / "b.md")]) == 0

    before, after = ((tmp_path / name).read_text() for name in ("a.md", "b.md"))
    assert "politie-zsm-beperkt" not in before and "politie-zsm-beperkt" in after
    assert "politie, gewijzigd" in after
    assert capsys.readouterr().out.count("wrote ") == 2


def test_baken_register_names_the_broken_line_of_a_covenant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "covenants"
    shutil.copytree(covenants.DEFAULT_DIR, directory, ignore=shutil.ignore_patterns("*.md"))
    inzage = directory / "inzage.toml"
    inzage.write_text(
        inzage.read_text().replace('fields = ["house", "region"]', 'fields = ["advice"]')
    )

    assert main(["register", "--covenants", str(directory)]) == 2

    err = capsys.readouterr().err
    assert f"{inzage}:" in err and "house and region only" in err and "Traceback" not in err
