"""The generated gRPC code in baken/*/v1 is exactly what proto/ produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_matches_the_proto_files() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "protos.py"), "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
