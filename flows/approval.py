"""The approval gate: the run pauses on the plan until a change manager answers, or the time runs out."""

from __future__ import annotations

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.runtime import flow_run

from livedrill.deploy.approval import ApprovalDecision, ApprovalRecord
from livedrill.outcomes import CheckResult, utcnow
from livedrill.spec import ApprovalPolicy, DrillSpec
from tasks.approval import Approval, record_approval


def approval_gate(spec: DrillSpec, run_dir: str, plan_markdown: str) -> CheckResult:
    """Pauses this flow run (Prefect's Resume form shows the plan); files the answer in the evidence."""
    policy = spec.approval
    requested_at = utcnow()
    run_id = str(flow_run.id) if flow_run.id else None
    try:
        answer = pause_flow_run(wait_for_input=Approval.with_initial_data(description=plan_markdown),
                                timeout=policy.timeout_s, poll_interval=policy.poll_interval_s, key="approval")
        record = ApprovalRecord(
            decision=ApprovalDecision.APPROVED if answer.decision == "approve" else ApprovalDecision.REJECTED,
            approver=answer.approver, change_ticket=answer.change_ticket, comment=answer.comment,
            requested_at=requested_at, answered_at=utcnow(), timeout_s=policy.timeout_s, flow_run_id=run_id)
    except FlowPauseTimeout:
        record = ApprovalRecord(decision=ApprovalDecision.TIMED_OUT, requested_at=requested_at,
                                timeout_s=policy.timeout_s, flow_run_id=run_id)
    return record_approval(run_dir, record)


def window_approval_gate(policy: ApprovalPolicy, plan_markdown: str) -> tuple[bool, str]:
    """Pauses a programme window on its plan; (approved, what was answered, for the window's report)."""
    try:
        answer = pause_flow_run(wait_for_input=Approval.with_initial_data(description=plan_markdown),
                                timeout=policy.timeout_s, poll_interval=policy.poll_interval_s, key="window-approval")
    except FlowPauseTimeout:
        return False, f"not answered within {policy.timeout_s} s: nothing was drilled"
    approved = answer.decision == "approve"
    return approved, f"{'approved' if approved else 'rejected'} by {answer.approver} ({answer.change_ticket})"
