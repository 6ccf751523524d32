"""`livedrill programme status`: the quarter's coverage as an auditor reads it (pure record, text, exit codes)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from livedrill.cli import main
from livedrill.outcomes import ExitCode
from livedrill.programme.coverage import Coverage, VMCoverage, coverage
from livedrill.programme.inventory import CoverageException, Inventory, Target
from livedrill.programme.plan import DrillRecord
from livedrill.programme.spec import load_programme
from livedrill.spec import VMRef
from tests.programme.test_programme_cli import INVENTORY, SHIPPED

SH = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2027, 2, 20, tzinfo=SH)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


def run(vm: str, day: str, outcome: str) -> DrillRecord:
    return DrillRecord(cluster="prod-core-a", vm=vm, at=at(day), outcome=outcome)


@pytest.fixture(scope="module")
def programme():
    return load_programme(SHIPPED)  # 2027Q1, retests after 7 days, at most 3 attempts


@pytest.mark.parametrize("records, status, drills, failures", [
    ([], VMCoverage.NOT_DRILLED, 0, 0),
    ([run("banking/a", "2026-11-07T01:00", "passed")], VMCoverage.NOT_DRILLED, 0, 0),  # last quarter's pass
    ([run("banking/a", "2027-01-09T01:00", "passed")], VMCoverage.PASSED, 1, 0),
    ([run("banking/a", "2027-01-09T01:00", "failed")], VMCoverage.FAILED, 1, 1),
    ([run("banking/a", "2027-01-09T01:00", "failed"), run("banking/a", "2027-01-16T01:00", "passed")],
     VMCoverage.PASSED, 2, 1),  # the retest closed the deficiency
    ([run("banking/a", d, "failed") for d in ("2027-01-09T01:00", "2027-01-16T01:00", "2027-01-23T01:00")],
     VMCoverage.OPEN_DEFICIENCY, 3, 3),
    ([run("banking/a", "2027-03-06T01:00", "passed")], VMCoverage.NOT_DRILLED, 0, 0),  # after the moment asked about
    ([DrillRecord(cluster="prod-core-b", vm="banking/a", at=at("2027-01-09T01:00"), outcome="passed")],
     VMCoverage.NOT_DRILLED, 0, 0),  # the same name on another cluster is another VM
])
def test_a_vms_coverage_is_its_last_drill_of_the_quarter(programme, records, status, drills, failures):
    inventory = Inventory(targets=[Target(cluster="prod-core-a", vm="banking/a", node="n1", gib=2)])
    [row] = coverage(programme, inventory, records, AS_OF).rows
    assert (row.status, row.drills, row.failures) == (status, drills, failures)


def test_the_quarter_is_covered_only_when_every_vm_to_drill_passed_and_exceptions_are_listed_beside(programme):
    exception = CoverageException(cluster="prod-core-a", vm=VMRef.parse("banking/gpu"), kind="excluded", reason="GPU",
                                  approved_by="cio")
    inventory = Inventory(targets=[Target(cluster="prod-core-a", vm=f"banking/{n}", node="n1", gib=2) for n in "ab"],
                          exceptions=[exception])
    half = coverage(programme, inventory, [run("banking/a", "2027-01-09T01:00", "passed")], AS_OF)
    assert not half.complete and half.in_scope == 3 and half.count(VMCoverage.PASSED) == 1
    full = coverage(programme, inventory, [run(f"banking/{n}", "2027-01-09T01:00", "passed") for n in "ab"], AS_OF)
    assert full.complete and full.exceptions == [exception]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    return tmp_path


def status_args(files, history: str, *extra):
    (files / "history.yaml").write_text("drills:\n" + history)
    return ["programme", "status", SHIPPED, "--inventory", str(files / "inventory.yaml"),
            "--history", str(files / "history.yaml"), "--at", "2027-02-20T00:00+08:00", *extra]


LEDGER_FAILED = '  - {cluster: prod-core-a, vm: banking/core-ledger, at: "2027-01-02T01:20:00+08:00", outcome: failed}\n'
SWITCH_PASSED = '  - {cluster: prod-core-b, vm: payments/switch, at: "2027-01-09T02:00:00+08:00", outcome: passed}\n'
LEDGER_RETEST = '  - {cluster: prod-core-a, vm: banking/core-ledger, at: "2027-01-16T01:30:00+08:00", outcome: passed}\n'


def test_status_says_not_covered_first_and_lists_what_is_open(files, capsys):
    assert main(status_args(files, LEDGER_FAILED + SWITCH_PASSED)) == ExitCode.FAILED
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("programme core-tier 2027Q1 as of 2027-02-20 00:00 Asia/Shanghai: NOT COVERED: 4 core "
                               "VM(s) in scope, 2 to drill: 1 passed (50%), 1 failed awaiting retest")
    assert lines[1].startswith("FAILED           prod-core-a banking/core-ledger: 1 drill(s), 1 failed, last 2027-01-02 "
                               "01:20, retest after 2027-01-09 01:20")
    assert any(line.startswith("EXCEPTION        prod-core-b payments/gpu: not_migratable") for line in lines)
    assert "passed           prod-core-b payments/switch: last 2027-01-09 02:00" in lines


def test_status_of_a_covered_quarter_exits_0_and_its_json_is_the_coverage_record(files, capsys):
    assert main(status_args(files, LEDGER_FAILED + SWITCH_PASSED + LEDGER_RETEST, "--json")) == ExitCode.OK
    cov = Coverage.model_validate(json.loads(capsys.readouterr().out))
    assert cov.complete and [(str(r.vm), r.status, r.failures) for r in cov.rows] == [
        ("banking/core-ledger", VMCoverage.PASSED, 1), ("payments/switch", VMCoverage.PASSED, 0)]


def test_status_without_an_inventory_is_bad_input(capsys):
    assert main(["programme", "status", SHIPPED]) == ExitCode.BAD_INPUT
    assert "programme status: give --inventory FILE, --discover, or both" in capsys.readouterr().err
