"""`livedrill programme plan`: the plan a change manager reads, its JSON, and its exit codes."""

import json
from pathlib import Path

import pytest

from livedrill.cli import main
from livedrill.outcomes import ExitCode
from livedrill.programme.plan import Plan

SHIPPED = str(Path(__file__).resolve().parents[2] / "drills" / "programmes" / "core-tier.yaml")

INVENTORY = """\
targets:
  - {cluster: prod-core-a, vm: banking/core-ledger, node: node-1, gib: 4, labels: {tier: core}}
  - {cluster: prod-core-a, vm: banking/legacy-batch-vm, node: node-2, gib: 8, labels: {tier: core}}
  - {cluster: prod-core-a, vm: banking/web, node: node-2, gib: 2, labels: {tier: web}}
  - {cluster: prod-core-b, vm: payments/switch, node: node-3, gib: 16, labels: {tier: core}}
  - {cluster: prod-core-b, vm: payments/gpu, node: node-3, gib: 8, labels: {tier: core}, migratable: false,
     why_not: "hostDevices: GPU passthrough"}
"""
HISTORY = """\
drills:
  - {cluster: prod-core-a, vm: banking/core-ledger, at: "2027-01-02T01:20:00+08:00", outcome: failed}
"""
AT = "2027-01-05T00:00+08:00"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "history.yaml").write_text(HISTORY)
    return tmp_path


def plan_args(files, *extra):
    return ["programme", "plan", SHIPPED, "--inventory", str(files / "inventory.yaml"),
            "--history", str(files / "history.yaml"), "--at", AT, *extra]


def test_plan_table(files, capsys):
    assert main(plan_args(files)) == ExitCode.OK
    out = capsys.readouterr().out
    assert "2 VM(s) in 2 drill(s); 0 covered already, 2 exception(s), 0 open deficiency(ies), 0 cannot fit" in out
    assert "window #1 2027-01-02 Sat 01:00: skipped, began before the plan was made" in out
    assert "window #2 2027-01-09 Sat 01:00-05:00: 1 drill(s)\n  prod-core-b      01:00   13220 s  payments/switch (never_passed)" in out
    # the failed drill of 2 January is retested after its 7-day cool-off, i.e. not on 9 January
    assert "window #3 2027-01-16 Sat 01:00-05:00: 1 drill(s)\n  prod-core-a      01:00    3620 s  banking/core-ledger (retest, attempt 2)" in out
    assert "window #6 2027-02-06 Sat 01:00: skipped, change freeze 2027-02-05..2027-02-13 (Spring Festival" in out
    assert "exception prod-core-a banking/legacy-batch-vm: excluded: SR-IOV" in out
    assert "exception prod-core-b payments/gpu: not_migratable: hostDevices: GPU passthrough (no approval recorded)" in out
    assert "banking/web" not in out
    assert "cluster kvm-core-sh: no VM in the inventory matches its selector" in out


def test_plan_json_is_the_plan_record(files, capsys):
    assert main(plan_args(files, "--json")) == ExitCode.OK
    plan = Plan.model_validate(json.loads(capsys.readouterr().out))
    assert [(w.index, [str(v.vm) for d in w.drills for v in d.vms]) for w in plan.windows if w.drills] == [
        (2, ["payments/switch"]), (3, ["banking/core-ledger"])]


def test_plan_that_cannot_fit_exits_1_and_names_the_vm(files, capsys):
    (files / "inventory.yaml").write_text(
        INVENTORY + "  - {cluster: kvm-core-sh, vm: default/teller-1, node: host-a, gib: 20, labels: {tier: core}}\n")
    assert main(plan_args(files)) == ExitCode.FAILED
    assert "CANNOT FIT kvm-core-sh default/teller-1 (never_passed, 16420 s): needs 16420 s" in capsys.readouterr().out


@pytest.mark.parametrize("which, text, words", [
    ("inventory.yaml", "targets:\n  - {cluster: a, vm: banking/x, node: n, gib: -1}\n", "line 2: targets[0].gib: "),
    ("history.yaml", "drills:\n  - {cluster: a, vm: banking/x, at: '2027-01-02T01:00', outcome: passed}\n",
     "line 2: drills[0].at: "),
    ("history.yaml", "drills:\n  - {cluster: a, vm: banking/x, at: '2027-01-02T01:00+08:00', outcome: ok}\n",
     "line 2: drills[0].outcome: "),
])
def test_bad_input_exits_2_naming_field_and_line(files, capsys, which, text, words):
    (files / which).write_text(text)
    assert main(plan_args(files)) == ExitCode.BAD_INPUT
    assert words in capsys.readouterr().err


def test_at_without_offset_is_bad_input(files, capsys):
    args = plan_args(files)
    args[args.index(AT)] = "2027-01-05T00:00"
    assert main(args) == ExitCode.BAD_INPUT
    assert "no UTC offset" in capsys.readouterr().err
