"""Where virt-launcher pods go: a new VMI onto a schedulable node, a migration's target pod onto the node
the placement policy picks, or Unschedulable until KubeVirt's timeout."""

from __future__ import annotations

import time
from typing import Callable

from livedrill_lab.kube import cluster, policy
from livedrill_lab.kube.cluster import NODES, PODS, VMIMS, VMIS, Obj
from livedrill_lab.kube.launcher import VMI_NAME_LABEL, bind_pod, is_launcher, launcher_pod, mark_unschedulable, start_vmi
from livedrill_lab.kube.store import Store


def start_new_vmis(store: Store) -> None:
    """A VMI created without a phase gets a virt-launcher pod on a schedulable node and runs (no workload)."""
    fresh, _ = store.list(VMIS, None, lambda v: not v.get("status", {}).get("phase"))
    for vmi in fresh:
        nodes, _ = store.list(NODES, None)
        pods, _ = store.list(PODS, None, is_launcher)
        node = policy.pick_target_node(nodes, pods, vmi, None)
        if node is None:
            continue  # stays unscheduled until a node is available
        pod = store.create(PODS, vmi["metadata"]["namespace"], launcher_pod(vmi, node))
        store.mutate(VMIS, vmi["metadata"]["namespace"], vmi["metadata"]["name"],
                     lambda v: start_vmi(v, node, pod), "all")


def launcher_pod_name(store: Store, namespace: str, vmi_name: str, node: str) -> str | None:
    """The Running virt-launcher pod of the VMI on `node`, if any."""
    pods, _ = store.list(PODS, namespace, lambda p: (p["metadata"].get("labels") or {}).get(VMI_NAME_LABEL)
                         == vmi_name and p["spec"].get("nodeName") == node
                         and p.get("status", {}).get("phase") == "Running")
    return pods[0]["metadata"]["name"] if pods else None


def create_target_pod(store: Store, vmim: Obj, vmi: Obj) -> str:
    """The migration's target virt-launcher pod, Pending and unbound; returns its name."""
    namespace = vmi["metadata"]["namespace"]
    pod = launcher_pod(vmi, node=None)
    pod["metadata"]["labels"]["kubevirt.io/migrationJobUID"] = vmim["metadata"]["uid"]
    return store.create(PODS, namespace, pod)["metadata"]["name"]


def bind_target(store: Store, vmim: Obj, vmi: Obj, target_pod: str, *, unschedulable: bool, timeout_s: float,
                poll_s: float, wait: Callable[[float], None]) -> str | None:
    """Binds the target pod to a node and returns it, or None once `timeout_s` passed without one.

    Reported Unschedulable (pod condition and a Warning event on the VMIM) the first time no node takes
    it; `unschedulable` (the fault knob) means no node ever does. `wait` sleeps between looks (and may
    raise, to abort).
    """
    deadline = time.monotonic() + timeout_s
    reported = False
    while True:
        nodes, _ = store.list(NODES, None)
        pods, _ = store.list(PODS, None, is_launcher)
        current_vmi = store.get(VMIS, vmi["metadata"]["namespace"], vmi["metadata"]["name"])
        target = None if unschedulable else policy.pick_target_node(
            nodes, pods, current_vmi, vmim["spec"].get("addedNodeSelector"))
        if target:
            store.mutate(PODS, vmim["metadata"]["namespace"], target_pod, lambda p: bind_pod(p, target), "all")
            return target
        if not reported:
            reported = True
            message = "0/{} nodes are available for the target pod {}".format(len(nodes), target_pod)
            store.mutate(PODS, vmim["metadata"]["namespace"], target_pod, lambda p: mark_unschedulable(p, message),
                         "all")
            cluster.event(store, VMIMS, vmim, "Warning", "migrationTargetPodUnschedulable",
                          f"Migration target pod for VMI [{vmi['metadata']['namespace']}/{vmi['metadata']['name']}] "
                          f"is currently unschedulable.")
        if time.monotonic() >= deadline:
            return None
        wait(poll_s)
