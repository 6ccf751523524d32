"""Pure decisions of a node drain: no I/O here, each function table-tested (tests/drain/test_pure.py).

Which pods a drain evicts and how `kubectl drain` treats the others (DaemonSet pods ignored by flag,
mirror pods skipped, emptyDir by flag, pods without a controller refused, finished pods always fine);
what KubeVirt does to each VMI when its virt-launcher pod is evicted; what an eviction answer means
(KubeVirt's HTTP 429 "Eviction triggered evacuation" is progress, not failure); when the next eviction
attempt is due; the drain's budget from the VMs' memory and KubeVirt's migration parallelism; when a
VMI has left the node; and the verdict per VM.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from livedrill.errors import is_transient_status
from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.platforms.base import MigrationPhase
from livedrill.platforms.kubevirt.postchecks import kubevirt_postchecks
from livedrill.specbase import VMName, VMRef

Obj = dict[str, Any]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
EVACUATION_ANNOTATION = "kubevirt.io/evacuationMigration"
LAUNCHER_LABEL, LAUNCHER_VALUE = "kubevirt.io", "virt-launcher"
VMI_NAME_LABEL = "vm.kubevirt.io/name"
FINISHED_POD_PHASES = ("Succeeded", "Failed")
# KubeVirt's defaults when the kubevirt CR leaves them unset (ParallelMigrationsPerClusterDefault and
# ParallelOutboundMigrationsPerNodeDefault in pkg/virt-config of https://github.com/kubevirt/kubevirt).
DEFAULT_PARALLEL_PER_CLUSTER = 5
DEFAULT_PARALLEL_OUTBOUND_PER_NODE = 2
# A pod's terminationGracePeriodSeconds when the pod does not set it (Kubernetes' default).
DEFAULT_GRACE_PERIOD_S = 30.0


class DrainSettings(BaseModel):
    """How the drain loop paces itself. Defaults follow `kubectl drain` where it has a figure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    poll_interval_s: float = Field(0.5, gt=0, description="How often the loop observes pods, VMIs and migrations")
    eviction_retry_s: float = Field(5.0, gt=0, description="Wait before re-evicting a pod that answered 429 (kubectl: 5 s)")
    max_retry_after_s: float = Field(30.0, gt=0, description="Upper bound on a server's Retry-After hint")
    migrations_poll_s: float = Field(
        2.0, gt=0, description="How often the loop copies the evacuation migrations (evidence; KubeVirt keeps 5 per VMI)")
    grace_slack_s: float = Field(
        10.0, ge=0, description="Added to the drain budget for the evictions' own round trips and the first poll")


# ---------------------------------------------------------------- pods: what kubectl drain does with each


class PodAction(str, enum.Enum):
    EVICT = "evict"  # evicted through policy/v1 Eviction
    SKIP = "skip"  # left on the node (DaemonSet pod with ignore_daemonsets, mirror pod, finished pod)
    REFUSE = "refuse"  # the drain cannot proceed while this pod is there (kubectl drain errors out)


@dataclass(frozen=True)
class PodRef:
    """One pod, as the API names it. A type of its own rather than a VMRef: a virt-launcher pod and its VMI are
    both namespace/name, and a pod must not pass where a VMI is meant. Built only from an API object's metadata,
    whose names the API server has already validated."""

    namespace: str
    name: str

    def __str__(self) -> str:
        """For messages and evidence, as kubectl names a pod; code compares and keys by the PodRef itself."""
        return f"{self.namespace}/{self.name}"


def _texts(refs: Iterable[PodRef | VMRef]) -> list[str]:
    """Pods or VMs as the evidence and messages name them: "namespace/name"."""
    return [str(ref) for ref in refs]


@dataclass(frozen=True)
class PodDecision:
    pod: PodRef
    action: PodAction
    reason: str
    vmi: VMRef | None = None  # the VMI this virt-launcher pod runs
    warning: str | None = None  # kubectl prints these and proceeds (e.g. emptyDir data deleted)
    finished: bool = False  # Succeeded/Failed: evicting it only deletes it (e.g. a migrated VM's source pod)

    def evidence(self) -> dict[str, Any]:
        """The decision as drain/plan.json records it, pod and VMI as "namespace/name"."""
        return {"pod": str(self.pod), "action": self.action, "reason": self.reason,
                "vmi": str(self.vmi) if self.vmi is not None else None, "warning": self.warning, "finished": self.finished}


def _controller_ref(pod: Obj) -> Obj | None:
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def pod_ref(pod: Obj) -> PodRef:
    return PodRef(namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"])


def vmi_ref(vmi: Obj) -> VMRef:
    return VMRef(namespace=vmi["metadata"]["namespace"], name=vmi["metadata"]["name"])


def launcher_vmi(pod: Obj) -> VMRef | None:
    """The VMI a virt-launcher pod runs, or None for any other pod."""
    labels = pod.get("metadata", {}).get("labels") or {}
    if labels.get(LAUNCHER_LABEL) != LAUNCHER_VALUE:
        return None
    name = labels.get(VMI_NAME_LABEL)
    if not name:
        ref = _controller_ref(pod) or {}
        name = ref.get("name") if ref.get("kind") == "VirtualMachineInstance" else None
    return VMRef(namespace=pod["metadata"]["namespace"], name=name) if name else None


def decide_pod(pod: Obj, *, ignore_daemonsets: bool, delete_emptydir_data: bool) -> PodDecision:
    """kubectl drain's filters, in its order: DaemonSet, mirror, local storage, unreplicated."""
    key = pod_ref(pod)
    vmi = launcher_vmi(pod)
    finished = pod.get("status", {}).get("phase") in FINISHED_POD_PHASES
    ref = _controller_ref(pod)
    if ref is not None and ref.get("kind") == "DaemonSet" and not finished:
        if not ignore_daemonsets:
            return PodDecision(key, PodAction.REFUSE, "DaemonSet-managed pod (set mode.ignore_daemonsets)")
        return PodDecision(key, PodAction.SKIP, "DaemonSet-managed pod: ignored, its DaemonSet keeps it on the node")
    if MIRROR_ANNOTATION in (pod.get("metadata", {}).get("annotations") or {}):
        return PodDecision(key, PodAction.SKIP, "mirror (static) pod: the kubelet owns it, the API cannot evict it")
    warning = None
    if not finished and any("emptyDir" in v for v in pod.get("spec", {}).get("volumes") or []):
        if not delete_emptydir_data:
            return PodDecision(key, PodAction.REFUSE, "pod with emptyDir local storage (set mode.delete_emptydir_data)",
                               vmi)
        warning = "its emptyDir data is deleted with the pod"
    if ref is None and not finished:
        return PodDecision(key, PodAction.REFUSE, "pod without a controller: nothing would recreate it elsewhere", vmi)
    if finished:
        return PodDecision(key, PodAction.EVICT, "finished pod: evicting it deletes it", vmi, warning, finished=True)
    if vmi is not None:
        return PodDecision(key, PodAction.EVICT, "virt-launcher pod: its eviction asks KubeVirt to evacuate the VMI",
                           vmi, warning)
    return PodDecision(key, PodAction.EVICT, f"managed by {ref and ref.get('kind')}", None, warning)


def pods_to_drain(pods: list[Obj], node: str, *, ignore_daemonsets: bool,
                  delete_emptydir_data: bool) -> list[PodDecision]:
    """Decisions for the pods bound to `node` (others are ignored), in the order of their "namespace/name"."""
    on_node = [p for p in pods if p.get("spec", {}).get("nodeName") == node]
    return [decide_pod(p, ignore_daemonsets=ignore_daemonsets, delete_emptydir_data=delete_emptydir_data)
            for p in sorted(on_node, key=lambda p: str(pod_ref(p)))]


# ---------------------------------------------------------------- PodDisruptionBudgets


def _matches_selector(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector; an empty selector matches every pod of the namespace (policy/v1)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def blocking_budgets(pod: Obj, pdbs: list[Obj]) -> list[str]:
    """Names of the PodDisruptionBudgets that cover `pod` and allow no disruption now.

    The Eviction API enforces them (HTTP 429 "would violate the pod's disruption budget"); the drain
    waits and retries as kubectl does. The pre-flight names them so nobody is surprised.
    """
    namespace = pod["metadata"].get("namespace")
    labels = pod["metadata"].get("labels") or {}
    blocked = []
    for pdb in pdbs:
        if pdb["metadata"].get("namespace") != namespace:
            continue
        if _matches_selector(pdb.get("spec", {}).get("selector"), labels) and \
                int(pdb.get("status", {}).get("disruptionsAllowed", 0)) <= 0:
            blocked.append(pdb["metadata"]["name"])
    return blocked


# ---------------------------------------------------------------- VMIs: what KubeVirt does on eviction


class VMIFate(str, enum.Enum):
    MIGRATES = "live-migrates"  # eviction denied with 429, KubeVirt evacuates it by live migration
    SHUTS_DOWN = "shuts-down"  # the launcher pod is evicted like any pod: the guest stops
    BLOCKS = "blocks-drain"  # eviction denied for ever ("is not live-migratable"): the drain cannot finish
    EXTERNAL = "external"  # evacuationNodeName is set, an external controller must move it


def effective_eviction_strategy(vmi: Obj, kubevirt_cr: Obj | None) -> str:
    """The VMI's own evictionStrategy wins over the cluster's; KubeVirt's default is None."""
    cluster = ((kubevirt_cr or {}).get("spec", {}).get("configuration", {}) or {}).get("evictionStrategy")
    return vmi.get("spec", {}).get("evictionStrategy") or cluster or "None"


def live_migratable(vmi: Obj) -> tuple[bool, str]:
    for cond in vmi.get("status", {}).get("conditions") or []:
        if cond.get("type") == "LiveMigratable":
            ok = cond.get("status") == "True"
            return ok, "" if ok else f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
    return False, "the VMI reports no LiveMigratable condition"


def vmi_fate(vmi: Obj, kubevirt_cr: Obj | None) -> tuple[VMIFate, str]:
    """What a drain does to this VMI, and why (KubeVirt's eviction webhook semantics)."""
    strategy = effective_eviction_strategy(vmi, kubevirt_cr)
    migratable, why_not = live_migratable(vmi)
    if strategy == "LiveMigrate":
        if migratable:
            return VMIFate.MIGRATES, "evictionStrategy LiveMigrate, LiveMigratable"
        return VMIFate.BLOCKS, f"evictionStrategy LiveMigrate but not live-migratable ({why_not}): every eviction is refused"
    if strategy == "LiveMigrateIfPossible":
        if migratable:
            return VMIFate.MIGRATES, "evictionStrategy LiveMigrateIfPossible, LiveMigratable"
        return VMIFate.SHUTS_DOWN, f"evictionStrategy LiveMigrateIfPossible, not live-migratable ({why_not}): shut down"
    if strategy == "External":
        return VMIFate.EXTERNAL, "evictionStrategy External: an external controller must move it"
    return VMIFate.SHUTS_DOWN, f"evictionStrategy {strategy}: the guest is shut down with its pod"


def fate_check(vm: VMRef, fate: VMIFate, why: str, allow_non_migratable: bool) -> CheckResult:
    """Pre-flight verdict on one VMI of the node."""
    subject = f"vmi {vm}"
    if fate is VMIFate.MIGRATES:
        return CheckResult(name="drain.vmi-migratable", status=CheckStatus.PASS, subject=subject,
                           message=f"will live-migrate off the node ({why})", evidence={"fate": fate.value})
    if fate is VMIFate.BLOCKS:
        return CheckResult(name="drain.vmi-migratable", status=CheckStatus.FAIL, subject=subject,
                           message=f"the drain could never finish: {why}",
                           remedy="make it live-migratable (e.g. ReadWriteMany PVCs, masquerade networking) or "
                                  "set its evictionStrategy to None / LiveMigrateIfPossible to accept a shutdown",
                           evidence={"fate": fate.value})
    if allow_non_migratable:
        what = "it will be shut down" if fate is VMIFate.SHUTS_DOWN else "the drill waits for that controller"
        return CheckResult(name="drain.vmi-migratable", status=CheckStatus.WARN, subject=subject,
                           message=f"cannot live-migrate ({why}); allowed by mode.allow_non_migratable: {what}",
                           evidence={"fate": fate.value})
    return CheckResult(name="drain.vmi-migratable", status=CheckStatus.FAIL, subject=subject,
                       message=f"cannot live-migrate: {why}",
                       remedy="fix it, or set mode.allow_non_migratable: true to accept what happens to it",
                       evidence={"fate": fate.value})


# ---------------------------------------------------------------- eviction answers


class EvictionAnswer(str, enum.Enum):
    EVICTED = "evicted"  # 200/201: the pod is being deleted
    GONE = "gone"  # 404: nothing left to evict
    EVACUATION_TRIGGERED = "evacuation-triggered"  # KubeVirt's 429: progress
    EVACUATION_IN_PROGRESS = "evacuation-in-progress"  # KubeVirt's 429 on a repeat: still progress
    NOT_MIGRATABLE = "not-live-migratable"  # KubeVirt's 429 for a non-migratable LiveMigrate VMI: never passes
    BUDGET_BLOCKED = "disruption-budget"  # policy/v1's 429: a PodDisruptionBudget allows no disruption now
    RETRY = "retry"  # throttled (a plain 429), a 5xx or no answer: ask again later
    REJECTED = "rejected"  # any other 4xx: asking again cannot help


def classify_eviction(status: int | None, message: str) -> EvictionAnswer:
    """What an Eviction API answer means. The 429s are read by their message before the generic classifier."""
    if status is not None and 200 <= status < 300:
        return EvictionAnswer.EVICTED
    if status == 404:
        return EvictionAnswer.GONE
    if status == 429:
        if "Evacuation in progress" in message:
            return EvictionAnswer.EVACUATION_IN_PROGRESS
        if "Eviction triggered evacuation" in message:
            return EvictionAnswer.EVACUATION_TRIGGERED
        if "not live-migratable" in message or "not live migratable" in message:
            return EvictionAnswer.NOT_MIGRATABLE
        if "disruption budget" in message:
            return EvictionAnswer.BUDGET_BLOCKED
        return EvictionAnswer.RETRY
    if is_transient_status(status):
        return EvictionAnswer.RETRY
    return EvictionAnswer.REJECTED


def next_eviction_at(answer: EvictionAnswer, now: float, settings: DrainSettings,
                     retry_after_s: float | None = None) -> float | None:
    """When this pod may be evicted again; None when asking again cannot help (the drain stops).

    After a progress answer the loop asks again only if observed state still needs it (`needs_eviction`):
    an evacuation once triggered is KubeVirt's to finish, and re-evicting only says "in progress".
    """
    if answer in (EvictionAnswer.REJECTED, EvictionAnswer.NOT_MIGRATABLE):
        return None
    if answer is EvictionAnswer.RETRY and retry_after_s is not None:
        return now + min(max(retry_after_s, 0.0), settings.max_retry_after_s)
    return now + settings.eviction_retry_s


def needs_eviction(decision: PodDecision, pod_present: bool, vmi: Obj | None, node: str) -> bool:
    """From observed state: does this pod still need an eviction call (beyond its retry schedule)?"""
    if decision.action is not PodAction.EVICT or not pod_present:
        return False
    if decision.finished or decision.vmi is None or vmi is None:
        return True
    status = vmi.get("status", {})
    # Evacuation under way (or done): KubeVirt moves the VMI and deletes this pod itself.
    return not (status.get("evacuationNodeName") == node or status.get("nodeName") != node)


# ---------------------------------------------------------------- budget and parallelism


def migration_parallelism(kubevirt_cr: Obj | None) -> tuple[int, int]:
    """(parallelMigrationsPerCluster, parallelOutboundMigrationsPerNode) in effect."""
    migrations = ((kubevirt_cr or {}).get("spec", {}).get("configuration", {}) or {}).get("migrations") or {}
    return (int(migrations.get("parallelMigrationsPerCluster", DEFAULT_PARALLEL_PER_CLUSTER)),
            int(migrations.get("parallelOutboundMigrationsPerNode", DEFAULT_PARALLEL_OUTBOUND_PER_NODE)))


def drain_lanes(parallel_per_cluster: int, parallel_outbound_per_node: int) -> int:
    """Migrations out of one node that can run at once: both KubeVirt limits apply."""
    return max(1, min(parallel_per_cluster, parallel_outbound_per_node))


def list_schedule_makespan_s(durations_s: list[float], lanes: int) -> float:
    """Wall time of running `durations_s` in order on `lanes` parallel lanes, each next one on the first free lane.

    This is how KubeVirt starts Pending migrations (oldest first, when a slot frees): the expected drain
    time when each migration takes its duration.
    """
    if not durations_s:
        return 0.0
    lanes = max(1, lanes)
    free_at = [0.0] * min(lanes, len(durations_s))
    for duration in durations_s:
        i = free_at.index(min(free_at))
        free_at[i] += duration
    return max(free_at)


def drain_budget_s(deadlines_s: list[float], lanes: int, plain_pod_grace_s: list[float],
                   settings: DrainSettings) -> float:
    """The drain's deadline: every VMI's own migration deadline, run on the lanes KubeVirt allows.

    Graham's bound for list scheduling (sum / lanes + longest) holds whatever order KubeVirt picks, so a
    drain that overruns it is stuck, not slow. Plain pods add their longest grace period.
    """
    vmis = sum(deadlines_s) / max(1, lanes) + max(deadlines_s, default=0.0)
    pods = max(plain_pod_grace_s, default=0.0)
    return vmis + pods + settings.grace_slack_s


def grace_period_s(pod: Obj) -> float:
    value = pod.get("spec", {}).get("terminationGracePeriodSeconds")
    return float(value) if value is not None else DEFAULT_GRACE_PERIOD_S


# ---------------------------------------------------------------- progress and per-VM verdicts


def evacuations_of(vmims: list[Obj], namespace: str, vmi_name: str, node: str) -> list[Obj]:
    """The VMI's evacuation migrations away from `node`, oldest first."""
    found = [m for m in vmims
             if m.get("metadata", {}).get("namespace") == namespace and m.get("spec", {}).get("vmiName") == vmi_name
             and (m["metadata"].get("annotations") or {}).get(EVACUATION_ANNOTATION) == node]
    return sorted(found, key=lambda m: (m["metadata"].get("creationTimestamp") or "",
                                        int(m["metadata"].get("resourceVersion") or 0)))


def vmi_left_node(vmi: Obj | None, node: str, evacuations: list[Obj]) -> bool:
    """The issue's definition: nodeName changed, evacuationNodeName cleared, its migration Succeeded."""
    if vmi is None:
        return False
    status = vmi.get("status", {})
    if status.get("nodeName") == node or status.get("evacuationNodeName"):
        return False
    uid = (status.get("migrationState") or {}).get("migrationUid")
    return any(m["metadata"].get("uid") == uid and m.get("status", {}).get("phase") == MigrationPhase.SUCCEEDED for m in evacuations)


def vmi_moved_off(vmi: Obj | None, node: str) -> bool:
    """What the drain loop watches: the VMI itself reports a completed migration off `node`, evacuation cleared.

    The verdict (`vmi_left_node`) also checks the migration object; the loop reads only VMIs, the cheap part.
    """
    if vmi is None:
        return False
    status = vmi.get("status", {})
    state = status.get("migrationState") or {}
    return (status.get("nodeName") not in (None, node) and not status.get("evacuationNodeName")
            and bool(state.get("migrationUid")) and bool(state.get("completed")) and not state.get("failed"))


def vmi_done(fate: VMIFate, vmi: Obj | None, node: str, launcher_pods_left: int) -> bool:
    if fate is VMIFate.SHUTS_DOWN:
        return launcher_pods_left == 0
    return vmi_moved_off(vmi, node)


def phases_of(vmim: Obj) -> list[str]:
    return [p.get("phase") for p in vmim.get("status", {}).get("phaseTransitionTimestamps") or []]


class VMVerdict(BaseModel):
    """One VM of the drained node: what happened to it and whether that is acceptable."""

    model_config = ConfigDict(extra="forbid")

    vm: VMName  # written as "namespace/name" in drain/verdicts.json
    core: bool  # listed in the drill's vms (probed)
    fate: VMIFate
    source_node: str
    final_node: str | None
    migration: str | None  # the evacuation VMIM that moved it
    attempts: int  # evacuation migrations created for it
    status: CheckStatus
    checks: list[CheckResult] = Field(default_factory=list)
    observed_downtime_ms: float | None = None

    def as_check(self) -> CheckResult:
        failed = [c for c in self.checks if c.status is CheckStatus.FAIL]
        warned = [c for c in self.checks if c.status is CheckStatus.WARN]
        where = f"{self.source_node} -> {self.final_node or '?'}"
        if failed:
            message = f"{where}: " + "; ".join(f"{c.name}: {c.message}" for c in failed)
        elif warned:
            message = f"{where}: " + "; ".join(f"{c.name}: {c.message}" for c in warned)
        else:
            message = f"{where} by {self.migration} ({self.fate.value})" + (
                f", longest probe gap {self.observed_downtime_ms:.1f} ms" if self.observed_downtime_ms is not None else "")
        return CheckResult(name="drain.vm", status=self.status, subject=f"vmi {self.vm}", message=message,
                           evidence={"core": self.core, "fate": self.fate.value, "migration": self.migration,
                                     "attempts": self.attempts, "final_node": self.final_node,
                                     "checks": {c.name + (f" [{c.subject}]" if c.subject else ""): c.status.value
                                                for c in self.checks}})


def worst_status(checks: list[CheckResult]) -> CheckStatus:
    statuses = {c.status for c in checks}
    for status in (CheckStatus.FAIL, CheckStatus.WARN, CheckStatus.PASS):
        if status in statuses:
            return status
    return CheckStatus.NOT_APPLICABLE


def vm_verdict(vm: VMRef, *, core: bool, fate: VMIFate, node: str, vmi: Obj | None, evacuations: list[Obj],
               launcher_pods_left: int, probe_checks: list[CheckResult], observed_downtime_ms: float | None,
               stop_reason: str | None) -> VMVerdict:
    """Judge one VM after the drain, from observed objects (and copies of its evacuation migrations)."""
    subject = f"vmi {vm}"
    status = (vmi or {}).get("status", {})
    checks: list[CheckResult] = []
    migration: Obj | None = None
    if fate is VMIFate.SHUTS_DOWN:
        ok = launcher_pods_left == 0
        checks.append(CheckResult(
            name="drain.vm-off-node", status=CheckStatus.WARN if ok else CheckStatus.FAIL, subject=subject,
            message="shut down with its pod, as allowed (not live-migratable)" if ok
            else f"{launcher_pods_left} virt-launcher pod(s) still on {node}",
            evidence={"phase": status.get("phase"), "nodeName": status.get("nodeName")}))
    else:
        left = vmi_left_node(vmi, node, evacuations)
        why = stop_reason or "the drain's budget ran out"
        checks.append(CheckResult(
            name="drain.vm-off-node", status=CheckStatus.PASS if left else CheckStatus.FAIL, subject=subject,
            message=f"left {node} for {status.get('nodeName')}" if left else (
                "the VMI no longer exists" if vmi is None else
                f"still on {status.get('nodeName')} (evacuationNodeName={status.get('evacuationNodeName')!r}): {why}"),
            evidence={"nodeName": status.get("nodeName"), "evacuationNodeName": status.get("evacuationNodeName"),
                      "evacuations": [m["metadata"]["name"] for m in evacuations]}))
        uid = (status.get("migrationState") or {}).get("migrationUid")
        migration = next((m for m in evacuations if m["metadata"].get("uid") == uid), None)
        if left and migration is not None:
            checks += kubevirt_postchecks(migration, vmi or {}, node, phases_of(migration))
        failed_attempts = [m["metadata"]["name"] for m in evacuations
                           if m.get("status", {}).get("phase") == MigrationPhase.FAILED]
        if failed_attempts:
            checks.append(CheckResult(
                name="drain.evacuation-retries", status=CheckStatus.WARN, subject=subject,
                message=f"{len(failed_attempts)} evacuation migration(s) failed before the last attempt: {failed_attempts}",
                evidence={"failed": failed_attempts}))
    checks += probe_checks
    return VMVerdict(vm=vm, core=core, fate=fate, source_node=node, final_node=status.get("nodeName"),
                     migration=migration["metadata"]["name"] if migration else None, attempts=len(evacuations),
                     status=worst_status(checks), checks=checks, observed_downtime_ms=observed_downtime_ms)


def drain_summary_check(node: str, verdicts: list[VMVerdict], pods_left: list[PodRef], wall_s: float, budget_s: float,
                        stop_reason: str | None) -> CheckResult:
    """The drill-level outcome of the drain itself: every VM judged, nothing the drain evicts left on the node."""
    by_status: dict[str, int] = {}
    for v in verdicts:
        by_status[v.status.value] = by_status.get(v.status.value, 0) + 1
    ok = not pods_left and stop_reason is None
    message = (f"{node} drained in {wall_s:.1f} s (budget {budget_s:.0f} s): {len(verdicts)} VM(s) {by_status}" if ok
               else f"{node} not drained after {wall_s:.1f} s (budget {budget_s:.0f} s): "
                    f"{stop_reason or 'pods left'}; {len(pods_left)} pod(s) left: {_texts(pods_left[:5])}")
    return CheckResult(name="drain.completed", status=CheckStatus.PASS if ok else CheckStatus.FAIL, subject=f"node {node}",
                       message=message, evidence={"wall_s": wall_s, "budget_s": budget_s, "pods_left": _texts(pods_left),
                                                  "verdicts": by_status, "stop_reason": stop_reason},
                       remedy=None if ok else "see drain/verdicts.json for each VM; rollback cancelled the evacuations")



# ---------------------------------------------------------------- pre-flight of a drain


def _node_ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions") or [])


def _takes_vms(node: Obj) -> bool:
    labels = node.get("metadata", {}).get("labels") or {}
    return _node_ready(node) and not node.get("spec", {}).get("unschedulable") \
        and labels.get("kubevirt.io/schedulable") == "true"


@dataclass(frozen=True)
class DrainObservation:
    """What the pre-flight judges: the cluster as observed just before the drill asks to start."""

    node: str
    nodes: list[Obj]
    pods: list[Obj]  # pods bound to the node
    vmis: list[Obj]  # VMIs running on the node
    kubevirt_cr: Obj | None
    pdbs: list[Obj]
    deadlines_s: dict[VMRef, float]  # the drill's migration deadline for each VMI


def drain_preflight_checks(obs: DrainObservation, core_vms: list[VMRef], *, ignore_daemonsets: bool,
                           delete_emptydir_data: bool, allow_non_migratable: bool,
                           settings: DrainSettings) -> list[CheckResult]:
    checks: list[CheckResult] = []
    node = next((n for n in obs.nodes if n["metadata"]["name"] == obs.node), None)
    if node is None:
        return [CheckResult(name="drain.node", status=CheckStatus.FAIL, subject=f"node {obs.node}",
                            message=f"node {obs.node} does not exist (nodes: {sorted(n['metadata']['name'] for n in obs.nodes)})",
                            remedy="fix mode.node in the drill spec")]
    problems = []
    if node.get("spec", {}).get("unschedulable"):
        problems.append("it is already cordoned: someone else may be maintaining it")
    if not _node_ready(node):
        problems.append("it is not Ready")
    checks.append(CheckResult(
        name="drain.node", status=CheckStatus.FAIL if problems else CheckStatus.PASS, subject=f"node {obs.node}",
        message=f"node {obs.node}: " + ("; ".join(problems) if problems else f"Ready and schedulable, {len(obs.vmis)} "
                                        f"VMI(s) and {len(obs.pods)} pod(s) on it"),
        remedy="uncordon it after checking with its owner, or drill another node" if problems else None,
        evidence={"unschedulable": node.get("spec", {}).get("unschedulable"),
                  "conditions": node.get("status", {}).get("conditions")}))

    others = [n["metadata"]["name"] for n in obs.nodes if n["metadata"]["name"] != obs.node and _takes_vms(n)]
    checks.append(CheckResult(
        name="drain.destinations", status=CheckStatus.PASS if others or not obs.vmis else CheckStatus.FAIL,
        subject="nodes", message=f"nodes that can take the VMs: {others}" if others or not obs.vmis
        else "no other Ready, schedulable KubeVirt node: the VMs have nowhere to go",
        remedy=None if others or not obs.vmis else "uncordon or add a node", evidence={"candidates": others}))

    decisions = pods_to_drain(obs.pods, obs.node, ignore_daemonsets=ignore_daemonsets,
                              delete_emptydir_data=delete_emptydir_data)
    refused = [d for d in decisions if d.action is PodAction.REFUSE]
    skipped = [d for d in decisions if d.action is PodAction.SKIP]
    warned = [d for d in decisions if d.warning]
    evicted = [d for d in decisions if d.action is PodAction.EVICT]
    checks.append(CheckResult(
        name="drain.pods", status=CheckStatus.FAIL if refused else CheckStatus.PASS, subject=f"node {obs.node}",
        message=("the drain cannot evict: " + "; ".join(f"{d.pod}: {d.reason}" for d in refused)) if refused else
        f"{len(evicted)} pod(s) to evict ({sum(1 for d in evicted if d.vmi is not None)} virt-launcher), "
        f"{len(skipped)} left in place"
        + (f"; {len(warned)} with emptyDir data that is deleted" if warned else ""),
        remedy="set the flag the reason names, or move the pod first" if refused else None,
        evidence={"evict": _texts(d.pod for d in evicted), "skip": {str(d.pod): d.reason for d in skipped},
                  "refuse": {str(d.pod): d.reason for d in refused},
                  "warnings": {str(d.pod): d.warning for d in warned}}))

    blocked = {str(pod_ref(p)): names for p in obs.pods if (names := blocking_budgets(p, obs.pdbs))}
    if blocked:
        checks.append(CheckResult(
            name="drain.disruption-budgets", status=CheckStatus.WARN, subject=f"node {obs.node}",
            message=f"{len(blocked)} pod(s) covered by a PodDisruptionBudget that allows no disruption now: the Eviction "
                    "API refuses them until it does; the drain waits within its budget",
            evidence={"blocked": blocked}))

    on_node = {vmi_ref(v): v for v in obs.vmis}
    for ref, vmi in sorted(on_node.items(), key=lambda item: str(item[0])):
        fate, why = vmi_fate(vmi, obs.kubevirt_cr)
        checks.append(fate_check(ref, fate, why, allow_non_migratable))
    missing = [vm for vm in core_vms if vm not in on_node]
    checks.append(CheckResult(
        name="drain.core-vms-on-node", status=CheckStatus.FAIL if missing else CheckStatus.PASS,
        subject=f"node {obs.node}",
        message=f"not running on {obs.node}: {_texts(missing)}" if missing
        else f"the drill's VMs {_texts(core_vms)} run on {obs.node}",
        remedy="list under vms only VMs on the drained node (they are the ones probed)" if missing else None,
        evidence={"core_vms": _texts(core_vms), "on_node": sorted(_texts(on_node))}))

    budget, lanes, (per_cluster, per_node) = observed_budget(obs, settings)
    migrating = [ref for ref, vmi in on_node.items() if vmi_fate(vmi, obs.kubevirt_cr)[0] is not VMIFate.SHUTS_DOWN]
    checks.append(CheckResult(
        name="drain.budget", status=CheckStatus.PASS, subject=f"node {obs.node}",
        message=f"{len(migrating)} migration(s) on {lanes} lane(s) (parallelMigrationsPerCluster {per_cluster}, "
                f"parallelOutboundMigrationsPerNode {per_node}): drain deadline {budget:.0f} s",
        evidence={"budget_s": budget, "lanes": lanes, "parallel_per_cluster": per_cluster,
                  "parallel_outbound_per_node": per_node,
                  "deadlines_s": {str(ref): s for ref, s in obs.deadlines_s.items()}}))
    return checks


def observed_budget(obs: DrainObservation, settings: DrainSettings) -> tuple[float, int, tuple[int, int]]:
    """(drain deadline in s, lanes, (parallelMigrationsPerCluster, parallelOutboundMigrationsPerNode))."""
    per_cluster, per_node = migration_parallelism(obs.kubevirt_cr)
    lanes = drain_lanes(per_cluster, per_node)
    migrating = [obs.deadlines_s.get(vmi_ref(v), 0.0) for v in obs.vmis
                 if vmi_fate(v, obs.kubevirt_cr)[0] is not VMIFate.SHUTS_DOWN]
    by_key = {pod_ref(p): p for p in obs.pods}
    # Grace periods of the plain pods the drain evicts (flags do not matter: refused pods stop it anyway).
    plain = [grace_period_s(by_key[d.pod]) for d in pods_to_drain(obs.pods, obs.node, ignore_daemonsets=True,
                                                                  delete_emptydir_data=True)
             if d.action is PodAction.EVICT and d.vmi is None]
    return drain_budget_s(migrating, lanes, plain, settings), lanes, (per_cluster, per_node)
