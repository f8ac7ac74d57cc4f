"""Baken's services as the benchmarks run them: each `baken serve NAME` a process of its own, as
in production, so that its CPU and memory can be read from /proc."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc

from baken import pki
from baken.client import connect

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def service(
    name: str,
    port: int,
    *,
    pki_dir: Path,
    data_dir: Path,
    log: Path,
    env: dict[str, str],
    extra: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """`baken serve NAME` on 127.0.0.1:port, its log lines (one per RPC, JSON) into `log`;
    waits until it answers, and stops it at the end."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "serve",
                name,
                "--address",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(data_dir),
                "--pki-dir",
                str(pki_dir),
                *extra,
            ],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            channel = connect(f"127.0.0.1:{port}", pki.TlsFiles.of(pki_dir, "operator"))
            try:
                grpc.channel_ready_future(channel).result(timeout=120)
            finally:
                channel.close()
            yield process
        finally:
            process.terminate()
            process.wait(60)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process so far."""
    tick = os.sysconf("SC_CLK_TCK")
    result = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        result[name] = (int(fields[11]) + int(fields[12])) / tick
    return result


def memory(pid: int) -> dict[str, int]:
    """The process's resident memory now (rss) and at its peak (hwm), and of rss what is its
    own (anon: heap, stacks) and what are pages of mapped files (file: SQLite's mmap of the
    database, shared with the page cache and given back under pressure), in bytes."""
    names = {"VmRSS": "rss", "VmHWM": "hwm", "RssAnon": "anon", "RssFile": "file"}
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in names:
            found[names[key]] = int(value.split()[0]) * 1024
    return found
