"""Approval: the form the change manager fills in (a Prefect RunInput) and the task that files the answer."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import Field

from livedrill.deploy.approval import APPROVAL_FILE, ApprovalRecord, approval_check
from livedrill.outcomes import CheckResult
from livedrill.stages.session import DrillSession


class Approval(RunInput):
    """Shown on the paused run's Resume page (the plan is in its description)."""

    decision: Literal["approve", "reject"] = Field("approve", description="approve: the drill starts now")
    approver: str = Field(min_length=1, max_length=120, description="Your name, as the change record knows you")
    change_ticket: str = Field(min_length=1, max_length=64, description="The approved change, e.g. CHG-123456")
    comment: str = Field("", max_length=2000)


@task(name="record-approval", cache_policy=NO_CACHE)
def record_approval(run_dir: str, record: ApprovalRecord) -> CheckResult:
    """Into the evidence before anything moves: approval.json and a timeline event."""
    session = DrillSession.reopen(run_dir)
    session.run.write_json(APPROVAL_FILE, record)
    session.event("approval", record.decision.value, approver=record.approver, change_ticket=record.change_ticket)
    return approval_check(record)
