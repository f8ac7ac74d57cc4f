"""Where a service process spends its time under load: py-spy samples every thread of the running
process (no restart, no instrumentation), and the samples are summed per function.

Only threads on a CPU count (py-spy leaves idle ones out), so the shares are of the CPU time the
process used, not of wall time."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

# A frame in py-spy's raw output: "function (path/file.py:line)".
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")
_OURS = ("/baken/", "/services/", "/adapters/", "/cli/", "/dev/")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    return found


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` at 200 Hz into `out` (collapsed stacks)."""
    return subprocess.Popen(
        [py_spy(), "record", "--pid", str(pid), "--duration", str(round(seconds)),
         "--rate", "200", "--gil", "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _name(frame: str) -> str:
    found = _FRAME.match(frame)
    if not found:
        return frame
    path = found["file"]
    for marker in _OURS:
        if marker in path:
            path = marker[1:] + path.rsplit(marker, 1)[1]
            break
    else:
        path = path.rsplit("/site-packages/", 1)[-1].rsplit("/lib/python3", 1)[-1]
    return f"{found['function']} ({path})"


def summary(raw: Path, top: int = 15) -> str:
    """Two tables: the functions where the samples were taken (self), and Baken's own functions
    with everything they called (inclusive), each as a share of all samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if any(marker[1:] in frame for marker in _OURS):
                inclusive[frame] += count
    if not total:
        return "(no samples)"
    lines = [f"{total:,} samples", "", "| self | function |", "|---|---|"]
    lines += [f"| {n / total:.1%} | `{name}` |" for name, n in own.most_common(top)]
    lines += ["", "| inclusive | Baken function |", "|---|---|"]
    lines += [f"| {n / total:.1%} | `{name}` |" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)
