"""`livedrill preflight` on the KubeVirt lab with a `forecast:` section: the cluster's own migration settings
(bandwidthPerMigration 64Mi, maxDowntimeMs 50) and the VMI's 256 MiB feed the forecast; one that cannot
converge refuses the drill before anything moves, with its figures in the evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.preflight.conftest import kubectl, run_cli, spec_data, write_spec

pytestmark = pytest.mark.e2e
MI = 1024**2


def _recorded(tmp_path: Path) -> dict:
    [run] = [p for p in (tmp_path / "evidence").iterdir() if (p / "preflight.json").exists()]
    [check] = [c for c in json.loads((run / "preflight.json").read_text())["checks"] if c["name"] == "convergence-forecast"]
    return check


def test_a_guest_dirtying_at_the_migration_bandwidth_is_refused_with_its_figures(lab, tmp_path):
    data = spec_data(lab, tmp_path, forecast={"dirty_rate_bytes_per_s": "64Mi"})
    done = run_cli("preflight", str(write_spec(tmp_path, data)))
    assert done.returncode == 1, done.stdout + done.stderr
    check = _recorded(tmp_path)
    assert check["status"] == "fail"
    assert "will not converge" in check["message"] and "the remainder never shrinks" in check["message"]
    assert check["evidence"]["limits"]["bandwidth_bytes_per_s"] == 64 * MI  # the cluster's bandwidthPerMigration
    assert check["evidence"]["inputs"]["memory_bytes"] == 256 * MI
    assert check["evidence"]["limits"]["post_copy_fails_vm"] is True  # the lab's VM is labelled tier=core
    assert kubectl(lab, "get", "virtualmachineinstancemigrations", "-A", "-o", "name").strip() == ""  # nothing moved


def test_a_quiet_guest_passes_with_the_predicted_time_and_pause(lab, tmp_path):
    """6 MiB/s: round 1 (256 MiB at 64 MiB/s, 4 s) dirties 24 MiB; round 2 (0.375 s) dirties 2.25 MiB, within the
    3.2 MiB that 50 ms carries: 4.375 s + a 35 ms pause."""
    data = spec_data(lab, tmp_path, forecast={"dirty_rate_bytes_per_s": "6Mi"})
    done = run_cli("preflight", str(write_spec(tmp_path, data)))
    assert done.returncode == 0, done.stdout + done.stderr
    check = _recorded(tmp_path)
    assert check["status"] == "pass", check["message"]
    expected = check["evidence"]["expected"]
    assert expected["rounds"] == 2
    assert expected["migration_s"] == pytest.approx(4.375 + 2.25 / 64)
    assert expected["switchover_pause_ms"] == pytest.approx(2.25 / 64 * 1000)
