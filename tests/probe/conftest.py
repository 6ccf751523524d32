"""A real ledger process per test, started on an ephemeral port and stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_TIMEOUT_S = 15.0


@dataclass
class LedgerProcess:
    proc: subprocess.Popen
    data_dir: Path
    port: int
    boot_id: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"


def start_ledger(data_dir: Path, port: int = 0, extra_args: list[str] | None = None) -> LedgerProcess:
    ready = data_dir / "ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "livedrill_lab.ledger", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
        + (extra_args or []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists():
            info = json.loads(ready.read_text())
            assert info["pid"] == proc.pid
            return LedgerProcess(proc, data_dir, info["port"], info["boot_id"])
        if proc.poll() is not None:
            raise RuntimeError(f"ledger exited with {proc.returncode}: {proc.stderr.read().decode()}")
        time.sleep(0.02)
    stop_ledger_process(proc)
    raise RuntimeError("ledger did not become ready")


def stop_ledger_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture
def ledger(tmp_path):
    started: list[LedgerProcess] = []

    def _start(data_dir: Path | None = None, port: int = 0, extra_args: list[str] | None = None) -> LedgerProcess:
        lp = start_ledger(data_dir or tmp_path / "ledger", port, extra_args)
        started.append(lp)
        return lp

    yield _start
    for lp in started:
        stop_ledger_process(lp.proc)
