"""virt-launcher pods and the VMI status virt-handler reports: the objects the controller's parts write."""

from __future__ import annotations

from livedrill_lab.kube.cluster import KNOB, Obj
from livedrill_lab.kube.resources import KUBEVIRT
from livedrill_lab.kube.store import rfc3339_now

LAUNCHER_LABEL = "kubevirt.io"  # = "virt-launcher" on launcher pods
VMI_NAME_LABEL = "vm.kubevirt.io/name"
LAUNCHER_IMAGE = "quay.io/kubevirt/virt-launcher:v1.9.0"


def launcher_pod(vmi: Obj, node: str | None) -> Obj:
    """A virt-launcher pod for a VMI, Running on `node`, or Pending and unbound when node is None."""
    meta = vmi["metadata"]
    pod: Obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": f"virt-launcher-{meta['name']}-",
            "labels": {LAUNCHER_LABEL: "virt-launcher", "kubevirt.io/created-by": meta.get("uid", ""),
                       VMI_NAME_LABEL: meta["name"], "kubevirt.io/domain": meta["name"]},
            "annotations": {"kubevirt.io/domain": meta["name"]},
            "ownerReferences": [{"apiVersion": f"{KUBEVIRT}/v1", "kind": "VirtualMachineInstance",
                                 "name": meta["name"], "uid": meta.get("uid", ""), "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {"containers": [{"name": "compute", "image": LAUNCHER_IMAGE}],
                 "restartPolicy": "Never", "nodeSelector": {"kubevirt.io/schedulable": "true"}},
        "status": {"phase": "Pending"},
    }
    if node:
        bind_pod(pod, node)
        run_pod(pod, node)
    return pod


def is_launcher(pod: Obj) -> bool:
    return (pod["metadata"].get("labels") or {}).get(LAUNCHER_LABEL) == "virt-launcher"


def bind_pod(pod: Obj, node: str) -> None:
    pod["spec"]["nodeName"] = node
    pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}


def run_pod(pod: Obj, node: str) -> None:
    pod["spec"]["nodeName"] = node
    pod["status"] = {
        "phase": "Running", "hostIP": node_address(node), "podIP": "10.244.0.10", "startTime": rfc3339_now(),
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "compute", "ready": True, "restartCount": 0,
                               "image": LAUNCHER_IMAGE, "imageID": "",
                               "state": {"running": {"startedAt": rfc3339_now()}}}],
    }


def mark_unschedulable(pod: Obj, message: str) -> None:
    pod["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}


def complete_pod(pod: Obj) -> None:
    pod["status"]["phase"] = "Succeeded"
    for status in pod["status"].get("containerStatuses", []):
        status["ready"] = False
        status["state"] = {"terminated": {"exitCode": 0, "reason": "Completed"}}


def node_address(node: str) -> str:
    digits = "".join(ch for ch in node if ch.isdigit()) or "0"
    return f"192.168.122.{10 + int(digits) % 200}"


def start_vmi(vmi: Obj, node: str, pod: Obj) -> None:
    vmi["status"] = running_vmi_status(vmi, node, pod)
    vmi["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = node


def shut_down(vmi: Obj) -> None:
    status = vmi.setdefault("status", {})
    status["phase"] = "Failed"
    status["conditions"] = [{"type": "Ready", "status": "False", "reason": "PodTerminating",
                             "lastTransitionTime": rfc3339_now()}]
    status.setdefault("phaseTransitionTimestamps", []).append(
        {"phase": "Failed", "phaseTransitionTimestamp": rfc3339_now()})


def running_vmi_status(vmi: Obj, node: str, pod: Obj) -> Obj:
    """The status virt-handler reports for a VMI running on `node`; LiveMigratable follows its volumes."""
    migratable, reason, message = _migratability(vmi)
    now = rfc3339_now()
    condition = {"type": "LiveMigratable", "status": "True" if migratable else "False", "lastTransitionTime": now}
    if not migratable:
        condition.update(reason=reason, message=message)
    interfaces = vmi.get("spec", {}).get("domain", {}).get("devices", {}).get("interfaces") or [{"name": "default"}]
    return {
        "phase": "Running", "nodeName": node, "qosClass": "Guaranteed",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                       condition],
        "interfaces": [{"name": interfaces[0]["name"], "ipAddress": "10.0.2.2", "infoSource": "domain"}],
        "activePods": {pod["metadata"]["uid"]: node},
        "launcherContainerImageVersion": LAUNCHER_IMAGE,
        "phaseTransitionTimestamps": [{"phase": "Running", "phaseTransitionTimestamp": rfc3339_now()}],
    }


def _migratability(vmi: Obj) -> tuple[bool, str, str]:
    """KubeVirt's LiveMigratable rules the lab models: shared (RWX) PVCs only, no bridge on the pod network."""
    for interface in vmi.get("spec", {}).get("domain", {}).get("devices", {}).get("interfaces") or []:
        if "bridge" in interface:
            return False, "InterfaceNotLiveMigratable", "cannot migrate VMI which does not use masquerade or passt"
    access = (vmi["metadata"].get("annotations") or {}).get(KNOB + "pvc-access-mode", "ReadWriteMany")
    for volume in vmi.get("spec", {}).get("volumes") or []:
        if "persistentVolumeClaim" in volume and access != "ReadWriteMany":
            claim = volume["persistentVolumeClaim"]["claimName"]
            return False, "DisksNotLiveMigratable", f"cannot migrate VMI: PVC {claim} is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)"
    return True, "", ""
