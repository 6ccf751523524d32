"""A programme window's decisions: which window runs, which drills it starts, how long the parent waits for each
child drill and what it does about one that ended, died or never started, and how the window reports it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from livedrill.outcomes import DrillOutcome
from livedrill.programme.inventory import Inventory, Target
from livedrill.programme.plan import DrillRecord, Standing
from livedrill.programme.spec import load_programme
from livedrill.programme.window import (
    ChildDeadlines, ChildFate, ChildOutcome, EvidenceSeen, NoWindow, child_deadlines, child_fate, child_outcome,
    pick_window, window_markdown, window_plan)

DRILLS = Path(__file__).resolve().parents[2] / "drills"
SHANGHAI = timezone(timedelta(hours=8))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.fixture
def programme(tmp_path):
    (tmp_path / "drill.yaml").write_text((DRILLS / "lab-fleet-drill.yaml").read_text())
    (tmp_path / "programme.yaml").write_text(yaml.safe_dump({
        "kind": "programme", "name": "fleet", "quarter": "2027Q1",
        "clusters": [{"name": c, "platform": {"kind": "kubevirt", "kubeconfig": "/k", "context": c}} for c in ("a", "b")],
        "windows": {"timezone": "Asia/Shanghai",
                    "change_freeze": [{"start": "2027-01-16", "end": "2027-01-16", "reason": "year-end close"}],
                    "slots": [{"start": "2027-01-02T01:00", "end": "2027-01-02T05:00"},
                              {"start": "2027-01-09T01:00", "end": "2027-01-09T05:00"},
                              {"start": "2027-01-16T01:00", "end": "2027-01-16T05:00"}]},
        "drill": {"spec": "drill.yaml", "setup_s": 60, "start_s": 30},
        "retest": {"cool_off_days": 0}, "sign_off": {"roles": ["change-manager"]}}))
    return load_programme(tmp_path / "programme.yaml")


@pytest.mark.parametrize("now, index, expected", [
    ("2027-01-02T02:00", None, 1),  # the window open now
    ("2027-01-01T12:00", 2, 2),  # a window by number, before it opens (run early, on purpose)
    ("2027-01-02T04:59", 1, 1),
])
def test_pick_window(programme, now, index, expected):
    assert pick_window(programme.spec, at(now), index).index == expected


@pytest.mark.parametrize("now, index, says", [
    ("2027-01-05T12:00", None, "no window is open at 2027-01-05 12:00 Asia/Shanghai; the next is #2 2027-01-09T01:00+08:00"),
    ("2027-01-20T12:00", None, "the quarter has no window left"),
    ("2027-01-05T12:00", 1, "window #1 2027-01-02T01:00+08:00 ended at 2027-01-02T05:00:00+08:00"),
    ("2027-01-05T12:00", 3, "falls in the change freeze 2027-01-16..2027-01-16 (year-end close)"),
    ("2027-01-05T12:00", 4, "window #4 does not exist (it has 3)"),
])
def test_pick_window_refuses_with_the_reason(programme, now, index, says):
    with pytest.raises(NoWindow) as raised:
        pick_window(programme.spec, at(now), index)
    assert says in str(raised.value)


def _target(cluster: str, name: str, node: str = "node-1") -> Target:
    return Target(cluster=cluster, vm=f"banking/{name}", node=node, gib=0.25, labels={"tier": "core"},
                  annotations={"lab.livedrill.io/ledger-address": f"127.0.0.1:{18000 + int(name[-2:])}"})


def test_window_plan_drills_what_is_left_each_vm_aimed_at_its_own_ledger(programme):
    inventory = Inventory(targets=[_target("a", "core-01"), _target("a", "core-02"), _target("b", "core-01")])
    history = [DrillRecord(cluster="a", vm="banking/core-01", at=at("2026-12-20T02:00"), outcome="passed"),
               DrillRecord(cluster="a", vm="banking/core-02", at=at("2027-01-01T03:00"), outcome="failed", run="r1"),
               DrillRecord(cluster="b", vm="banking/core-01", at=at("2027-01-01T03:00"), outcome="passed", run="r2")]
    wp = window_plan(programme, inventory, history, pick_window(programme.spec, at("2027-01-02T01:00"), None))

    # b/core-01 passed this quarter: not drilled again; a/core-02 failed: its retest comes first (risk order)
    assert [(d.cluster, d.vm.name, d.standing, d.attempt) for d in wp.drills] == [
        ("a", "core-02", Standing.RETEST, 2), ("a", "core-01", Standing.DUE, 1)]
    first = wp.drills[0]
    assert first.spec.cluster == "a" and first.spec.platform.context == "a" and [str(v) for v in first.spec.vms] == ["banking/core-02"]
    assert first.spec.probes[0].write.url == "http://127.0.0.1:18002/transfers"
    assert first.budget_s == pytest.approx(60 + wp.plan.windows[0].drills[0].vms[0].budget_s)
    assert list(wp.by_cluster()) == ["a"]
    table = window_markdown(wp)
    assert "| a | 1 | banking/core-02 | retest | 2 |" in table and "2 drill(s) on 1 cluster(s)" in table


def test_child_deadlines_allow_for_a_slot_held_by_a_killed_drill(programme):
    wp = window_plan(programme, Inventory(targets=[_target("a", "core-01")]), [],
                     pick_window(programme.spec, at("2027-01-02T01:00"), None))
    drill = wp.drills[0]
    d = child_deadlines(drill, wp.start_s)
    lease = drill.spec.concurrency.lease_s  # 60 s: the least a Prefect server takes; +15 s for its lease sweep
    assert d.start_s == 30 + lease + 15 and d.end_s == d.start_s + drill.budget_s
    assert d.cancel_grace_s == 2 * drill.spec.budgets.abort_timeout_s + 30


D = ChildDeadlines(start_s=100, end_s=400, cancel_grace_s=150)


@pytest.mark.parametrize("state, evidence, waited, fate", [
    ("PENDING", EvidenceSeen.NONE, 10, ChildFate.WAIT),  # no worker has taken it yet
    ("RUNNING", EvidenceSeen.NONE, 99, ChildFate.WAIT),  # waiting for the cluster's slot
    ("PENDING", EvidenceSeen.NONE, 101, ChildFate.OVERDUE),  # nobody started it in time
    ("RUNNING", EvidenceSeen.LIVE, 390, ChildFate.WAIT),
    ("RUNNING", EvidenceSeen.LIVE, 401, ChildFate.OVERDUE),  # started, never ended: cancelled (it rolls back)
    ("RUNNING", EvidenceSeen.SEALED, 200, ChildFate.WAIT),  # sealed, still reporting
    ("RUNNING", EvidenceSeen.ORPHANED, 50, ChildFate.LOST),  # its process died mid-drill; Prefect does not know
    ("COMPLETED", EvidenceSeen.SEALED, 50, ChildFate.FINISHED),
    ("CRASHED", EvidenceSeen.ORPHANED, 50, ChildFate.FINISHED),  # ended: what it left is recovered after
    ("CANCELLED", EvidenceSeen.NONE, 500, ChildFate.FINISHED),
])
def test_child_fate(state, evidence, waited, fate):
    assert child_fate(state, evidence, waited, D) is fate


@pytest.mark.parametrize("fate, verdict, recovered, outcome", [
    (ChildFate.FINISHED, DrillOutcome.PASSED, False, ChildOutcome.PASSED),
    (ChildFate.FINISHED, DrillOutcome.FAILED, False, ChildOutcome.FAILED),
    (ChildFate.FINISHED, DrillOutcome.ERROR, False, ChildOutcome.ERROR),
    (ChildFate.LOST, DrillOutcome.FAILED, True, ChildOutcome.RECOVERED),
    (ChildFate.FINISHED, DrillOutcome.FAILED, True, ChildOutcome.RECOVERED),  # Prefect saw it crash; we sealed it
    (ChildFate.OVERDUE, None, False, ChildOutcome.NO_EVIDENCE),  # never started: its VM stays to drill
    (ChildFate.FINISHED, None, False, ChildOutcome.NO_EVIDENCE),
])
def test_child_outcome_comes_from_the_sealed_verdict(fate, verdict, recovered, outcome):
    assert child_outcome(fate, verdict, recovered) is outcome
