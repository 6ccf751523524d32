"""Pure decisions of the simulated virt-controller: effective migration settings, placement, admission to run.

Each function takes plain API objects (dicts) and returns a decision; the controller only observes and acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from livedrill.quantity import parse_quantity

Obj = dict[str, Any]

FINAL_PHASES = ("Succeeded", "Failed")
# KubeVirt's own defaults (its virt-config), used when the kubevirt CR leaves a field unset.
DEFAULT_MIGRATIONS: Obj = {
    "parallelMigrationsPerCluster": 5,
    "parallelOutboundMigrationsPerNode": 2,
    "bandwidthPerMigration": "0",
    "completionTimeoutPerGiB": 150,
    "progressTimeout": 150,
    "maxDowntimeMs": 900,
    "allowAutoConverge": False,
    "allowPostCopy": False,
}


@dataclass(frozen=True)
class MigrationSettings:
    parallel_per_cluster: int
    parallel_outbound_per_node: int
    bandwidth_bytes_per_s: float  # 0 = unlimited
    completion_timeout_per_gib_s: float
    progress_timeout_s: float
    max_downtime_ms: float
    policy_name: str | None


def _labels_match(selector: dict[str, str] | None, labels: dict[str, str]) -> int | None:
    """Number of matched labels, or None when the selector does not match."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return None
    return len(selector)


def matching_policy(policies: list[Obj], vmi_labels: dict[str, str], namespace_labels: dict[str, str]) -> Obj | None:
    """The MigrationPolicy with the most matching labels (KubeVirt's rule); ties go to the name first in order."""
    best: tuple[int, str] | None = None
    chosen = None
    for policy in policies:
        selectors = policy.get("spec", {}).get("selectors", {})
        vmi_score = _labels_match(selectors.get("virtualMachineInstanceSelector"), vmi_labels)
        ns_score = _labels_match(selectors.get("namespaceSelector"), namespace_labels)
        if vmi_score is None or ns_score is None:
            continue
        score = (vmi_score + ns_score, policy["metadata"]["name"])
        if best is None or score[0] > best[0] or (score[0] == best[0] and score[1] < best[1]):
            best, chosen = score, policy
    return chosen


def effective_settings(kubevirt_cr: Obj | None, policy: Obj | None) -> MigrationSettings:
    configured = ((kubevirt_cr or {}).get("spec", {}).get("configuration", {}) or {}).get("migrations") or {}
    merged = {**DEFAULT_MIGRATIONS, **configured}
    overrides = {k: v for k, v in (policy or {}).get("spec", {}).items() if k != "selectors"}
    merged.update(overrides)
    return MigrationSettings(
        parallel_per_cluster=int(merged["parallelMigrationsPerCluster"]),
        parallel_outbound_per_node=int(merged["parallelOutboundMigrationsPerNode"]),
        bandwidth_bytes_per_s=parse_quantity(str(merged["bandwidthPerMigration"])),
        completion_timeout_per_gib_s=float(merged["completionTimeoutPerGiB"]),
        progress_timeout_s=float(merged["progressTimeout"]),
        max_downtime_ms=float(merged["maxDowntimeMs"]),
        policy_name=(policy or {}).get("metadata", {}).get("name"),
    )


def may_start(source_node: str, running_sources: list[str], settings: MigrationSettings) -> bool:
    """Whether one more migration out of `source_node` fits the cluster and per-node parallelism limits.

    `running_sources` holds the source node of every migration already past Pending.
    """
    if len(running_sources) >= settings.parallel_per_cluster:
        return False
    return running_sources.count(source_node) < settings.parallel_outbound_per_node


def _ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions", []))


def pick_target_node(nodes: list[Obj], launcher_pods: list[Obj], vmi: Obj, added_selector: dict[str, str] | None) -> str | None:
    """Where the target virt-launcher pod can go: Ready, schedulable, KubeVirt-schedulable, matching the VMI's
    node selector merged over the migration's addedNodeSelector (the VM's own keys win), not the source node.
    Among candidates, the one running fewest virt-launcher pods, then by name.
    """
    source = vmi.get("status", {}).get("nodeName")
    selector = {**(added_selector or {}), **(vmi.get("spec", {}).get("nodeSelector") or {})}
    load = {}
    for pod in launcher_pods:
        if pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            node = pod.get("spec", {}).get("nodeName")
            load[node] = load.get(node, 0) + 1
    candidates = []
    for node in nodes:
        name = node["metadata"]["name"]
        labels = node["metadata"].get("labels") or {}
        if name == source or node.get("spec", {}).get("unschedulable") or not _ready(node):
            continue
        if labels.get("kubevirt.io/schedulable") != "true":
            continue
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        candidates.append((load.get(name, 0), name))
    return min(candidates)[1] if candidates else None


def live_migratable(vmi: Obj) -> tuple[bool, str, str]:
    """(migratable, reason, message) from the VMI's LiveMigratable condition."""
    for condition in vmi.get("status", {}).get("conditions", []):
        if condition.get("type") == "LiveMigratable":
            return condition.get("status") == "True", condition.get("reason", ""), condition.get("message", "")
    return False, "NotReported", "the VMI reports no LiveMigratable condition"


def eviction_strategy(vmi: Obj, kubevirt_cr: Obj | None) -> str:
    """The VMI's own evictionStrategy wins over the cluster's; KubeVirt's default is None."""
    own = vmi.get("spec", {}).get("evictionStrategy")
    cluster = ((kubevirt_cr or {}).get("spec", {}).get("configuration", {}) or {}).get("evictionStrategy")
    return own or cluster or "None"


def finished_to_collect(vmims: list[Obj], keep: int) -> list[str]:
    """Names of finished migrations of one VMI beyond the newest `keep` (KubeVirt's garbage collection)."""
    finished = [m for m in vmims if m.get("status", {}).get("phase") in FINAL_PHASES
                and not m["metadata"].get("finalizers")]
    finished.sort(key=lambda m: int(m["metadata"]["resourceVersion"]))
    return [m["metadata"]["name"] for m in finished[:-keep]] if len(finished) > keep else []
