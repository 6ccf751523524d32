"""`livedrill readiness`: which core-tier VMs could be drilled today, and why not. Reads only.

The scan lists the cluster's objects once (GET/LIST, never a write: it is safe on a daily schedule
in production), then judges every selected VM with the same pure checks as the drill's pre-flight
(`platforms/kubevirt/checks.py`, `vm_checks`), plus the cluster-wide compliance check (core-tier workloads run as
VMs) and, with a drill spec, today's change freeze and drill window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import Field

from livedrill.errors import InputError
from livedrill.gates import freeze_check, window_today_check
from livedrill.outcomes import CheckResult, CheckStatus, Record
from livedrill.platforms.kubevirt.checks import (
    CheckPolicy, ClusterObjects, core_tier_isolation_check, missing_vmi_check, selector_matches, vm_checks)
from livedrill.spec import DrillSpec, TargetedMode, VMName, VMRef


class VMReadiness(Record):
    vm: VMName
    node: str | None
    ready: bool  # could be drilled today: no check failed
    reasons: list[str] = Field(default_factory=list)  # every failing check, "name: message"
    warnings: list[str] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)


class ReadinessReport(Record):
    scanned_at: datetime
    selector: dict[str, str]
    vms: list[VMReadiness] = Field(default_factory=list)
    cluster_checks: list[CheckResult] = Field(default_factory=list)  # compliance and calendar, cluster-wide

    @property
    def ready(self) -> bool:
        return bool(self.vms) and all(v.ready for v in self.vms) and \
            not any(c.status is CheckStatus.FAIL for c in self.cluster_checks)


def parse_selector(text: str) -> dict[str, str]:
    """`k=v,k2=v2` (equality only, as the scan matches VM labels and VM template labels)."""
    selector: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip().lstrip("=")
        if not sep or not key or any(c in key + value for c in "!()<> "):
            raise InputError(f"--selector: {part!r} is not key=value (equality selectors only, e.g. tier=core)")
        selector[key] = value
    if not selector:
        raise InputError("--selector: empty; give key=value, e.g. tier=core")
    return selector


def _vm_ref(obj: dict) -> VMRef:
    meta = obj["metadata"]
    return VMRef(namespace=meta.get("namespace") or "default", name=meta["name"])


def _selected(objects: list[dict], selector: dict[str, str], namespace: str | None, template: bool) -> dict[VMRef, dict]:
    out = {}
    for obj in objects:
        meta = obj.get("metadata", {})
        labels = dict(meta.get("labels") or {})
        if template:  # a VirtualMachine counts as core-tier by its own labels or its VMIs' template labels
            labels.update(obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {})
        if (namespace is None or meta.get("namespace") == namespace) and selector_matches(selector, labels):
            out[_vm_ref(obj)] = obj
    return out


def judge_readiness(vmis: list[dict], vms: list[dict], objects: ClusterObjects, policy: CheckPolicy,
                    selector: dict[str, str], namespace: str | None = None, targets: dict[VMRef, str] | None = None,
                    calendar: list[CheckResult] | None = None) -> ReadinessReport:
    """Pure: the readiness of every selected VM (VirtualMachine or bare VMI), from one read of the cluster."""
    running = _selected(vmis, selector, namespace, template=False)
    defined = _selected(vms, selector, namespace, template=True)
    all_vmis = {_vm_ref(v): v for v in vmis}
    report = ReadinessReport(scanned_at=objects.now or datetime.now().astimezone(), selector=selector)
    report.cluster_checks.append(core_tier_isolation_check(objects.pods, policy.core_tier_selector, "cluster"))
    report.cluster_checks.extend(calendar or [])
    for ref in sorted(set(running) | set(defined), key=str):
        vmi = running.get(ref) or all_vmis.get(ref)
        checks = [missing_vmi_check(ref, defined.get(ref))] if vmi is None else \
            vm_checks(policy, ref, vmi, objects, (targets or {}).get(ref))
        failed = [c for c in checks if c.status is CheckStatus.FAIL]
        report.vms.append(VMReadiness(
            vm=ref, node=(vmi or {}).get("status", {}).get("nodeName"), ready=not failed,
            reasons=[f"{c.name}: {c.message}" for c in failed],
            warnings=[f"{c.name}: {c.message}" for c in checks if c.status is CheckStatus.WARN], checks=checks))
    return report


class ClusterReader(Protocol):
    """The reads the scan needs (KubeVirtAdapter has them); no method here writes."""

    def cluster_objects(self, namespace: str | None = None) -> ClusterObjects: ...

    def list_all(self, group: str, version: str, plural: str, label_selector: str = "",
                 cluster_scoped: bool = False) -> list[dict]: ...


def readiness_policy(spec: DrillSpec | None, selector: dict[str, str] | None) -> tuple[CheckPolicy, dict[str, str]]:
    """The checks' policy and the VM selector. A drain must be able to move every core VM, so eviction is required."""
    if spec is None:
        policy = CheckPolicy()
    else:
        base = CheckPolicy.from_spec(spec)
        policy = CheckPolicy(budgets=base.budgets, eviction_strategy_required=True,
                             require_dedicated_cpus=base.require_dedicated_cpus,
                             require_guest_agent=base.require_guest_agent, core_tier_selector=base.core_tier_selector)
    return policy, selector or dict(policy.core_tier_selector)


def scan_readiness(reader: ClusterReader, spec: DrillSpec | None = None, selector: dict[str, str] | None = None,
                   namespace: str | None = None) -> ReadinessReport:
    policy, chosen = readiness_policy(spec, selector)
    objects = reader.cluster_objects(None)
    vmis = reader.list_all("kubevirt.io", "v1", "virtualmachineinstances")
    vms = reader.list_all("kubevirt.io", "v1", "virtualmachines")
    calendar: list[CheckResult] = []
    targets: dict[VMRef, str] = {}
    if spec is not None:
        now = objects.now or datetime.now().astimezone()
        calendar = [freeze_check(spec.schedule, now), window_today_check(spec.window, spec.schedule.timezone, now)]
        if isinstance(spec.mode, TargetedMode) and spec.mode.target_node:
            targets = {vm: spec.mode.target_node for vm in spec.vms}
    return judge_readiness(vmis, vms, objects, policy, chosen, namespace, targets, calendar)


def format_report(report: ReadinessReport, cluster: str) -> str:
    ready = sum(v.ready for v in report.vms)
    selector = ",".join(f"{k}={v}" for k, v in report.selector.items())
    lines = [f"readiness of {cluster} at {report.scanned_at.isoformat(timespec='seconds')} "
             f"(VMs labelled {selector}): {ready} of {len(report.vms)} could be drilled today"]
    if not report.vms:
        lines.append(f"  no VM matches {selector}")
    for vm in report.vms:
        lines.append(f"{vm.vm} (on {vm.node or 'no node'}): could be drilled today: {'yes' if vm.ready else 'no'}")
        for check in vm.checks:
            if check.status is CheckStatus.FAIL:
                lines.append(f"  - {check.name}: {check.message}")
                if check.remedy:
                    lines.append(f"      remedy: {check.remedy}")
        lines.extend(f"  ~ {w}" for w in vm.warnings)
    for check in report.cluster_checks:
        lines.append(f"cluster {check.name}: {check.status.value}: {check.message}")
        if check.status is CheckStatus.FAIL and check.remedy:
            lines.append(f"      remedy: {check.remedy}")
    return "\n".join(lines)
