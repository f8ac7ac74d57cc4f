"""Everything Baken writes is its own user's only (files 0600, directories 0700): a careless
umask or a shared host must not let another user read a database, a log, a state file, a key
or a delivery (a PGA delivery can hold an opened aanmelding: BSN, surname, date of birth)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from adapters.synth import population, write_exports
from baken.houses import load_houses
from dev.topology import free_ports

ROOT = Path(__file__).resolve().parent.parent


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def readable_by_others(root: Path) -> list[str]:
    """Every file or directory under `root` that its group or the world may use, with its mode.
    The public half of the audit signing key (`.pub`) is meant to be handed out, and stays
    0644 (services/accesslog/signing.py); its folder is 0700 all the same."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.suffix == ".pub" and mode == 0o644:
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            continue
        if not path.is_symlink() and mode & 0o077:
            found.append(f"{path.relative_to(root)} {mode:o}")
    return found


def test_a_whole_run_writes_nothing_that_another_user_may_read(tmp_path: Path) -> None:
    """`baken up` (registry, feedback service, the adapters), an export synced, a look-up that
    signals the marking house and the delivery written into its PGA folder: then every file and
    folder of the run, under the umask of a careless shell (0o000)."""
    run = tmp_path / "up"
    registry_port, feedback_port = free_ports(2)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--run-dir", str(run),
         "--registry-port", str(registry_port), "--feedback-port", str(feedback_port)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, preexec_fn=lambda: os.umask(0),
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        _wait_for(lambda: "Ctrl-C stops.\n" in lines or process.poll() is not None, "baken up")
        assert process.poll() is None, "".join(lines)

        houses = load_houses()
        people = population(houses, dt.date.today(), seed=7, scale=0.02)
        records = [r for r in people.records if houses[r.house_id].region == "rotterdam-rijnmond"]
        (export,) = write_exports(tmp_path / "export", houses, records, today=dt.date.today())[
            "pga"
        ]
        export.chmod(0o600)  # the source system's file, not Baken's
        os.replace(export, run / "sources" / "pga" / export.name)
        watch_log = run / "logs" / "adapter-pga-watch.log"
        _wait_for(lambda: f"{export.name}: new " in watch_log.read_text(), "the PGA export synced")

        person = next(r.person for r in records if r.person.bsn)
        looked_up = subprocess.run(
            [sys.executable, "-m", "cli.main", "lookup", "--registry",
             f"127.0.0.1:{registry_port}", "--bsn", person.bsn or "", "--adult",
             "--party", "zsm-rotterdam-rijnmond-kpc", "--user", "kpc-0042"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "BAKEN_PKI_DIR": str(run / "pki"),
                 "BAKEN_PSEUDONYM_KEY_FILE": str(run / "pseudonym-keys.json")},
        )  # fmt: skip
        assert looked_up.returncode == 0 and "HIT" in looked_up.stdout, looked_up.stderr
        deliveries = run / "deliveries" / "pga"
        _wait_for(lambda: any(deliveries.iterdir()), "the signal delivered into PGA")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()

    kinds = {p.suffix for p in run.rglob("*") if p.is_file()}
    assert {".db", ".log", ".json", ".key", ".pem"} <= kinds, kinds
    assert readable_by_others(run) == []
