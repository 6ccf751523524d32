"""`livedrill run` of a drill whose forecast says it will not converge: refused before anything moves, with the
forecast's figures in the sealed evidence; and of one that converges: the forecast beside the migration as the
cluster recorded it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from livedrill.cli import main
from livedrill.forecast import ACCURACY_TOLERANCE
from tests.e2e.safety import assert_safe
from tests.lab_helpers import lab_spec

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]
VMIMS = "/apis/kubevirt.io/v1/namespaces/banking/virtualmachineinstancemigrations"


def test_a_drill_that_cannot_converge_is_refused_before_anything_moves(lab, tmp_path, capsys):
    # The lab's cluster caps a migration at 64 MiB/s; a guest dirtying 64 MiB/s never converges.
    _, text = lab_spec(lab, tmp_path, forecast={"dirty_rate_bytes_per_s": "64Mi"})
    spec = tmp_path / "drill.yaml"
    spec.write_text(text)
    assert main(["run", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "VERDICT: FAILED" in out and "convergence-forecast" in out
    assert lab.api("GET", VMIMS)["items"] == []
    assert assert_safe(lab) == "node-1"
    run_dir = next((tmp_path / "evidence").glob("*-lab-targeted-*"))
    checks = {c["name"]: c for c in json.loads((run_dir / "preflight.json").read_text())["checks"]}
    forecast = checks["convergence-forecast"]
    assert forecast["status"] == "fail" and "will not converge" in forecast["message"]
    assert forecast["evidence"]["expected"]["ending"] == "no-progress"
    assert any("convergence-forecast" in r for r in json.loads((run_dir / "verdict.json").read_text())["reasons"])
    [lab_key] = (tmp_path / "evidence" / "keys").glob("*.pub")  # the lab's key, as the archive publishes it
    assert main(["evidence", "verify", str(run_dir), "--trusted-key", str(lab_key)]) == 0


def test_the_shipped_lab_drill_has_no_forecast_so_the_check_is_not_applicable(lab, tmp_path, capsys):
    _, text = lab_spec(lab, tmp_path)
    spec = tmp_path / "drill.yaml"
    spec.write_text(text)
    assert main(["preflight", str(spec)]) == 0
    run_dir = next(p for p in (tmp_path / "evidence").iterdir() if (p / "preflight.json").exists())
    checks = {c["name"]: c for c in json.loads(Path(run_dir, "preflight.json").read_text())["checks"]}
    assert checks["convergence-forecast"]["status"] == "not_applicable"


def test_a_passing_drill_sets_its_forecast_beside_the_migration_the_cluster_recorded(lab, tmp_path):
    _, text = lab_spec(lab, tmp_path, forecast={"dirty_rate_bytes_per_s": 0})
    spec = tmp_path / "drill.yaml"
    spec.write_text(text)
    assert main(["run", str(spec)]) == 0
    run_dir = next((tmp_path / "evidence").glob("*-lab-targeted-*"))
    pre = {c["name"]: c for c in json.loads((run_dir / "preflight.json").read_text())["checks"]}
    [accuracy] = [c for c in json.loads((run_dir / "postcheck.json").read_text()) if c["name"] == "forecast-accuracy"]
    state = lab.api("GET", "/apis/kubevirt.io/v1/namespaces/banking/virtualmachineinstances/banking-core-vm")[
        "status"]["migrationState"]
    recorded = (datetime.fromisoformat(state["endTimestamp"].replace("Z", "+00:00"))
                - datetime.fromisoformat(state["startTimestamp"].replace("Z", "+00:00"))).total_seconds()
    predicted = pre["convergence-forecast"]["evidence"]["expected"]["migration_s"]
    assert accuracy["subject"] == "vm banking/banking-core-vm"
    assert accuracy["evidence"]["actual"]["migration_s"] == pytest.approx(recorded)
    assert accuracy["evidence"]["forecast"]["migration_s"] == predicted
    within = abs(recorded - predicted) / predicted <= ACCURACY_TOLERANCE
    assert accuracy["status"] == ("pass" if within else "warn"), accuracy["message"]
