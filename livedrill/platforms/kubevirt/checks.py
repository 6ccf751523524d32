"""The KubeVirt pre-flight checks: pure functions of the objects the adapter gathered (no I/O).

Each check returns one CheckResult: a name, a verdict, a message naming the object judged, a remedy
when it fails, and the raw fields it judged as evidence. The adapter (adapter.py) lists the objects
once; `livedrill preflight`, `livedrill run` and `livedrill readiness` all judge them here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from livedrill.drain import FINISHED_POD_PHASES
from livedrill.forecast import MigrationLimits
from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.platforms.base import MigrationPhase
from livedrill.quantity import bytes_to_gib, parse_quantity
from livedrill.spec import Budgets, DrainMode, DrillSpec, VMRef, completion_budget_s, migration_deadline_s

# Phases before the guest's memory moves: a migration waiting here longer than KubeVirt's own
# auto-cancel of an unschedulable target pod (5 min: defaultUnschedulablePendingTimeoutSeconds of KubeVirt's
# virt-controller, pkg/virt-controller/watch in https://github.com/kubevirt/kubevirt) is stuck, not slow.
PRE_TRANSFER_PHASES = {"", *MigrationPhase.BEFORE_TRANSFER}  # "": status.phase not set yet
KUBEVIRT_TARGET_POD_TIMEOUT_S = 300.0
# KubeVirt's defaults where the kubevirt CR leaves a migration field unset (the Migration* and *Default
# constants of pkg/virt-config in https://github.com/kubevirt/kubevirt; older releases had 800 s/GiB and 64Mi).
DEFAULT_MIGRATIONS: dict[str, Any] = {
    "parallelMigrationsPerCluster": 5, "parallelOutboundMigrationsPerNode": 2, "bandwidthPerMigration": "0",
    "completionTimeoutPerGiB": 150, "progressTimeout": 150, "allowAutoConverge": False, "allowPostCopy": False,
}
CPU_MODEL_PREFIX = "cpu-model.node.kubevirt.io/"
HOST_MODEL_PREFIX = "host-model-cpu.node.kubevirt.io/"
MIGRATION_MODEL_PREFIX = "cpu-model-migration.node.kubevirt.io/"
CPU_FEATURE_PREFIX = "cpu-feature.node.kubevirt.io/"
CPU_MANAGER_LABEL = "cpumanager"  # set to "true" by KubeVirt on nodes whose kubelet runs the static CPU manager
LAUNCHER_LABEL, LAUNCHER_VALUE = "kubevirt.io", "virt-launcher"


@dataclass(frozen=True)
class CheckPolicy:
    """What the checks hold a VM to; from a drill spec, or the defaults a readiness scan uses."""

    budgets: Budgets = field(default_factory=Budgets)
    eviction_strategy_required: bool = True  # a drain (node maintenance) cannot move a VM without one
    require_dedicated_cpus: bool = True
    require_guest_agent: bool = False
    core_tier_selector: dict[str, str] = field(default_factory=lambda: {"tier": "core"})

    @classmethod
    def from_spec(cls, spec: DrillSpec) -> "CheckPolicy":
        return cls(budgets=spec.budgets, eviction_strategy_required=isinstance(spec.mode, DrainMode),
                   require_dedicated_cpus=spec.preflight.require_dedicated_cpus,
                   require_guest_agent=spec.preflight.require_guest_agent,
                   core_tier_selector=dict(spec.preflight.core_tier_selector))


@dataclass(frozen=True)
class ClusterObjects:
    """Everything the checks judge, as the API server returned it (plain dicts)."""

    kubevirt_cr: dict
    nodes: dict[str, dict]
    vmims: list[dict]  # all namespaces (cluster-wide parallelism); per-VMI checks filter by namespace
    pods: list[dict] = field(default_factory=list)  # all namespaces (node capacity, core-tier isolation)
    pvcs: list[dict] = field(default_factory=list)  # at least the VM's namespace
    policies: list[dict] = field(default_factory=list)  # MigrationPolicies
    namespaces: dict[str, dict] = field(default_factory=dict)
    now: datetime | None = None  # for ages of in-flight migrations


# ------------------------------------------------------------------ small readers


def _condition(obj: dict, ctype: str) -> dict | None:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == ctype:
            return cond
    return None


def node_is_ready(node: dict) -> bool:
    cond = _condition(node, "Ready")
    return bool(cond) and cond.get("status") == "True"


def vmi_memory_gib(vmi: dict) -> float:
    domain = vmi.get("spec", {}).get("domain", {})
    value = (domain.get("memory", {}).get("guest")
             or domain.get("resources", {}).get("requests", {}).get("memory")
             or domain.get("resources", {}).get("limits", {}).get("memory"))
    return bytes_to_gib(parse_quantity(value)) if value else 0.0


def _labels(obj: dict) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _result(name: str, ok: bool, subject: str, message: str, remedy: str, evidence: dict,
            soft: bool = False) -> CheckResult:
    """ok -> pass; not ok -> fail (warn when `soft`), with the remedy."""
    status = CheckStatus.PASS if ok else (CheckStatus.WARN if soft else CheckStatus.FAIL)
    return CheckResult(name=name, status=status, subject=subject, message=message,
                       remedy=None if ok else remedy, evidence=evidence)


def _na(name: str, subject: str, message: str, evidence: dict | None = None) -> CheckResult:
    return CheckResult(name=name, status=CheckStatus.NOT_APPLICABLE, subject=subject, message=message,
                       evidence=evidence or {})


# ------------------------------------------------------------------ the VM's own state


def vmi_running_check(vm: VMRef, vmi: dict) -> CheckResult:
    status = vmi.get("status", {})
    phase, ready = status.get("phase"), _condition(vmi, "Ready")
    ok = phase == "Running" and (ready is None or ready.get("status") == "True")
    return _result(
        "vmi-running", ok, f"vmi {vm}",
        f"VMI {vm} is {phase} on {status.get('nodeName')}" if ok
        else f"VMI {vm} is {phase!r} (Ready={ready and ready.get('status')}), not Running and Ready",
        "start the VM, or wait until it is Running and Ready",
        {"phase": phase, "nodeName": status.get("nodeName"), "ready": ready})


def missing_vmi_check(vm: VMRef, vm_object: dict | None) -> CheckResult:
    """No VMI: either no such VM at all, or a VirtualMachine that is not running."""
    if vm_object is None:
        return _result("vmi-running", False, f"vmi {vm}", f"VirtualMachineInstance {vm} does not exist",
                       "check vms[].namespace and vms[].name in the drill spec", {"vmi": None, "vm": None})
    spec, status = vm_object.get("spec", {}), vm_object.get("status", {})
    return _result("vmi-running", False, f"vm {vm}",
                   f"VirtualMachine {vm} is {status.get('printableStatus', 'not running')} "
                   f"(runStrategy {spec.get('runStrategy', spec.get('running'))}): it has no running instance",
                   f"start it (virtctl start -n {vm.namespace} {vm.name}) before the drill",
                   {"vmi": None, "vm": {"spec.runStrategy": spec.get("runStrategy"), "status": status}})


def _pvc_access_modes(vmi: dict, pvcs: list[dict]) -> list[dict]:
    by_name = {p["metadata"]["name"]: p for p in pvcs
               if p.get("metadata", {}).get("namespace", vmi["metadata"].get("namespace")) == vmi["metadata"].get("namespace")}
    out = []
    for volume in vmi.get("spec", {}).get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or volume.get("dataVolume") or {})
        name = claim.get("claimName") or claim.get("name")
        if not name:
            continue
        pvc = by_name.get(name)
        modes = (pvc or {}).get("spec", {}).get("accessModes") or (pvc or {}).get("status", {}).get("accessModes")
        out.append({"volume": volume.get("name"), "claim": name, "found": pvc is not None, "accessModes": modes})
    return out


def live_migratable_check(vm: VMRef, vmi: dict, pvcs: list[dict]) -> CheckResult:
    lm = _condition(vmi, "LiveMigratable")
    claims = _pvc_access_modes(vmi, pvcs)
    not_shared = [c["claim"] for c in claims if c["found"] and "ReadWriteMany" not in (c["accessModes"] or [])]
    ok = bool(lm) and lm.get("status") == "True"
    if ok:
        message = f"VMI {vm} is LiveMigratable"
        remedy = ""
    elif lm is None:
        message, remedy = f"VMI {vm} reports no LiveMigratable condition", "check that virt-handler runs on its node"
    else:
        message = f"VMI {vm} is not live-migratable: {lm.get('reason')}: {lm.get('message', '')}"
        remedy = {
            "DisksNotLiveMigratable": "give every disk a ReadWriteMany PVC (shared storage), or use storage migration",
            "InterfaceNotLiveMigratable": "connect the pod network with masquerade (or passt), not bridge",
            "HostDeviceNotLiveMigratable": "remove host devices (GPU, SR-IOV without migration support) from the VM",
        }.get(lm.get("reason", ""), "fix what the reason names")
        if lm.get("reason") == "DisksNotLiveMigratable" and not_shared:
            message += f" (not ReadWriteMany: {', '.join(f'PVC {vm.namespace}/{c}' for c in not_shared)})"
    return _result("live-migratable", ok, f"vmi {vm}", message, remedy,
                   {"condition": lm, "pvcs": claims, "not_read_write_many": not_shared,
                    "interfaces": vmi.get("spec", {}).get("domain", {}).get("devices", {}).get("interfaces")})


def eviction_strategy_check(vm: VMRef, vmi: dict, kubevirt_cr: dict, required: bool) -> CheckResult:
    vmi_strategy = vmi.get("spec", {}).get("evictionStrategy")
    cluster_strategy = kubevirt_cr.get("spec", {}).get("configuration", {}).get("evictionStrategy")
    strategy = vmi_strategy or cluster_strategy or "None"
    migrates = strategy in ("LiveMigrate", "LiveMigrateIfPossible")
    return _result(
        "eviction-strategy", migrates, f"vmi {vm}",
        f"VMI {vm}: evictionStrategy {strategy} ({'VMI' if vmi_strategy else 'cluster default'})"
        + ("" if migrates else ": a node drain would not live-migrate this VM, it would shut it down"),
        "set spec.evictionStrategy: LiveMigrate on the VM (or the cluster's in the kubevirt CR)",
        {"vmi": vmi_strategy, "cluster": cluster_strategy, "effective": strategy}, soft=not required)


def cpu_pinning_check(vm: VMRef, vmi: dict, required: bool) -> CheckResult:
    cpu = vmi.get("spec", {}).get("domain", {}).get("cpu") or {}
    qos = vmi.get("status", {}).get("qosClass")
    evidence = {"cpu": cpu, "qosClass": qos}
    if not required:
        return _na("cpu-pinning", f"vmi {vm}", "the spec does not require dedicated CPUs (preflight.require_dedicated_cpus)",
                   evidence)
    problems = []
    if not cpu.get("dedicatedCpuPlacement"):
        problems.append("spec.domain.cpu.dedicatedCpuPlacement is not true (vCPUs float on shared host CPUs)")
    if qos is not None and qos != "Guaranteed":
        problems.append(f"QoS class {qos}, pinning needs Guaranteed (requests = limits)")
    return _result("cpu-pinning", not problems, f"vmi {vm}",
                   f"VMI {vm}: vCPUs pinned 1:1 (dedicatedCpuPlacement, QoS {qos or 'not reported'})" if not problems
                   else f"VMI {vm}: " + "; ".join(problems),
                   "set spec.domain.cpu.dedicatedCpuPlacement: true with equal CPU/memory requests and limits",
                   evidence)


def guest_agent_check(vm: VMRef, vmi: dict, required: bool) -> CheckResult:
    agent = _condition(vmi, "AgentConnected")
    if not required:
        return _na("guest-agent", f"vmi {vm}", "the drill does not rely on the guest agent", {"condition": agent})
    ok = bool(agent) and agent.get("status") == "True"
    return _result("guest-agent", ok, f"vmi {vm}",
                   f"VMI {vm}: guest agent connected" if ok else f"VMI {vm}: guest agent not connected "
                   f"(AgentConnected={agent.get('status') if agent else 'absent'})",
                   "install and start qemu-guest-agent in the guest", {"condition": agent})


# ------------------------------------------------------------------ migrations in flight


def _age_s(obj: dict, now: datetime | None) -> float | None:
    stamp = obj.get("metadata", {}).get("creationTimestamp")
    if not stamp or now is None:
        return None
    return (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def _in_flight(vmims: list[dict]) -> list[dict]:
    return [m for m in vmims if (m.get("status", {}).get("phase") or MigrationPhase.PENDING) not in MigrationPhase.TERMINAL]


def no_migration_in_flight_check(vm: VMRef, vmi: dict, vmims: list[dict]) -> CheckResult:
    mine = [m["metadata"]["name"] for m in _in_flight(vmims)
            if m.get("spec", {}).get("vmiName") == vm.name
            and m.get("metadata", {}).get("namespace", vm.namespace) == vm.namespace]
    state = vmi.get("status", {}).get("migrationState") or {}
    running_state = bool(state) and not state.get("completed")
    ok = not mine and not running_state
    return _result(
        "no-migration-in-flight", ok, f"vmi {vm}",
        f"no migration in flight for VMI {vm}" if ok
        else f"a migration is already in flight for VMI {vm}: {mine or [state.get('migrationUid')]}",
        "wait for it to finish, or cancel it (delete the VirtualMachineInstanceMigration)",
        {"in_flight": mine, "migrationState": state})


def cluster_migrations_check(source: str | None, vmims: list[dict], settings: dict, now: datetime | None) -> CheckResult:
    """Room within KubeVirt's parallel limits, and no migration stuck before its transfer started."""
    per_cluster = int(settings["parallelMigrationsPerCluster"])
    per_node = int(settings["parallelOutboundMigrationsPerNode"])
    flying = _in_flight(vmims)
    rows = [{"name": f"{m['metadata'].get('namespace', '')}/{m['metadata']['name']}",
             "phase": m.get("status", {}).get("phase") or MigrationPhase.PENDING, "age_s": _age_s(m, now),
             "source": (m.get("status", {}).get("migrationState") or {}).get("sourceNode")} for m in flying]
    stuck = [r["name"] for r in rows if r["phase"] in PRE_TRANSFER_PHASES
             and r["age_s"] is not None and r["age_s"] > KUBEVIRT_TARGET_POD_TIMEOUT_S]
    from_source = [r["name"] for r in rows if source and r["source"] == source]
    problems = []
    if len(rows) >= per_cluster:
        problems.append(f"{len(rows)} migration(s) in flight cluster-wide ({', '.join(r['name'] for r in rows)}), "
                        f"the limit is {per_cluster}: ours would queue")
    if len(from_source) >= per_node:
        problems.append(f"{len(from_source)} outbound from {source} ({', '.join(from_source)}), "
                        f"the per-node limit is {per_node}")
    at_limit = bool(problems)
    if stuck:
        problems.append(f"stuck before transfer for over {KUBEVIRT_TARGET_POD_TIMEOUT_S:.0f}s: {stuck}")
    return CheckResult(
        name="cluster-migrations",
        status=CheckStatus.FAIL if at_limit else (CheckStatus.WARN if stuck else CheckStatus.PASS),
        subject="cluster migrations",
        message="; ".join(problems) if problems else
        f"{len(rows)} migration(s) in flight cluster-wide (limit {per_cluster}), {len(from_source)} from {source} (limit {per_node})",
        remedy="wait for the running migrations to finish, or cancel the stuck ones" if problems else None,
        evidence={"in_flight": rows, "parallelMigrationsPerCluster": per_cluster,
                  "parallelOutboundMigrationsPerNode": per_node})


# ------------------------------------------------------------------ migration configuration


def matching_policy(policies: list[dict], vmi_labels: dict[str, str], namespace_labels: dict[str, str]) -> dict | None:
    """The MigrationPolicy KubeVirt applies: every selector label matches, most matched labels wins (ties: by name)."""
    best: tuple[int, str] | None = None
    chosen = None
    for policy in policies:
        selectors = policy.get("spec", {}).get("selectors", {}) or {}
        vmi_sel = selectors.get("virtualMachineInstanceSelector") or {}
        ns_sel = selectors.get("namespaceSelector") or {}
        if not selector_matches(vmi_sel, vmi_labels) or not selector_matches(ns_sel, namespace_labels):
            continue
        score = (len(vmi_sel) + len(ns_sel), policy["metadata"]["name"])
        if best is None or score[0] > best[0] or (score[0] == best[0] and score[1] < best[1]):
            best, chosen = score, policy
    return chosen


def effective_migration_settings(kubevirt_cr: dict, policy: dict | None) -> dict[str, Any]:
    """KubeVirt's defaults, overridden by the cluster config, overridden by the matching policy."""
    configured = (kubevirt_cr.get("spec", {}).get("configuration", {}) or {}).get("migrations") or {}
    overrides = {k: v for k, v in (policy or {}).get("spec", {}).items() if k != "selectors"}
    return {**DEFAULT_MIGRATIONS, **configured, **overrides}


def migration_limits(vmi: dict, objects: "ClusterObjects", core_tier_selector: dict[str, str]) -> MigrationLimits:
    """What KubeVirt will migrate this VMI with (the convergence forecast's platform inputs).

    bandwidthPerMigration 0 means unlimited (no cap); a VMI matching the core-tier selector must not rely on
    post-copy, whose failure fails the VMI since KubeVirt v1.6."""
    namespace = objects.namespaces.get(vmi.get("metadata", {}).get("namespace", "")) or {}
    policy = matching_policy(objects.policies, _labels(vmi), _labels(namespace))
    settings = effective_migration_settings(objects.kubevirt_cr, policy)
    bandwidth = parse_quantity(str(settings["bandwidthPerMigration"]))
    downtime = settings.get("maxDowntimeMs")
    return MigrationLimits(
        bandwidth_bytes_per_s=bandwidth or None, max_downtime_ms=float(downtime) if downtime else None,
        auto_converge=bool(settings["allowAutoConverge"]), post_copy=bool(settings["allowPostCopy"]),
        post_copy_fails_vm=selector_matches(core_tier_selector, _labels(vmi)),
        source=f"MigrationPolicy {policy['metadata']['name']}" if policy else "cluster config")


def migration_budget_check(vm: VMRef, vmi: dict, settings: dict, policy: dict | None, budgets: Budgets) -> CheckResult:
    memory_gib = vmi_memory_gib(vmi)
    per_gib = float(settings["completionTimeoutPerGiB"])
    kubevirt_budget = completion_budget_s(per_gib, memory_gib)
    drill_budget = migration_deadline_s(budgets, memory_gib)
    source = f"MigrationPolicy {policy['metadata']['name']}" if policy else "cluster config"
    ok = drill_budget >= kubevirt_budget
    return _result(
        "migration-budget", ok, f"vmi {vm}",
        f"VMI {vm}: drill deadline {drill_budget:.0f}s for {memory_gib:.2f} GiB; KubeVirt's completion budget "
        f"{kubevirt_budget:.0f}s (completionTimeoutPerGiB {per_gib:g} from {source})"
        + ("" if ok else ": the drill may cancel a migration KubeVirt would still let run"),
        "raise budgets.migration_timeout_per_gib_s to at least completionTimeoutPerGiB",
        {"memory_gib": memory_gib, "drill_deadline_s": drill_budget, "kubevirt_completion_budget_s": kubevirt_budget,
         "effective_migrations": settings, "policy": policy}, soft=True)


# ------------------------------------------------------------------ the target node


def schedulable_problems(node: dict) -> list[str]:
    problems = []
    if not node_is_ready(node):
        problems.append("not Ready")
    if node.get("spec", {}).get("unschedulable"):
        problems.append("cordoned (spec.unschedulable)")
    if _labels(node).get("kubevirt.io/schedulable") != "true":
        problems.append("label kubevirt.io/schedulable is not 'true'")
    return problems


def _node_evidence(node: dict) -> dict:
    return {"labels": node.get("metadata", {}).get("labels"), "unschedulable": node.get("spec", {}).get("unschedulable"),
            "conditions": node.get("status", {}).get("conditions"), "allocatable": node.get("status", {}).get("allocatable")}


def target_node_check(target: str | None, source: str | None, nodes: dict[str, dict],
                      node_selector: dict[str, str] | None = None) -> tuple[CheckResult, list[str]]:
    """Is the target usable (or, with no target, is any node)? Returns the check and the usable candidates."""
    node_selector = node_selector or {}
    if target is None:
        excluded = {n: schedulable_problems(node) or (["outside the VM's nodeSelector"]
                                                      if not selector_matches(node_selector, _labels(node)) else [])
                    for n, node in nodes.items() if n != source}
        usable = sorted(n for n, problems in excluded.items() if not problems)
        detail = "; ".join(f"{n}: {', '.join(p)}" for n, p in sorted(excluded.items()) if p)
        return _result(
            "target-node", bool(usable), "nodes",
            f"nodes the VM could move to from {source}: {usable}" if usable
            else f"no Ready, schedulable KubeVirt node other than the source {source}"
            + (f" matching nodeSelector {node_selector}" if node_selector else "") + (f" ({detail})" if detail else ""),
            "uncordon or add a node" + (" matching the VM's nodeSelector" if node_selector else ""),
            {"candidates": usable, "excluded": excluded, "nodeSelector": node_selector,
             "nodes": {n: _node_evidence(node) for n, node in nodes.items()}}), usable
    node = nodes.get(target)
    if node is None:
        return _result("target-node", False, f"node {target}", f"target node {target} does not exist (nodes: {sorted(nodes)})",
                       "fix mode.target_node in the drill spec", {"nodes": sorted(nodes)}), []
    problems = schedulable_problems(node)
    if target == source:
        problems.append(f"it is the source node: the VM already runs on {source}")
    if not selector_matches(node_selector, _labels(node)):
        problems.append(f"it does not match the VM's nodeSelector {node_selector}")
    return _result(
        "target-node", not problems, f"node {target}",
        f"target node {target} is Ready and schedulable" if not problems else f"target node {target}: {'; '.join(problems)}",
        "choose another mode.target_node, or uncordon / repair the node", _node_evidence(node)), \
        ([] if problems else [target])


@dataclass(frozen=True)
class VMNeeds:
    cpu: float  # cores
    memory: float  # bytes
    dedicated_cpus: bool
    hugepage_size: str | None  # e.g. "2Mi", "1Gi"
    numa_passthrough: bool

    @classmethod
    def of(cls, vmi: dict) -> "VMNeeds":
        domain = vmi.get("spec", {}).get("domain", {})
        requests = domain.get("resources", {}).get("requests", {}) or {}
        cpu = domain.get("cpu") or {}
        vcpus = (cpu.get("cores") or 1) * (cpu.get("sockets") or 1) * (cpu.get("threads") or 1)
        memory = requests.get("memory") or domain.get("memory", {}).get("guest") or "0"
        return cls(cpu=parse_quantity(requests.get("cpu") or (vcpus if cpu.get("dedicatedCpuPlacement") else 0)),
                   memory=parse_quantity(memory), dedicated_cpus=bool(cpu.get("dedicatedCpuPlacement")),
                   hugepage_size=(domain.get("memory", {}).get("hugepages") or {}).get("pageSize"),
                   numa_passthrough="guestMappingPassthrough" in (cpu.get("numa") or {}))


def _pod_requests(pod: dict) -> dict[str, float]:
    total: dict[str, float] = {}
    for container in pod.get("spec", {}).get("containers", []) or []:
        for key, value in ((container.get("resources") or {}).get("requests") or {}).items():
            total[key] = total.get(key, 0.0) + parse_quantity(value)
    return total


def capacity_problems(needs: VMNeeds, node: dict, pods: list[dict]) -> list[str]:
    """What this node lacks to take the VM: free allocatable after the requests of the pods bound to it."""
    name = node["metadata"]["name"]
    allocatable = node.get("status", {}).get("allocatable") or {}
    used: dict[str, float] = {}
    for pod in pods:
        if pod.get("spec", {}).get("nodeName") == name and pod.get("status", {}).get("phase") not in FINISHED_POD_PHASES:
            for key, value in _pod_requests(pod).items():
                used[key] = used.get(key, 0.0) + value
    problems = []
    wanted = {"cpu": needs.cpu, "memory": needs.memory}
    if needs.hugepage_size:
        wanted[f"hugepages-{needs.hugepage_size}"] = needs.memory
        wanted["memory"] = 0.0  # guest RAM comes from hugepages, not from regular memory
    for resource, amount in wanted.items():
        if amount <= 0:
            continue
        if resource not in allocatable:
            problems.append(f"no allocatable {resource} reported")
            continue
        free = parse_quantity(allocatable[resource]) - used.get(resource, 0.0)
        if free < amount:
            shown = (lambda v: f"{v:g}") if resource == "cpu" else (lambda v: f"{v / 2**20:.0f}Mi")
            problems.append(f"{resource}: {shown(free)} free of {allocatable[resource]}, the VM needs {shown(amount)}")
    if (needs.dedicated_cpus or needs.numa_passthrough) and _labels(node).get(CPU_MANAGER_LABEL) != "true":
        problems.append("dedicated CPUs need the static CPU manager (node label cpumanager=true)")
    if needs.numa_passthrough and not needs.hugepage_size:
        problems.append("NUMA guestMappingPassthrough needs hugepages on the VM")
    return problems


def target_capacity_check(vm: VMRef, vmi: dict, candidates: list[str], nodes: dict[str, dict],
                          pods: list[dict]) -> tuple[CheckResult, list[str]]:
    needs = VMNeeds.of(vmi)
    if not candidates:
        return _na("target-capacity", f"vmi {vm}", "no usable target node to judge (see target-node)"), []
    problems = {n: capacity_problems(needs, nodes[n], pods) for n in candidates}
    fits = [n for n in candidates if not problems[n]]
    return _result(
        "target-capacity", bool(fits), f"vmi {vm}",
        f"VMI {vm} fits on {fits} (needs {needs.cpu:g} CPU, {needs.memory / 2**20:.0f}Mi"
        + (f", hugepages {needs.hugepage_size}" if needs.hugepage_size else "")
        + (", dedicated CPUs" if needs.dedicated_cpus else "") + ")" if fits
        else f"VMI {vm} fits on no target: " + "; ".join(f"node {n}: {', '.join(p)}" for n, p in problems.items()),
        "free capacity on the target (or pick a larger node): a target pod that cannot be scheduled is auto-cancelled",
        {"needs": needs.__dict__, "problems": problems,
         "allocatable": {n: nodes[n].get("status", {}).get("allocatable") for n in candidates}}), fits


def _prefixed(labels: dict[str, str], prefix: str) -> set[str]:
    return {k[len(prefix):] for k, v in labels.items() if k.startswith(prefix) and v == "true"}


def cpu_problems(vmi: dict, source: dict | None, target: dict) -> tuple[list[str], bool]:
    """(problems, judged): can the target run this guest's CPU model? judged=False when the nodes carry no labels."""
    cpu = vmi.get("spec", {}).get("domain", {}).get("cpu") or {}
    model = cpu.get("model") or "host-model"
    target_labels, source_labels = _labels(target), _labels(source or {})
    if not any(".node.kubevirt.io/" in k for k in target_labels):
        return [], False  # KubeVirt's node-labeller has not labelled the node: nothing to compare
    problems: list[str] = []
    judged = True
    if model == "host-passthrough":
        src = _prefixed(source_labels, CPU_MODEL_PREFIX) | {f"host:{m}" for m in _prefixed(source_labels, HOST_MODEL_PREFIX)}
        dst = _prefixed(target_labels, CPU_MODEL_PREFIX) | {f"host:{m}" for m in _prefixed(target_labels, HOST_MODEL_PREFIX)}
        if not src and not dst:
            judged = False
        elif src != dst:
            problems.append(f"host-passthrough needs identical CPUs: source-only {sorted(src - dst)}, "
                            f"target-only {sorted(dst - src)}")
    elif model == "host-model":
        host_models = _prefixed(source_labels, HOST_MODEL_PREFIX)
        if not host_models:
            judged = False
        else:
            usable = _prefixed(target_labels, CPU_MODEL_PREFIX) | _prefixed(target_labels, MIGRATION_MODEL_PREFIX) \
                | _prefixed(target_labels, HOST_MODEL_PREFIX)
            missing = sorted(host_models - usable)
            if missing:
                problems.append(f"host-model {missing} of the source is not supported on the target")
    elif CPU_MODEL_PREFIX + model not in target_labels or target_labels[CPU_MODEL_PREFIX + model] != "true":
        problems.append(f"CPU model {model} is not supported (no label {CPU_MODEL_PREFIX}{model}=true)")
    for feature in cpu.get("features") or []:
        if feature.get("policy", "require") in ("require", "force") and \
                target_labels.get(CPU_FEATURE_PREFIX + feature["name"]) != "true":
            problems.append(f"required CPU feature {feature['name']} missing ({CPU_FEATURE_PREFIX}{feature['name']})")
    return problems, judged


def cpu_compatibility_check(vm: VMRef, vmi: dict, candidates: list[str], nodes: dict[str, dict]) -> CheckResult:
    if not candidates:
        return _na("cpu-compatibility", f"vmi {vm}", "no target node with room to judge (see target-node, target-capacity)")
    source = nodes.get(vmi.get("status", {}).get("nodeName") or "")
    judged = {n: cpu_problems(vmi, source, nodes[n]) for n in candidates}
    fits = [n for n in candidates if not judged[n][0]]
    unjudged = [n for n in fits if not judged[n][1]]
    model = (vmi.get("spec", {}).get("domain", {}).get("cpu") or {}).get("model") or "host-model"
    evidence = {"model": model, "features": (vmi.get("spec", {}).get("domain", {}).get("cpu") or {}).get("features"),
                "source_labels": {k: v for k, v in _labels(source or {}).items() if ".node.kubevirt.io/" in k},
                "target_labels": {n: {k: v for k, v in _labels(nodes[n]).items() if ".node.kubevirt.io/" in k}
                                  for n in candidates},
                "problems": {n: p for n, (p, _) in judged.items()}}
    if fits and len(unjudged) == len(fits):
        return CheckResult(name="cpu-compatibility", status=CheckStatus.WARN, subject=f"vmi {vm}",
                           message=f"VMI {vm} ({model}): the nodes carry no KubeVirt CPU model labels, compatibility "
                           "cannot be judged", remedy="check that KubeVirt's node-labeller runs", evidence=evidence)
    return _result(
        "cpu-compatibility", bool(fits), f"vmi {vm}",
        f"VMI {vm} ({model}) can run on {fits}" if fits else f"VMI {vm} ({model}) cannot run on any target: "
        + "; ".join(f"node {n}: {', '.join(p)}" for n, (p, _) in judged.items()),
        "migrate to a node with the same CPU (host-passthrough), or use a named CPU model all nodes support",
        evidence)


# ------------------------------------------------------------------ compliance: core tier runs as VMs


def is_virt_launcher(pod: dict) -> bool:
    """A KubeVirt launcher pod: labelled so, and owned by a VirtualMachineInstance (its guest has its own kernel)."""
    owned = any(o.get("kind") == "VirtualMachineInstance" for o in pod.get("metadata", {}).get("ownerReferences") or [])
    return _labels(pod).get(LAUNCHER_LABEL) == LAUNCHER_VALUE and owned


def core_tier_isolation_check(pods: list[dict], selector: dict[str, str], scope: str) -> CheckResult:
    """Core-tier workloads must not share a kernel (the bank's isolation rule): a core-tier plain container fails."""
    core = [p for p in pods if selector_matches(selector, _labels(p))
            and p.get("status", {}).get("phase") not in FINISHED_POD_PHASES]
    containers = [p for p in core if not is_virt_launcher(p)]
    names = [f"pod {p['metadata'].get('namespace')}/{p['metadata']['name']}" for p in containers]
    return _result(
        "core-tier-isolation", not containers, scope,
        f"every core-tier workload ({selector}) in {scope} runs as a VM ({len(core)} core-tier pod(s), all virt-launcher)"
        if not containers else
        f"core-tier workload running as a plain container (shares the host kernel): {', '.join(names)}",
        "run core-tier workloads as KubeVirt VMs (own kernel, hardware isolation); containers are for non-core tiers",
        {"selector": selector, "violations": [{"name": p["metadata"]["name"], "namespace": p["metadata"].get("namespace"),
                                                "labels": _labels(p), "nodeName": p.get("spec", {}).get("nodeName"),
                                                "runtimeClassName": p.get("spec", {}).get("runtimeClassName"),
                                                "ownerReferences": p["metadata"].get("ownerReferences")}
                                               for p in containers],
         "core_tier_pods": len(core)})


# ------------------------------------------------------------------ all checks of one VM


def vm_checks(policy: CheckPolicy, vm: VMRef, vmi: dict, objects: ClusterObjects, target: str | None) -> list[CheckResult]:
    """Every KubeVirt check of one running VMI, judged from observed objects only."""
    source = vmi.get("status", {}).get("nodeName")
    namespace = objects.namespaces.get(vm.namespace) or {}
    policy_obj = matching_policy(objects.policies, _labels(vmi), _labels(namespace))
    settings = effective_migration_settings(objects.kubevirt_cr, policy_obj)
    target_result, candidates = target_node_check(target, source, objects.nodes, vmi.get("spec", {}).get("nodeSelector"))
    capacity_result, fitting = target_capacity_check(vm, vmi, candidates, objects.nodes, objects.pods)
    namespace_pods = [p for p in objects.pods if p.get("metadata", {}).get("namespace") == vm.namespace]
    return [
        vmi_running_check(vm, vmi),
        live_migratable_check(vm, vmi, objects.pvcs),
        eviction_strategy_check(vm, vmi, objects.kubevirt_cr, policy.eviction_strategy_required),
        no_migration_in_flight_check(vm, vmi, objects.vmims),
        cluster_migrations_check(source, objects.vmims, settings, objects.now),
        target_result,
        capacity_result,
        cpu_compatibility_check(vm, vmi, fitting, objects.nodes),
        migration_budget_check(vm, vmi, settings, policy_obj, policy.budgets),
        cpu_pinning_check(vm, vmi, policy.require_dedicated_cpus),
        guest_agent_check(vm, vmi, policy.require_guest_agent),
        core_tier_isolation_check(namespace_pods, policy.core_tier_selector, f"namespace {vm.namespace}"),
    ]


def preflight_checks(spec: DrillSpec, vm: VMRef, vmi: dict, kubevirt_cr: dict, nodes: dict[str, dict],
                     vmims: list[dict], target: str | None, **more: Any) -> list[CheckResult]:
    """The drill's gate for one VM: `more` carries the other ClusterObjects fields (pods, pvcs, policies, ...)."""
    objects = ClusterObjects(kubevirt_cr=kubevirt_cr, nodes=nodes, vmims=vmims, **more)
    return vm_checks(CheckPolicy.from_spec(spec), vm, vmi, objects, target)
