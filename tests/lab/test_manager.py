"""Lab lifecycle: start (detached processes, files), status, stop (by PID, idempotent), start-up failures."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import httpx
import pytest

from livedrill_lab.manager import LabError, lab_status, start_lab, stop_lab

pytestmark = pytest.mark.e2e
# stop_lab allows each process 10 s to exit on SIGTERM before SIGKILL.
STOP_BUDGET_S = 45


def test_start_status_stop(tmp_path):
    state = tmp_path / "lab"
    info = start_lab(state, api_port=0, ledger_port_base=0)
    try:
        assert lab_status(state) == info
        recorded = json.loads((state / "lab.json").read_text())
        assert recorded["api_url"] == info.api_url and recorded["ledger_urls"] == info.ledger_urls
        assert {p["role"] for p in recorded["processes"]} == {"api", "ledger banking/banking-core-vm"}
        assert int((state / "api.pid").read_text()) == info.process("api").pid
        for record in info.processes:
            assert record.alive()
            assert os.getsid(record.pid) == record.pid  # its own session: it outlives the starting command
        kubeconfig = json.loads((state / "kubeconfig").read_text())
        assert kubeconfig["current-context"] == "livedrill-lab"
        assert stat.S_IMODE((state / "kubeconfig").stat().st_mode) == 0o600
        health = httpx.get(info.ledger_urls["banking/banking-core-vm"] + "/healthz", timeout=5).json()
        assert health["pid"] == info.workload_pid("banking/banking-core-vm")
        assert info.api("GET", "/version")["major"] == "1"
        with pytest.raises(LabError, match="already running"):
            start_lab(state, api_port=0, ledger_port_base=0)
    finally:
        stop_lab(state)
    assert lab_status(state) is None
    assert not any(record.alive() for record in info.processes)
    assert (state / "logs" / "api.log").exists()  # stopping removes nothing
    stop_lab(state)  # idempotent


def test_stop_continues_a_paused_workload_before_terminating_it(tmp_path):
    state = tmp_path / "lab"
    info = start_lab(state, api_port=0, ledger_port_base=0)
    ledger = info.process("ledger banking/banking-core-vm")
    os.kill(ledger.pid, signal.SIGSTOP)
    stop_lab(state, timeout_s=5)
    assert not ledger.alive()
    assert not (state / "ledgers" / "banking__banking-core-vm" / "ready").exists()  # it exited cleanly


def test_a_busy_api_port_is_reported_and_nothing_is_left_running(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LabError, match="API server") as failure:
            start_lab(tmp_path / "lab", api_port=port, ledger_port_base=0, ready_timeout_s=15)
    assert "Address already in use" in str(failure.value)
    recorded = json.loads((tmp_path / "lab" / "lab.json").read_text())
    for record in recorded["processes"]:
        with pytest.raises(ProcessLookupError):
            os.kill(record["pid"], 0)


def test_a_lab_tied_to_a_dead_process_ends_itself(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    state = tmp_path / "lab"
    try:
        info = start_lab(state, api_port=0, ledger_port_base=0, exit_with_pid=owner.pid)
        owner.kill()
        owner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(r.alive() for r in info.processes):
            time.sleep(0.1)
        assert not any(r.alive() for r in info.processes)
    finally:
        owner.kill()
        stop_lab(state)


def test_foreground_lab_stops_on_sigterm(tmp_path):
    state = tmp_path / "lab"
    command = ("import sys; from pathlib import Path; from livedrill_lab.manager import start_lab; "
               f"start_lab(Path({str(state)!r}), api_port=0, ledger_port_base=0, foreground=True)")
    foreground = subprocess.Popen([sys.executable, "-c", command])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and lab_status(state) is None:
            time.sleep(0.1)
        info = lab_status(state)
        assert info is not None, "the foreground lab did not come up"
        foreground.send_signal(signal.SIGTERM)
        try:
            returncode = foreground.wait(timeout=STOP_BUDGET_S)
        except subprocess.TimeoutExpired:
            logs = {r.role: r.log.read_text(errors="replace")[-2000:] for r in info.processes}
            alive = {r.role: r.alive() for r in info.processes}
            raise AssertionError(f"the foreground lab did not stop; alive: {alive}; logs: {logs}") from None
        assert returncode == 0
        assert not any(record.alive() for record in info.processes)
    finally:
        foreground.kill()
        foreground.wait(timeout=10)
        stop_lab(state)
