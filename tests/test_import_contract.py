"""The import contract (.importlinter) holds, and it is not decoration: an upward import, a
feedback module reaching into the registry, or a cycle in the CLI breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("baken", "services", "adapters", "cli", "dev", "desk")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--config", str(root / ".importlinter"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / ".importlinter", root)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("*.pyc"))
    return root


def test_the_repository_keeps_its_import_contract() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout
    assert "Contracts: 3 kept, 0 broken." in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # The edge library importing a service: a key file's code would pull in a database.
        ("baken/pseudonym.py", "import services.common.db", "baken is not allowed to import"),
        # The feedback service reaching into the registry's internals.
        (
            "services/feedback/routing.py",
            "import services.registry.repository",
            "services.feedback is not allowed to import services.registry",
        ),
        # The access log depending on the service that uses it.
        (
            "services/accesslog/store.py",
            "import services.registry.models",
            "services.accesslog is not allowed to import services.registry",
        ),
        # A command module importing the module that assembles the commands: a cycle.
        ("cli/audit.py", "import cli.main", "No cycles are allowed in cli"),
        # The demo importing the CLI above it.
        ("dev/shift.py", "import cli.feedback", "dev is not allowed to import cli"),
        # The desk's screen reaching past the public APIs into a service.
        ("desk/gateway.py", "import services.common.db", "desk is not allowed to import services"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(
    copy: Path, module: str, line: str, broken: str
) -> None:
    target = copy / module
    original = target.read_text("utf-8")
    target.write_text(original + f"\n{line}  # noqa\n", "utf-8")
    try:
        done = _lint(copy)
    finally:
        target.write_text(original, "utf-8")
    assert done.returncode != 0
    assert broken in done.stdout
