"""The main job: `baken demo` runs the registry, the feedback service and the three adapters as
processes of their own, plays a ZSM shift across the four pilot regions, shows the covenants,
the privacy officer's view and the month's report, and stops every process, Ctrl-C included."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dev import demo
from dev.shift import DEVIATION_TRAVELLER

ROOT = Path(__file__).resolve().parent.parent
NUL = b"\0"
REGION_NAMES = ("Midden-Nederland", "Oost-Nederland", "Rotterdam-Rijnmond", "Zeeland-West-Brabant")


def _processes_mentioning(text: str) -> list[str]:
    """Processes other than this one whose command line or environment mentions `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            command = (proc / "cmdline").read_bytes()
            seen = command + (proc / "environ").read_bytes()
        except OSError:
            continue  # ended meanwhile, or not ours
        if text.encode() in seen:
            found.append(proc.name + ": " + command.replace(NUL, b" ").decode(errors="replace"))
    return found


def _section(text: str, start: str, end: str) -> str:
    assert start in text, f"{start!r} not in the demo's output"
    return text.split(start, 1)[1].split(end, 1)[0]


@pytest.mark.slow
def test_the_demo_plays_a_shift_through_every_process_and_ends_with_the_report(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "demo"
    lines: list[str] = []
    assert demo.run(run_dir, say=lines.append) == 0
    text = "\n".join(lines)

    started = _section(text, "\n1. ", "\n2. ")
    for name in (
        "registry",
        "feedback service",
        "adapter gcos",
        "adapter amazone",
        "adapter pga",
        "inflow adapters",
    ):
        assert f"   {name} " in started and "pid " in started
    assert "mutual TLS" in started and "SQLite" in started

    shift = _section(text, "\n2. ", "\n3. ")
    looked_up = _section(shift, "b. The night's inflow", "Each hit signals")
    assert "nobody types a look-up" in looked_up
    assert "ZSM MN: 50 suspects, all checked; 6 known (12 %), 1 at a house in another region" in (
        looked_up
    )
    travelling = looked_up.split("ZSM-MN-", 2)[1]  # the first suspect at ZSM Midden-Nederland
    assert "HIT: known at 2 Safety Houses (match: BSN)" in travelling
    assert "Veiligheidshuis Rotterdam-Rijnmond  [Rotterdam-Rijnmond]" in travelling
    # Both his houses were told of each other when the second marked him: found in the sources.
    told = _section(shift, "were told of each other (matchingsmelding)", "c. The decisions")
    assert "when the second marked him, at sync:" in told
    assert "GCOS of vh-regio-utrecht-amersfoort" in told and "PGA of vh-rotterdam-rijnmond" in told

    decisions = _section(shift, "c. The decisions", "d. Advies")
    keys = {
        house: line.split("[")[1].rstrip("]")
        for line in decisions.splitlines()
        for house in ("vh-rotterdam-rijnmond", "vh-regio-utrecht-amersfoort")
        if f"-> houses/{house} " in line
    }
    assert len(keys) == 2, decisions
    pga = (run_dir / "deliveries" / "pga" / "vh-rotterdam-rijnmond.beslissingen.jsonl").read_text()
    [deviation] = [
        item
        for item in map(json.loads, pga.splitlines())
        if item["kenmerk"] == keys["vh-rotterdam-rijnmond"]
    ]
    # The desk at Midden-Nederland could not see Rotterdam's advice: Rotterdam hears the
    # decision and that one other house was told, but no line about advice, nor Amersfoort's.
    assert deviation["beslissing"] == "dagvaarding" and deviation["advies_gevolgd"] is None
    assert not deviation["reden_afwijking"]
    amersfoort = "".join(
        p.read_text("utf-8")
        for p in (run_dir / "deliveries" / "gcos").rglob("terugkoppeling-*.xml")
        if keys["vh-regio-utrecht-amersfoort"] in p.name
    )
    assert "<gevolgd>nee</gevolgd>" in amersfoort and DEVIATION_TRAVELLER in amersfoort
    gcos = run_dir / "deliveries" / "gcos" / "vh-regio-utrecht-amersfoort"
    xml = (gcos / f"terugkoppeling-{keys['vh-regio-utrecht-amersfoort']}.xml").read_text()
    assert "<gevolgd>nee</gevolgd>" in xml and DEVIATION_TRAVELLER in xml
    assert "<gevolgd>nee</gevolgd>" in _section(shift, "e. In the houses'", "AMAZONE")
    [sepot] = [line.split()[0] for line in decisions.splitlines() if "technisch sepot 01" in line]
    assert "Nothing is fed" in decisions.split(sepot)[1]
    # Its signal reached the house before; the retraction removed it from the GCOS folder (not
    # yet imported), so nothing there names the case, and an intrekking file took its place.
    gcos_files = [xml.read_text() for xml in (run_dir / "deliveries" / "gcos").rglob("*.xml")]
    assert not [x for x in gcos_files if sepot in x]
    assert any("<soort>intrekking</soort>" in x for x in gcos_files)
    assert "is retracted" in decisions.split(sepot)[1]
    assert "an aanmelding" in decisions and "sealed at the desk" in decisions
    assert any(item["kenmerk"].startswith("ref-") for item in map(json.loads, pga.splitlines()))

    advice = _section(shift, "d. Advies op aanvraag", "e. In the houses'")
    assert "answered after" in advice and "advice followed" in advice
    assert "Deciding now is refused: FAILED_PRECONDITION (ADVICE_REQUEST_IN_TERM)" in advice
    assert "  overdue  case ZSM-ON-" in _section(advice, "--overdue`:", "decides without")
    assert "ZSM decides without the advice: dagvaarding" in advice

    covenants = _section(text, "3. The covenants at work", "\n4. ")
    # No edge holds the pseudonym key, and victim support's role does not pseudonymise.
    assert (
        "DENIED: PERMISSION_DENIED (ROLE_DOES_NOT_PSEUDONYMISE), and logged by the service;"
        in covenants
    )
    decision, glass = _section(covenants, "08:10", "\n4. ").split("08:14")
    # The national covenant's version 2 (from 2026-12-01; the demo runs on the system clock)
    # lets Rotterdam's advice travel with the person: the OvJ reads it without break-glass ...
    assert "BREAK-GLASS" not in decision
    rotterdam = decision.split("Veiligheidshuis Rotterdam-Rijnmond  [Rotterdam-Rijnmond]")[1]
    assert "    advice        CURRENT" in rotterdam
    # ... but not Rotterdam's plan or A&T fields, which stay for the noodknop.
    outside = "(outside your covenant's region) [midden-nederland@v1 ovj-afdoening]"
    withheld = [line for line in rotterdam.splitlines() if outside in line]
    assert withheld and all("at.open_cases" in line for line in withheld)
    assert not any("advice" in line for line in withheld)
    assert "A&T open cases" not in decision
    assert "BREAK-GLASS" in glass and "A&T open cases" in glass

    never = _section(text, "4. What never reaches the registry", "\n5. ")
    assert "fails the 11-proef" in never
    assert "(UNAVAILABLE)" in never

    held = _section(text, "5. What the services hold", "\n6. ").strip().splitlines()[2:]
    assert len(held) == 4 and all(line.endswith(": no") for line in held), held
    assert "BSN" in held[0] and "feedback service's database files" in held[3]

    officer = _section(text, "\n6. ", "\n7. ")
    assert "zsm-midden-nederland-slachtofferhulp" not in officer  # it never reached the registry
    assert "BREAK-GLASS  zsm-midden-nederland-ovj" in officer
    assert f"break-glass reason  {demo.BREAK_GLASS_REASON}" in officer
    assert "1 break-glass entry to review" in officer
    assert "covenant midden-nederland@v1, national@v2" in officer
    assert "OK: the access log verifies:" in officer

    report = _section(text, "7. The month's management report", "All processes stopped")
    rows = report.splitlines()
    assert any(row.strip().startswith("ZSM look-ups") for row in rows)
    assert "< 5" in report
    for name in REGION_NAMES:  # the region's own table of its houses
        assert any(row.startswith(f"   {name}  ") for row in rows), name
    assert "<html" in (run_dir / "report.html").read_text("utf-8").lower()
    assert "baken report --month " in report and "--html" in report

    assert "All processes stopped" in text and "demo stopped" not in text
    assert _processes_mentioning(str(run_dir)) == []


@pytest.mark.slow
def test_ctrl_c_stops_every_process_and_says_so(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    with (
        (tmp_path / "stderr").open("w+") as stderr_file,
        subprocess.Popen(
            [sys.executable, "-m", "cli.main", "demo", "--data-dir", str(run_dir)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
        ) as process,
    ):
        reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout or ()])
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while not any(line.startswith("2. ") for line in seen):
                assert time.monotonic() < deadline, "the shift did not start:\n" + "".join(seen)
                assert process.poll() is None or not lines.empty(), "ended:\n" + "".join(seen)
                with contextlib.suppress(queue.Empty):
                    seen.append(lines.get(timeout=0.5))
            time.sleep(1.0)  # into the shift: sources written, the adapters syncing
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(timeout=5)
        stderr_file.seek(0)
        stderr = stderr_file.read()
    while not lines.empty():
        seen.append(lines.get())
    stdout = "".join(seen)

    assert code == 130, stdout + stderr
    assert stdout.rstrip().endswith("demo stopped")
    assert "Traceback" not in stdout + stderr
    assert stderr == ""
    assert _processes_mentioning(str(run_dir)) == []


def test_the_demo_refuses_a_data_dir_that_holds_a_registry(tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "registry.db").write_bytes(b"")
    with pytest.raises(SystemExit, match="already holds a registry"):
        demo.run(tmp_path, say=lambda _line: None)
    assert not (tmp_path / "pki").exists() and not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_keep_running_shows_the_desk_until_ctrl_c_ends_the_demo_cleanly(tmp_path: Path) -> None:
    """`baken demo --keep-running`: the desk's screen's address and sign-in are printed, the
    screen serves the next morning's inflow to the KPC'er signed in, and Ctrl-C ends it all
    with exit code 0."""
    import http.client
    import re
    import urllib.parse

    run_dir = tmp_path / "demo"
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "--keep-running", "--data-dir", str(run_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout or ()])
        reader.start()
        try:
            deadline = time.monotonic() + 240
            while not any("keeps running until Ctrl-C" in line for line in seen):
                assert time.monotonic() < deadline, "not kept running:\n" + "".join(seen)
                assert process.poll() is None or not lines.empty(), "ended:\n" + "".join(seen)
                with contextlib.suppress(queue.Empty):
                    seen.append(lines.get(timeout=0.5))
            text = "".join(seen)
            port = int(re.search(r"Open http://127\.0\.0\.1:(\d+)/ in a browser", text)[1])  # type: ignore[index]
            password = re.search(r"as kpc\s+password (\S+)", text)[1]  # type: ignore[index]
            assert "8. The next morning at ZSM Midden-Nederland" in text

            def call(method: str, path: str, body: str = "", **headers: str) -> Any:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                try:
                    connection.request(method, path, body=body.encode(), headers=headers)
                    response = connection.getresponse()
                    return response.status, response.getheader("Set-Cookie"), response.read()
                finally:
                    connection.close()

            _, cookie, form = call("GET", "/signin")
            token = re.search(r'name="csrf" value="([^"]+)"', form.decode())[1]  # type: ignore[index]
            status, session, _ = call(
                "POST",
                "/signin",
                urllib.parse.urlencode({"name": "kpc", "password": password, "csrf": token}),
                Cookie=cookie.split(";")[0],
                **{"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert status == 303
            inflow = json.loads(call("GET", "/api/inflow", Cookie=session.split(";")[0])[2])
            assert len(inflow["entries"]) == 4, inflow

            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(timeout=5)
    while not lines.empty():
        seen.append(lines.get())
    stdout = "".join(seen)
    assert code == 0, stdout
    assert "All processes stopped" in stdout and "demo stopped" not in stdout
    assert "Traceback" not in stdout
    assert _processes_mentioning(str(run_dir)) == []
