"""preflight.json has one shape (PreflightResult, extra fields forbidden) whoever writes it: a dry run, the gate
alone (`livedrill preflight`), or a pre-flight whose platform cannot be reached; the evidence tools read it."""

from __future__ import annotations

from pathlib import Path

import pytest

from livedrill.cli import main
from livedrill.evidence.export_summary import summarize_run
from livedrill.evidence.verify import verify_run
from livedrill.outcomes import ExitCode, PreflightResult
from livedrill.spec import DrillSpec
from livedrill.stages.preflight import read_preflight
from tasks.dryrun import open_dry_run
from tasks.preflight import preflight
from tests.preflight.conftest import spec_data, write_spec

pytestmark = pytest.mark.e2e


def _recorded(run_dir: Path) -> PreflightResult:
    return PreflightResult.model_validate_json((run_dir / "preflight.json").read_text())


def test_a_dry_run_and_the_gate_write_the_same_schema_and_the_evidence_tools_read_it(lab, tmp_path, capsys):
    data = spec_data(lab, tmp_path)
    # The dry run's own steps (the flow discards its scratch run afterwards): its pre-flight as recorded.
    dry_dir = Path(open_dry_run.fn(DrillSpec.model_validate(data)))
    gate = preflight.fn(str(dry_dir))
    dry = _recorded(dry_dir)
    # as recorded: the platform's raw objects stay in objects/, not in the record
    assert dry.model_dump() == gate.model_dump()
    assert [(str(b.ref), b.node) for b in dry.before] == [("banking/banking-core-vm", "node-1")]

    assert main(["preflight", str(write_spec(tmp_path, data))]) == 0
    [run_dir] = [p for p in (tmp_path / "evidence").iterdir() if (p / "preflight.json").exists()]
    real = _recorded(run_dir)
    assert real.passed and {c.name for c in real.checks} == {c.name for c in dry.checks}
    assert real.before == dry.before

    assert verify_run(run_dir) == []
    assert main(["evidence", "verify", str(run_dir)]) == ExitCode.INTEGRITY_ONLY  # intact; no key pinned, so origin not established
    assert {row.name for row in summarize_run(run_dir).preflight} == {c.name for c in real.checks}
    assert read_preflight(run_dir).model_dump() == real.model_dump()


def test_an_unreachable_platform_is_recorded_in_the_same_schema(lab, tmp_path):
    data = spec_data(lab, tmp_path)
    data["platform"]["kubeconfig"] = str(tmp_path / "no-such-kubeconfig")
    run_dir = Path(open_dry_run.fn(DrillSpec.model_validate(data)))
    gate = preflight.fn(str(run_dir))
    recorded = _recorded(run_dir)
    assert recorded == gate and not recorded.passed
    assert recorded.error and "cannot reach the platform" in recorded.error
