"""A bundle exported from real lab drills verifies with livedrill and with the steps of the bundle's VERIFY.md,
its report shows the drills and renders, and the lab VM's cloud-init password is nowhere in it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from flows.drill import drill
from livedrill.evidence.export import bundle_name, export_quarter
from livedrill.evidence.keys import load_signer
from livedrill.evidence.manifest import run_started_at
from livedrill.evidence.verify import verify_archive
from livedrill.outcomes import DrillOutcome
from tests.lab_helpers import lab_spec

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]


def test_bundle_of_lab_drills_verifies_everywhere(lab, tmp_path: Path) -> None:
    # Generous latency SLO: this test is about the evidence, and a shared 2-core machine stretches the lab's tail.
    spec, text = lab_spec(lab, tmp_path, slo={"p99_latency_ms": 2000, "max_downtime_ms": 2000})
    passed = drill(spec, text)
    assert passed.outcome is DrillOutcome.PASSED, passed.reasons
    # A second drill that fails its downtime SLO: the lab freezes the ledger longer than allowed.
    strict, strict_text = lab_spec(lab, tmp_path, slo={"max_downtime_ms": 1})
    failed = drill(strict, strict_text)
    assert failed.outcome is DrillOutcome.FAILED, (failed.outcome, failed.reasons)

    archive = tmp_path / "evidence"
    started = run_started_at(Path(passed.evidence_dir).name)
    quarter = f"{started.year}Q{(started.month - 1) // 3 + 1}"
    signer = load_signer(tmp_path / "keys" / "signing.pem")
    result = export_quarter(archive, quarter, tmp_path / "out.tar.gz", signer=signer, trusted_keys=[signer.public_key])
    assert result.runs == [Path(passed.evidence_dir).name, Path(failed.evidence_dir).name]

    with tarfile.open(result.bundle) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    bundle = tmp_path / "unpacked" / bundle_name(quarter)
    assert verify_archive(bundle / "archive", quarter=quarter, trusted_keys=[signer.public_key]) == []
    if shutil.which("openssl") and shutil.which("sha256sum"):
        [script] = re.findall(r"^```sh\n(.*?)^```$", (bundle / "VERIFY.md").read_text(), flags=re.S | re.M)
        steps = subprocess.run(["sh", "-c", script, "verify.sh", signer.key_id], cwd=bundle, capture_output=True, text=True, timeout=120)
        assert steps.returncode == 0 and "ALL CHECKS PASSED" in steps.stdout, steps.stdout + steps.stderr

    html = (bundle / "report.html").read_text()
    for run_dir in (passed.evidence_dir, failed.evidence_dir):
        assert f'id="{Path(run_dir).name}"' in html
    assert "通过 / PASSED" in html and "未通过 / FAILED" in html
    assert html.count("<polyline") >= 2  # the real probe series drew latency lines
    results = json.loads((bundle / "oscal" / "assessment-results.json").read_text())["assessment-results"]["results"]
    assert [r["findings"][0]["target"]["status"]["state"] for r in results] == ["satisfied", "not-satisfied"]
    seed_secret = b"change" + b"me"
    assert all(seed_secret not in p.read_bytes() for p in bundle.rglob("*") if p.is_file())
