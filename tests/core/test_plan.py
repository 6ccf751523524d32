"""The drill's plan after pre-flight: what moves, whether someone approves first, the return leg, where checks go."""

from __future__ import annotations

import pytest

from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.platforms.base import VMState
from livedrill.spec import VMRef, parse_spec
from livedrill.stages.migrate import MigrationResult
from livedrill.stages.plan import DrillPlan, DrillTally, Leg, filed, plan_drill, return_legs

BASE = """\
name: t
cluster: lab
platform: {kind: kubevirt, kubeconfig: /tmp/k}
slo: {max_downtime_ms: 100, p99_latency_ms: 5}
"""
ONE_VM = "vms: [{namespace: banking, name: core}]\n"  # a targeted drill migrates exactly one VM
TARGETED = ONE_VM + "mode: {kind: targeted, target_node: node-2}\n"
BACK = ONE_VM + "mode: {kind: targeted, target_node: node-2, migrate_back: true}\n"
DRAIN = "vms: [{namespace: banking, name: core}, {namespace: banking, name: ledger}]\nmode: {kind: drain, node: node-1}\n"
APPROVAL, NO_APPROVAL = "approval: {required: true}\n", "approval: {required: false}\n"

CORE, LEDGER = VMRef(namespace="banking", name="core"), VMRef(namespace="banking", name="ledger")
ON_NODE_1 = [VMState(ref=CORE, node="node-1", running=True, memory_gib=2.0),
             VMState(ref=LEDGER, node="node-1", running=True, memory_gib=4.0)]
PASS = CheckResult(name="vmi-running", status=CheckStatus.PASS, message="Running")
FAIL = CheckResult(name="vmi-running", status=CheckStatus.FAIL, message="Stopped")
WARN = CheckResult(name="guest-agent", status=CheckStatus.WARN, message="not connected")


@pytest.mark.parametrize("mode, extra, checks, error, move, approval, legs, back", [
    (TARGETED, APPROVAL, [PASS], None, "targeted", True, [CORE], False),
    (TARGETED, NO_APPROVAL, [PASS, WARN], None, "targeted", False, [CORE], False),  # a warning moves
    (BACK, APPROVAL, [PASS], None, "targeted", True, [CORE], True),
    (DRAIN, APPROVAL, [PASS], None, "drain", True, [], False),
    (DRAIN, NO_APPROVAL, [PASS], None, "drain", False, [], False),
    (TARGETED, APPROVAL, [PASS, FAIL], None, "nothing", False, [], False),  # a failed check: no approval asked
    (DRAIN, APPROVAL, [FAIL], None, "nothing", False, [], False),
    (BACK, APPROVAL, [], "cannot reach the platform: refused", "nothing", False, [], False),
], ids=["targeted", "targeted, no approval", "targeted, migrate back", "drain", "drain, no approval",
        "targeted, gate failed", "drain, gate failed", "platform unreachable"])
def test_plan_drill(mode, extra, checks, error, move, approval, legs, back):
    spec = parse_spec(BASE + mode + extra)
    plan = plan_drill(spec, checks, error, ON_NODE_1)
    assert (plan.move, plan.approval, [leg.before.ref for leg in plan.outbound], plan.migrate_back) == \
        (move, approval, legs, back)
    assert all(leg.return_to is None and leg.before.node == "node-1" for leg in plan.outbound)


def test_a_vm_the_preflight_could_not_describe_gets_no_leg():
    plan = plan_drill(parse_spec(BASE + TARGETED), [PASS], None, ON_NODE_1[1:])
    assert plan.move == "targeted" and plan.outbound == []


@pytest.mark.parametrize("pre_checks, moves", [
    ([PASS], True),
    ([PASS, CheckResult(name="approval", status=CheckStatus.FAIL, message="rejected by a change manager")], False),
])
def test_a_rejected_approval_stops_the_move(pre_checks, moves):
    assert DrillPlan(move="targeted", approval=True).moves(pre_checks) is moves
    assert DrillPlan(move="nothing", approval=False).moves(pre_checks) is False


def _result(vm: VMRef, succeeded: bool, target: str = "node-2", *checks: CheckResult) -> MigrationResult:
    return MigrationResult(started=True, vm=vm, source="node-1", target=target, succeeded=succeeded, checks=list(checks))


@pytest.mark.parametrize("back, outcomes, checks, expected", [
    (True, [True, True], [PASS], [(CORE, "node-2", "node-1"), (LEDGER, "node-3", "node-1")]),
    (True, [True, False], [PASS], [(CORE, "node-2", "node-1")]),  # only a VM that landed returns
    (True, [True, True], [PASS, FAIL], []),  # any failure on the way out: nobody returns
    (False, [True, True], [PASS], []),
], ids=["both landed", "one failed to move", "a check failed", "no migrate_back"])
def test_return_legs(back, outcomes, checks, expected):
    plan = DrillPlan(move="targeted", approval=False, outbound=[Leg(before=s) for s in ON_NODE_1], migrate_back=back)
    landed = [(leg, _result(leg.before.ref, ok, target))
              for leg, ok, target in zip(plan.outbound, outcomes, ["node-2", "node-3"])]
    legs = return_legs(plan, landed, checks)
    assert [(leg.before.ref, leg.before.node, leg.return_to) for leg in legs] == expected
    # The return leg's "before" is the VM as it should be after the outbound leg: same VM, new node.
    assert all(leg.before.memory_gib == s.memory_gib for leg, s in zip(legs, ON_NODE_1))


MIGRATED = CheckResult(name="migration", status=CheckStatus.PASS, message="Succeeded")
GAP = CheckResult(name="slo.max-downtime", status=CheckStatus.FAIL, message="gap 600 ms")
BASELINE = CheckResult(name="probe-baseline", status=CheckStatus.PASS, message="warm-up healthy")


@pytest.mark.parametrize("checks, migration, probes", [
    ([BASELINE, GAP, MIGRATED], [MIGRATED], [BASELINE, GAP]),
    ([BASELINE], [], [BASELINE]),  # refused at the baseline: no migration was created
    ([MIGRATED], [MIGRATED], []),  # a VM without probes
])
def test_filed_by_name(checks, migration, probes):
    assert filed(_result(CORE, True, "node-2", *checks)) == (migration, probes)


def test_the_tally_keeps_the_longest_downtime_of_any_leg_and_fails_on_any_check():
    tally = DrillTally(pre_checks=[PASS])
    for downtime in (40.0, None, 120.0, 80.0):
        tally.take(_result(CORE, True, "node-2", MIGRATED).model_copy(update={"observed_downtime_ms": downtime}))
    assert tally.downtime_ms == 120.0 and tally.started and not tally.failed
    tally.take(_result(LEDGER, False, "node-2", GAP))
    assert tally.failed and tally.probe_checks == [GAP]


@pytest.mark.parametrize("started, compensations, interrupted, mutated, error", [
    (False, [], False, False, "gate error"),
    (True, [], False, True, "gate error"),
    (False, ["registered"], True, True, "the drill was interrupted"),  # the task died after its side effect
    (False, [], True, False, "the drill was interrupted"),
])
def test_tally_facts(started, compensations, interrupted, mutated, error):
    facts = DrillTally(started=started).facts(compensations, "gate error", interrupted=interrupted)
    assert (facts.started_mutating, facts.error) == (mutated, error)
