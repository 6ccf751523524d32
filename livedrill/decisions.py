"""Pure decisions of a drill: what the loops do next and what the outcome is. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

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


def kubevirt_postchecks(vmim: dict[str, Any], vmi: dict[str, Any], source_node: str, phases_seen: list[str]) -> list[CheckResult]:
    """KubeVirt's own e2e criteria for a correct migration, each as a named check."""
    subject_vmim = f"vmim {vmim.get('metadata', {}).get('namespace')}/{vmim.get('metadata', {}).get('name')}"
    subject_vmi = f"vmi {vmi.get('metadata', {}).get('namespace')}/{vmi.get('metadata', {}).get('name')}"
    phase = vmim.get("status", {}).get("phase")
    state = vmi.get("status", {}).get("migrationState") or {}
    node = vmi.get("status", {}).get("nodeName")
    checks: list[CheckResult] = []

    def check(name: str, ok: bool, message_ok: str, message_fail: str, subject: str, evidence: dict) -> None:
        checks.append(CheckResult(name=name, status=CheckStatus.PASS if ok else CheckStatus.FAIL,
                                  message=message_ok if ok else message_fail, subject=subject, evidence=evidence))

    check("migration-succeeded", phase == "Succeeded" and "Failed" not in phases_seen,
          "the migration reached Succeeded and never Failed",
          f"the migration ended in phase {phase!r} (phases seen: {phases_seen})", subject_vmim,
          {"phase": phase, "phases_seen": phases_seen})
    stamps = {k: state.get(k) for k in ("startTimestamp", "endTimestamp", "targetNodeDomainReadyTimestamp")}
    check("migration-timestamps", all(stamps.values()), "start, end and target-domain-ready timestamps are set",
          f"missing migrationState timestamps: {[k for k, v in stamps.items() if not v]}", subject_vmi, stamps)
    target = state.get("targetNode")
    check("vm-on-target", bool(target) and target == node and node != source_node,
          f"the VM runs on the target node {node} (was {source_node})",
          f"expected targetNode == nodeName != sourceNode; targetNode={target!r} nodeName={node!r} source={source_node!r}",
          subject_vmi, {"targetNode": target, "nodeName": node, "sourceNode": source_node})
    check("migration-completed", bool(state.get("completed")) and not state.get("failed"),
          "migrationState completed and not failed",
          f"migrationState completed={state.get('completed')!r} failed={state.get('failed')!r}", subject_vmi,
          {"completed": state.get("completed"), "failed": state.get("failed")})
    uid = vmim.get("metadata", {}).get("uid")
    check("migration-uid", state.get("migrationUid") == uid, "the VMI's migrationState belongs to this migration",
          f"migrationState.migrationUid {state.get('migrationUid')!r} != VMIM uid {uid!r}", subject_vmi,
          {"migrationUid": state.get("migrationUid"), "vmimUid": uid})
    vmi_phase = vmi.get("status", {}).get("phase")
    check("vm-running", vmi_phase == "Running", "the VMI is Running", f"the VMI is {vmi_phase!r}, not Running",
          subject_vmi, {"phase": vmi_phase})
    return checks


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
