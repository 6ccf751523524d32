"""Pure decisions of a drill: what the loops do next and what the outcome is. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from livedrill.outcomes import CheckResult, CheckStatus, Compensation, CompensationState, DrillOutcome, Verdict


class LoopAction(str, enum.Enum):
    CONTINUE = "continue"
    FINISHED = "finished"  # the migration reached a terminal phase
    CANCEL_DEADLINE = "cancel-deadline"  # the migration's budget is spent
    CANCEL_BREACH = "cancel-breach"  # a probe stop condition fired


def migration_loop_action(*, terminal: bool, now: float, deadline: float, breach: bool) -> LoopAction:
    """What the migration watch loop does after one observation.

    A terminal phase wins over everything: cancelling a migration that already finished is meaningless.
    A probe breach wins over the deadline because it is the more specific reason to stop.
    """
    if terminal:
        return LoopAction.FINISHED
    if breach:
        return LoopAction.CANCEL_BREACH
    if now >= deadline:
        return LoopAction.CANCEL_DEADLINE
    return LoopAction.CONTINUE


@dataclass(frozen=True)
class DrillFacts:
    """Everything the verdict depends on, gathered by the stages."""

    preflight: list[CheckResult]
    migration_checks: list[CheckResult]  # post-checks, or the failure of the migration itself
    probe_checks: list[CheckResult]
    compensations: list[Compensation]
    started_mutating: bool
    observed_downtime_ms: float | None = None
    error: str | None = None  # an internal or platform fault that stopped the drill


def judge(facts: DrillFacts) -> Verdict:
    checks = facts.preflight + facts.migration_checks + facts.probe_checks
    reasons = [f"{c.name}: {c.message}" for c in checks if c.status is CheckStatus.FAIL]
    for comp in facts.compensations:
        if comp.state is CompensationState.FAILED:
            reasons.append(f"rollback {comp.action} failed: {comp.outcome}; a human must {comp.manual_action}")
    if facts.error:
        reasons.append(facts.error)
    if facts.error and not facts.started_mutating and not any(c.status is CheckStatus.FAIL for c in checks):
        outcome = DrillOutcome.ERROR
    elif reasons:
        outcome = DrillOutcome.FAILED
    else:
        outcome = DrillOutcome.PASSED
    return Verdict(outcome=outcome, reasons=reasons, checks=checks, observed_downtime_ms=facts.observed_downtime_ms)
