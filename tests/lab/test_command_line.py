"""`livedrill lab ...` as the operator runs it: the product runs the lab's own command line in a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from livedrill.cli import main

LIVEDRILL = Path(sys.executable).parent / "livedrill"
CLI_TIMEOUT_S = 60


def livedrill(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LIVEDRILL), *args], capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def test_status_and_down_reach_the_running_lab(lab, tmp_path):
    state_dir = str(tmp_path / "lab")

    status = livedrill("lab", "status", "--state-dir", state_dir)
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == f"lab running: API {lab.api_url}, kubeconfig {lab.kubeconfig}"

    down = livedrill("lab", "down", "--state-dir", state_dir)
    assert (down.returncode, down.stdout.strip()) == (0, "lab down"), down.stderr
    assert not any(record.alive() for record in lab.processes)

    gone = livedrill("lab", "status", "--state-dir", state_dir)
    assert (gone.returncode, gone.stdout.strip()) == (1, "lab is not running")


def test_without_the_lab_package_the_command_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "livedrill_lab", None)  # what find_spec sees when it is not installed

    assert main(["demo", "--state-dir", str(tmp_path / "lab")]) == 2

    err = capsys.readouterr().err
    assert "livedrill_lab is not installed" in err and "pip install -e ./lab" in err
    assert not (tmp_path / "lab").exists()
