"""The repository stands alone: nothing in it cites a document that is not in it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The released contract image is a recorded artefact, replaced only when a release is cut.
RECORDED = {"proto/baken.binpb"}
# Spelled apart, so that this file does not name them itself.
OUTSIDE = ("DOMAIN" + ".md", "../" + "shared")


def test_no_file_cites_a_document_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    citing = []
    for name in sorted(set(tracked) - RECORDED):
        path = ROOT / name
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        if any(name in text for name in OUTSIDE):
            citing.append(name)
    assert citing == [], f"cite documents that are not in the repository: {citing}"


def test_every_process_section_cited_exists() -> None:
    sections = {
        line.split(".")[0].removeprefix("## ")
        for line in (ROOT / "docs" / "PROCESS.md").read_text("utf-8").splitlines()
        if line.startswith("## ")
    }
    tracked = subprocess.run(
        ["git", "grep", "-ohE", "PROCESS\\.md §[0-9]+"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    cited = {line.rsplit("§", 1)[1] for line in tracked if "§" in line}
    assert cited and cited <= sections, cited - sections
