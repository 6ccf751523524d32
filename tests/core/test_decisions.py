"""Pure decisions: the migration loop's next action, KubeVirt's post-check criteria, the verdict."""

import pytest

from livedrill.decisions import DrillFacts, LoopAction, judge, migration_loop_action
from livedrill.platforms.kubevirt.postchecks import kubevirt_postchecks
from livedrill.outcomes import CheckResult, CheckStatus, Compensation, CompensationState, DrillOutcome, utcnow


@pytest.mark.parametrize("terminal, now, deadline, breach, expected", [
    (False, 1.0, 10.0, False, LoopAction.CONTINUE),
    (True, 1.0, 10.0, False, LoopAction.FINISHED),
    (True, 11.0, 10.0, True, LoopAction.FINISHED),      # already over: nothing to cancel
    (False, 10.0, 10.0, False, LoopAction.CANCEL_DEADLINE),
    (False, 1.0, 10.0, True, LoopAction.CANCEL_BREACH),
    (False, 11.0, 10.0, True, LoopAction.CANCEL_BREACH),  # the more specific reason wins
])
def test_migration_loop_action(terminal, now, deadline, breach, expected):
    assert migration_loop_action(terminal=terminal, now=now, deadline=deadline, breach=breach) is expected


def _objects(**state_overrides):
    state = {"startTimestamp": "t0", "endTimestamp": "t1", "targetNodeDomainReadyTimestamp": "t2",
             "sourceNode": "node-1", "targetNode": "node-2", "completed": True, "failed": False, "migrationUid": "u1"}
    state.update(state_overrides)
    vmim = {"metadata": {"namespace": "b", "name": "m", "uid": "u1"}, "status": {"phase": "Succeeded"}}
    vmi = {"metadata": {"namespace": "b", "name": "v"}, "status": {"phase": "Running", "nodeName": "node-2",
                                                                   "migrationState": state}}
    return vmim, vmi


def _failed(checks):
    return {c.name for c in checks if c.status is CheckStatus.FAIL}


@pytest.mark.parametrize("state, vmi_node, phases, vmi_phase, failed", [
    ({}, "node-2", ["Pending", "Running", "Succeeded"], "Running", set()),
    ({}, "node-2", ["Running", "Failed", "Succeeded"], "Running", {"migration-succeeded"}),
    ({"endTimestamp": None}, "node-2", ["Succeeded"], "Running", {"migration-timestamps"}),
    ({"targetNode": "node-3"}, "node-2", ["Succeeded"], "Running", {"vm-on-target"}),
    ({}, "node-1", ["Succeeded"], "Running", {"vm-on-target"}),
    ({"failed": True}, "node-2", ["Succeeded"], "Running", {"migration-completed"}),
    ({"migrationUid": "other"}, "node-2", ["Succeeded"], "Running", {"migration-uid"}),
    ({}, "node-2", ["Succeeded"], "Paused", {"vm-running"}),
])
def test_kubevirt_postchecks(state, vmi_node, phases, vmi_phase, failed):
    vmim, vmi = _objects(**state)
    vmi["status"]["nodeName"] = vmi_node
    vmi["status"]["phase"] = vmi_phase
    assert _failed(kubevirt_postchecks(vmim, vmi, "node-1", phases)) == failed


def _check(status):
    return CheckResult(name="c", status=status, message="m")


def _comp(state):
    return Compensation(id=1, action="cancel-migration", params={}, registered_at=utcnow(), state=state,
                        outcome="x", manual_action="delete it")


@pytest.mark.parametrize("pre, mig, comps, started, error, outcome", [
    ([CheckStatus.PASS], [CheckStatus.PASS], [], True, None, DrillOutcome.PASSED),
    ([CheckStatus.PASS, CheckStatus.WARN], [CheckStatus.PASS], [], True, None, DrillOutcome.PASSED),
    ([CheckStatus.FAIL], [], [], False, None, DrillOutcome.FAILED),
    ([CheckStatus.PASS], [CheckStatus.FAIL], [CompensationState.DONE], True, None, DrillOutcome.FAILED),
    ([CheckStatus.PASS], [CheckStatus.PASS], [CompensationState.FAILED], True, None, DrillOutcome.FAILED),
    ([], [], [], False, "cannot reach the platform", DrillOutcome.ERROR),
    ([CheckStatus.PASS], [], [], True, "interrupted", DrillOutcome.FAILED),
])
def test_judge(pre, mig, comps, started, error, outcome):
    facts = DrillFacts([_check(s) for s in pre], [_check(s) for s in mig], [], [_comp(s) for s in comps],
                       started_mutating=started, error=error)
    verdict = judge(facts)
    assert verdict.outcome is outcome
    assert (verdict.outcome is DrillOutcome.PASSED) == (not verdict.reasons)
