"""Who owns a run: only a live process with the recorded start time on this host keeps a run from recovery."""

import os
import socket
import subprocess
import sys

import psutil
import pytest

from livedrill.stages.recovery import owner_alive

ME = psutil.Process(os.getpid())
HOST = socket.gethostname()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("owner, alive", [
    ({"pid": ME.pid, "create_time": ME.create_time(), "host": HOST}, True),
    ({"pid": ME.pid, "create_time": ME.create_time() - 100, "host": HOST}, False),  # a recycled pid
    ({"pid": 1, "create_time": 0, "host": "another-host"}, True),  # cannot be judged from here: not taken over
    ({"pid": "not-a-pid", "create_time": 0, "host": HOST}, False),
    ({}, False),
])
def test_owner_alive(owner, alive):
    assert owner_alive(owner) is alive


def test_an_exited_process_does_not_own_its_run():
    assert owner_alive({"pid": _dead_pid(), "create_time": 0.0, "host": HOST}) is False
