"""KubeVirt's post-checks: pure functions of the VMIM and the VMI as the cluster shows them after the migration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from livedrill.forecast import MigrationFigures
from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.platforms.base import MigrationPhase


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

    check("migration-succeeded", phase == MigrationPhase.SUCCEEDED and MigrationPhase.FAILED not in phases_seen,
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


def kubevirt_migration_figures(vmi: dict[str, Any]) -> MigrationFigures | None:
    """The migration time KubeVirt records on the VMI (migrationState start to end); it reports no pause, data
    or rounds there. None unless the VMI shows a completed migration with both timestamps."""
    state = vmi.get("status", {}).get("migrationState") or {}
    start, end = state.get("startTimestamp"), state.get("endTimestamp")
    if not (state.get("completed") and start and end):
        return None
    seconds = (datetime.fromisoformat(end.replace("Z", "+00:00"))
               - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
    return MigrationFigures(migration_s=seconds,
                            source="VMI status.migrationState startTimestamp to endTimestamp, whole seconds")
