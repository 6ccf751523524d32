"""Drills already run, from the evidence archive: sealed targeted drills count, per VM."""

from datetime import datetime, timezone

import pytest

from livedrill.cli import main
from livedrill.evidence.archive import Archive
from livedrill.evidence.export_summary import summarize_run
from livedrill.evidence.keys import Signer
from livedrill.outcomes import ExitCode
from livedrill.programme.history import archive_history, records_of
from tests.evidence.conftest import write_drill_evidence
from tests.programme.test_programme_cli import SHIPPED

T0 = datetime(2026, 11, 26, 15, 30, tzinfo=timezone.utc)  # write_drill_evidence's start time


@pytest.fixture
def archive(tmp_path):
    return Archive(tmp_path / "archive")


def sealed(archive, passed=True):
    run = archive.new_run("lab-targeted")
    write_drill_evidence(run, series_bytes=64, passed=passed)
    run.seal(Signer.generate())
    return run


@pytest.mark.parametrize("update, expected", [
    ({}, [("lab", "banking/banking-core-vm", T0, "passed")]),
    ({"outcome": "FAILED"}, [("lab", "banking/banking-core-vm", T0, "failed")]),
    ({"outcome": "ERROR"}, []),  # nothing was changed: neither coverage nor a deficiency
    ({"mode": "drain"}, []),
    ({"cluster": None}, []),
    ({"started_at": None}, [("lab", "banking/banking-core-vm", "sealed_at", "passed")]),
    ({"vms": ["banking/a", "banking/b"]}, [("lab", "banking/a", T0, "passed"), ("lab", "banking/b", T0, "passed")]),
])
def test_records_of(archive, update, expected):
    summary = summarize_run(sealed(archive).path).model_copy(update=update)
    got = [(r.cluster, str(r.vm), r.at, r.outcome) for r in records_of(summary)]
    assert got == [(c, vm, summary.sealed_at if at == "sealed_at" else at, o) for c, vm, at, o in expected]


def test_archive_history_counts_sealed_runs_only(archive):
    sealed(archive, passed=False)
    sealed(archive)
    write_drill_evidence(archive.new_run("lab-targeted"), series_bytes=64)  # not sealed: in progress or crashed
    assert sorted(r.outcome for r in archive_history(archive.root)) == ["failed", "passed"]


def test_plan_with_a_missing_archive_is_bad_input(tmp_path, capsys):
    missing = tmp_path / "missing"
    (tmp_path / "inventory.yaml").write_text("targets: []\n")
    code = main(["programme", "plan", SHIPPED, "--inventory", str(tmp_path / "inventory.yaml"),
                 "--archive", str(missing)])
    assert code == ExitCode.BAD_INPUT
    assert "no evidence archive at" in capsys.readouterr().err
    assert not missing.exists()  # reading the history creates nothing
