"""A drill whose spec names a Time-Stamping Authority: every sealed run is timestamped by it (a local OpenSSL TSA),
and a TSA that fails leaves the drill's verdict and seal alone, the stamp added later by `livedrill evidence timestamp`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.drill import drill
from livedrill.cli import main
from livedrill.evidence.manifest import TIMESTAMP_NAME
from livedrill.evidence.verify import TimestampPolicy, verify_run_report
from livedrill.outcomes import DrillOutcome, ExitCode
from livedrill.spec import parse_spec
from tests.e2e.test_new_platform import SPEC, pretend  # noqa: F401 - the in-test platform's fixture
from tests.evidence.test_timestamp import local_tsa  # noqa: F401 - a real OpenSSL TSA on a free port

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]


def _stamped_spec(tmp_path: Path, tsa_url: str) -> tuple[Path, str]:
    data = yaml.safe_load(SPEC)
    data["evidence"] = {"dir": str(tmp_path / "evidence"), "signing_key": str(tmp_path / "keys" / "signing.pem"),
                        "generate_lab_key": True, "tsa": {"url": tsa_url, "timeout_s": 5, "deadline_s": 2}}
    text = yaml.safe_dump(data, sort_keys=False)
    path = tmp_path / "stamped.yaml"
    path.write_text(text)
    return path, text


def test_every_sealed_drill_is_timestamped_by_the_specs_tsa(pretend, local_tsa):  # noqa: F811
    _, text = _stamped_spec(pretend, local_tsa.url)
    verdict = drill(parse_spec(text), text)

    assert verdict.outcome is DrillOutcome.PASSED, verdict.reasons
    run_dir = Path(verdict.evidence_dir)
    assert (run_dir / TIMESTAMP_NAME).exists()
    report = verify_run_report(run_dir, timestamps=TimestampPolicy(roots=[local_tsa.root], required=True))
    assert report.problems == []


def test_a_failing_tsa_leaves_the_drill_sealed_and_the_stamp_is_added_later(pretend, local_tsa, capsys):  # noqa: F811
    path, text = _stamped_spec(pretend, local_tsa.url)
    local_tsa.mode[0] = "garbage"  # the TSA answers, but not with a timestamp
    verdict = drill(parse_spec(text), text)

    assert verdict.outcome is DrillOutcome.PASSED, verdict.reasons
    run_dir = Path(verdict.evidence_dir)
    assert (run_dir / "MANIFEST.json").exists() and not (run_dir / TIMESTAMP_NAME).exists()
    required = TimestampPolicy(roots=[local_tsa.root], required=True)
    assert [p.code for p in verify_run_report(run_dir, timestamps=required).problems] == ["missing-timestamp"]

    local_tsa.mode[0] = "ok"
    assert main(["evidence", "timestamp", str(path)]) == ExitCode.OK
    assert f"{run_dir.name}: stamped at" in capsys.readouterr().out
    assert verify_run_report(run_dir, timestamps=required).problems == []
    assert main(["evidence", "timestamp", str(path)]) == ExitCode.OK  # nothing left to stamp
