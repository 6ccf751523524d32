"""The approval record a change manager's answer becomes, and the check the verdict judges it by."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from livedrill.outcomes import CheckResult, CheckStatus

APPROVAL_FILE = "approval.json"


class ApprovalDecision(str, enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed-out"  # nobody answered within approval.timeout_s
    NOT_REQUIRED = "not-required"  # the spec or the request did not ask for one


class ApprovalRecord(BaseModel):
    """Written to the run's evidence as approval.json (sealed with the rest)."""

    model_config = ConfigDict(extra="forbid")

    decision: ApprovalDecision
    approver: str | None = None
    change_ticket: str | None = None
    comment: str = ""
    requested_at: datetime | None = None
    answered_at: datetime | None = None
    timeout_s: int | None = None
    flow_run_id: str | None = None


def approval_check(record: ApprovalRecord) -> CheckResult:
    """Only an explicit approval lets the drill move; a rejection or silence stops it before any change."""
    who = f"{record.approver} (change ticket {record.change_ticket})"
    if record.decision is ApprovalDecision.APPROVED:
        return CheckResult(name="approval", status=CheckStatus.PASS, subject="change approval",
                           message=f"approved by {who}", evidence=record.model_dump(mode="json"))
    if record.decision is ApprovalDecision.NOT_REQUIRED:
        return CheckResult(name="approval", status=CheckStatus.NOT_APPLICABLE, subject="change approval",
                           message="no approval required for this run")
    if record.decision is ApprovalDecision.REJECTED:
        why = f": {record.comment}" if record.comment else ""
        message = f"rejected by {who}{why}; nothing was changed"
    else:
        message = f"no approval within {record.timeout_s} s; nothing was changed"
    return CheckResult(name="approval", status=CheckStatus.FAIL, subject="change approval", message=message,
                       remedy="get the change approved, then start the drill again",
                       evidence=record.model_dump(mode="json"))
