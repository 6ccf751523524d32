"""The command line as a user runs it against the lab: run, preflight, evidence verify and export, exit codes."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from flows.export import export
from livedrill.cli import main
from livedrill.outcomes import ExitCode
from tests.lab_helpers import lab_spec
from tests.e2e.safety import assert_safe

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]
VMIMS = "/apis/kubevirt.io/v1/namespaces/banking/virtualmachineinstancemigrations"


def _spec_file(lab, tmp_path, **overrides) -> Path:
    _, text = lab_spec(lab, tmp_path, **overrides)
    path = tmp_path / "drill.yaml"
    path.write_text(text)
    return path


def test_run_verify_tamper_and_export(lab, tmp_path, capsys):
    spec = _spec_file(lab, tmp_path)
    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "VERDICT: PASSED" in out and "observed downtime" in out
    run_dir = next((tmp_path / "evidence").glob("*-lab-targeted-*"))

    assert main(["evidence", "verify", str(run_dir)]) == ExitCode.INTEGRITY_ONLY  # intact; no key pinned, so origin not established
    verdict = run_dir / "verdict.json"
    original = verdict.read_bytes()
    flipped = bytearray(original)
    flipped[10] ^= 0x01  # one bit of one byte
    verdict.write_bytes(bytes(flipped))
    capsys.readouterr()
    assert main(["evidence", "verify", str(run_dir)]) == 1
    assert "verdict.json" in capsys.readouterr().err
    verdict.write_bytes(original)

    quarter = json.loads((run_dir / "run.json").read_text())["started_at"][:7]
    year, month = int(quarter[:4]), int(quarter[5:7])
    q = f"{year}Q{(month - 1) // 3 + 1}"
    bundle = tmp_path / "bundle.tar.gz"
    assert main(["evidence", "export", "--quarter", q, "--out", str(bundle), "--archive", str(tmp_path / "evidence")]) == 0
    names = tarfile.open(bundle).getnames()
    assert any(n.endswith("report.html") for n in names) and any(n.endswith("VERIFY.md") for n in names)
    assert any(run_dir.name in n for n in names)

    result = export(str(tmp_path / "evidence"), q, str(tmp_path / "flow-bundle.tar.gz"))  # the Prefect flow
    assert result["runs"] == [run_dir.name]


def test_preflight_only_changes_nothing(lab, tmp_path, capsys):
    spec = _spec_file(lab, tmp_path)
    assert main(["preflight", str(spec)]) == 0
    out = capsys.readouterr().out
    for check in ("vmi-running", "live-migratable", "target-node", "evidence-archive", "probe-smoke"):
        assert check in out
    assert lab.api("GET", VMIMS)["items"] == []
    assert assert_safe(lab) == "node-1"


def test_preflight_failure_exits_1_and_names_the_remedy(lab, tmp_path, capsys):
    spec = _spec_file(lab, tmp_path, mode={"kind": "targeted", "target_node": "node-9"})
    assert main(["preflight", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "node-9 does not exist" in out and "remedy" in out


def test_bad_spec_exits_2_before_touching_anything(lab, tmp_path, capsys):
    spec = _spec_file(lab, tmp_path)
    spec.write_text(spec.read_text().replace("kind: targeted", "kind: sideways"))
    assert main(["run", str(spec)]) == 2
    assert "mode" in capsys.readouterr().err
    assert lab.api("GET", VMIMS)["items"] == []
    assert not (tmp_path / "evidence").exists()
