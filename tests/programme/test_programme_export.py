"""`evidence export --programme`: the quarter's coverage in the auditor bundle, every in-scope VM with its evidence
link, the exceptions with their approver, and a first page that says when the quarter is below policy."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from livedrill.cli import main
from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.outcomes import ExitCode
from tests.evidence.conftest import write_drill_evidence

DRILLS = Path(__file__).resolve().parents[2] / "drills"


def _programme(quarter: str, window_day: str) -> str:
    return f"""\
kind: programme
name: core-tier
quarter: {quarter}
clusters:
  - name: lab
    platform: {{kind: kubevirt}}
    exclusions:
      - {{vm: banking/legacy, reason: SR-IOV passthrough NIC, approved_by: head-of-infrastructure}}
windows:
  timezone: Asia/Shanghai
  slots:
    - {{start: "{window_day}T01:00", end: "{window_day}T05:00"}}
drill: {{spec: drill.yaml}}
sign_off: {{roles: [change-manager]}}
"""


@pytest.fixture
def exported(tmp_path):
    archive = Archive(tmp_path / "archive")
    run = archive.new_run("lab-targeted")
    write_drill_evidence(run, series_bytes=256)  # banking/banking-core-vm on cluster lab, passed
    run.seal(Signer.generate())
    year, month = int(run.run_id[:4]), int(run.run_id[4:6])
    quarter = f"{year}Q{(month - 1) // 3 + 1}"
    (tmp_path / "drill.yaml").write_text((DRILLS / "lab-targeted.yaml").read_text())
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"targets": [
        {"cluster": "lab", "vm": vm, "node": "node-1", "gib": 2, "labels": {"tier": "core"}}
        for vm in ("banking/banking-core-vm", "banking/core-2", "banking/legacy")]}))
    first_month = 3 * ((month - 1) // 3) + 1
    programme = tmp_path / "programme.yaml"
    programme.write_text(_programme(quarter, f"{year}-{first_month:02d}-15"))
    return tmp_path, run.run_id, quarter, programme, inventory


def _bundle_files(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_the_bundle_carries_the_quarters_coverage_and_says_it_is_below_policy(exported, capsys):
    root, run_id, quarter, programme, inventory = exported
    bundle = root / "bundle.tar.gz"
    code = main(["evidence", "export", "--archive", str(root / "archive"), "--quarter", quarter, "--out", str(bundle),
                 "--programme", str(programme), "--inventory", str(inventory)])
    assert code == ExitCode.OK, capsys.readouterr().err

    files = _bundle_files(bundle)
    coverage = json.loads(files["coverage.json"])
    rows = {r["vm"]["name"]: r for r in coverage["rows"]}
    assert (rows["banking-core-vm"]["status"], rows["banking-core-vm"]["last_run"]) == ("passed", run_id)
    assert (rows["core-2"]["status"], rows["core-2"]["last_run"]) == ("not_drilled", None)
    assert [(e["vm"]["name"], e["kind"], e["approved_by"]) for e in coverage["exceptions"]] == [
        ("legacy", "excluded", "head-of-infrastructure")]
    assert coverage["figures"] == {"in_scope": 3, "to_drill": 2, "passed": 1, "failed": 0, "open_deficiencies": 0,
                                   "not_drilled": 1, "exceptions": 1, "complete": False}

    report = files["report.html"].decode()
    first_page = report[:report.index("<h2>")]
    assert f"Coverage of {quarter} is below policy: 1 core VM(s) to drill have not passed" in first_page
    assert "本季度覆盖率低于策略要求" in first_page
    assert f'href="archive/{run_id}/"' in report and "本季度未演练 / not drilled this quarter" in report
    assert "SR-IOV passthrough NIC" in report
    assert any(line.endswith("  coverage.json") for line in files["SHA256SUMS"].decode().splitlines())

    record = json.loads(files["test-record.json"])  # the quarter's test record: one test, tied to its evidence
    (test,) = record["tests"]
    assert (test["test_id"], test["vm"]["name"], test["outcome"]) == (run_id, "banking-core-vm", "passed")
    assert "live migration of core VM banking/banking-core-vm on lab" in test["scenario"]
    assert "VirtualMachineInstanceMigration" in test["method"] and "ms" in test["expected"]
    assert record["coverage"]["to_drill"] == 2 and record["exceptions"][0].startswith("lab banking/legacy: excluded")
    assert f'href="archive/{run_id}/"' in report[report.index('id="test-record"'):]

    from trestle.oscal.assessment_results import Model  # the OSCAL document, coverage result included, is valid OSCAL

    oscal = json.loads(files["oscal/assessment-results.json"])
    Model.model_validate(oscal)
    result = oscal["assessment-results"]["results"][-1]
    states = {next(p["value"] for p in f["props"] if p["name"] == "vm"): f["target"]["status"]["state"] for f in result["findings"]}
    assert states == {"banking/banking-core-vm": "satisfied", "banking/core-2": "not-satisfied", "banking/legacy": "not-satisfied"}


def test_a_programme_of_another_quarter_is_refused_and_nothing_is_written(exported, capsys):
    root, _, quarter, programme, inventory = exported
    year = int(quarter[:4])
    other = root / "other.yaml"
    other.write_text(_programme(f"{year + 1}Q1", f"{year + 1}-01-15"))
    bundle = root / "bundle.tar.gz"
    assert main(["evidence", "export", "--archive", str(root / "archive"), "--quarter", quarter, "--out", str(bundle),
                 "--programme", str(other), "--inventory", str(inventory)]) == ExitCode.BAD_INPUT
    assert f"covers {year + 1}Q1, not {quarter}" in capsys.readouterr().err
    assert not bundle.exists()
