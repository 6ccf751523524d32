"""What a lab starts with. A preset is a list of API objects loaded in order, plus the VMIs that get a
real workload (ledger) process.

`targeted`: namespace `banking` with `banking-core-vm` (modelled on the seed's core VM) running on
node-1 of three schedulable nodes; the `kubevirt` CR carries the seed's migration settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

CPU_MODEL_LABEL = "cpu-model.node.kubevirt.io/Skylake-Server-noTSX-IBRS"
HOST_MODEL_LABEL = "host-model-cpu.node.kubevirt.io/Skylake-Server-noTSX-IBRS"
INVTSC_LABEL = "cpu-feature.node.kubevirt.io/invtsc"
# The seed's migration settings; maxDowntimeMs is the lab's choice so that the modelled pause of the
# 256Mi core VM lands in the tens of milliseconds (see precopy.py).
SEED_MIGRATIONS: Obj = {
    "bandwidthPerMigration": "64Mi",
    "completionTimeoutPerGiB": 800,
    "progressTimeout": 150,
    "maxDowntimeMs": 50,
    "parallelMigrationsPerCluster": 5,
    "parallelOutboundMigrationsPerNode": 2,
    "allowAutoConverge": False,
    "allowPostCopy": False,
}
CORE_VM_CLOUD_INIT = """#cloud-config
user: banking
password: changeme
chpasswd: { expire: False }
"""


@dataclass(frozen=True)
class PresetObject:
    group: str
    version: str
    plural: str
    namespace: str  # "" for cluster-scoped
    body: Obj


@dataclass(frozen=True)
class Preset:
    name: str
    objects: list[PresetObject]
    workload_vmis: list[str] = field(default_factory=list)  # "ns/name" of VMIs that get a ledger process


def _namespace(name: str, labels: dict[str, str]) -> PresetObject:
    return PresetObject("", "v1", "namespaces", "", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})


def _node(name: str, zone: str) -> PresetObject:
    return PresetObject("", "v1", "nodes", "", {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": zone, "kubevirt.io/schedulable": "true",
            CPU_MODEL_LABEL: "true", HOST_MODEL_LABEL: "true", INVTSC_LABEL: "true",
            "cpumanager": "true"}},
        "spec": {},
        "status": {
            "capacity": {"cpu": "16", "memory": "65536Mi", "pods": "110", "devices.kubevirt.io/kvm": "1k"},
            "allocatable": {"cpu": "15", "memory": "63488Mi", "pods": "110", "devices.kubevirt.io/kvm": "1k"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.36.0", "containerRuntimeVersion": "containerd://2.0.0",
                         "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12", "operatingSystem": "linux",
                         "architecture": "amd64", "machineID": "", "systemUUID": "", "bootID": "",
                         "kubeProxyVersion": ""},
        }})


def _kubevirt_cr() -> PresetObject:
    return PresetObject("kubevirt.io", "v1", "kubevirts", "kubevirt", {
        "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": "kubevirt"},
        "spec": {"configuration": {"migrations": dict(SEED_MIGRATIONS), "evictionStrategy": "LiveMigrate",
                                   "developerConfiguration": {"featureGates": []}}},
        "status": {"phase": "Deployed", "observedKubeVirtVersion": "v1.9.0", "targetKubeVirtVersion": "v1.9.0"}})


def core_vmi_spec(name: str) -> Obj:
    return {
        "domain": {
            "cpu": {"cores": 4, "sockets": 1, "threads": 1, "model": "host-passthrough",
                    "dedicatedCpuPlacement": True, "features": [{"name": "invtsc", "policy": "require"}]},
            "memory": {"guest": "256Mi"},
            "resources": {"requests": {"memory": "256Mi", "cpu": "4"}, "limits": {"memory": "256Mi", "cpu": "4"}},
            "devices": {
                "disks": [{"name": "rootdisk", "disk": {"bus": "virtio"}},
                          {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                "interfaces": [{"name": "default", "masquerade": {}}],
            },
        },
        "evictionStrategy": "LiveMigrate",
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [
            {"name": "rootdisk", "persistentVolumeClaim": {"claimName": f"{name}-rootdisk"}},
            {"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": CORE_VM_CLOUD_INIT}},
        ],
    }


def _core_vm(namespace: str, name: str) -> list[PresetObject]:
    labels = {"app": "banking-core", "tier": "core"}
    vm = PresetObject("kubevirt.io", "v1", "virtualmachines", namespace, {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {"runStrategy": "Always", "template": {"metadata": {"labels": dict(labels)},
                                                     "spec": core_vmi_spec(name)}},
        "status": {"printableStatus": "Running", "ready": True, "created": True}})
    # No status: the lab's controller starts it (launcher pod, Running, LiveMigratable) on the first
    # schedulable node by load then name, i.e. node-1.
    vmi = PresetObject("kubevirt.io", "v1", "virtualmachineinstances", namespace, {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "labels": {**labels, "kubevirt.io/vm": name},
                     "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": name,
                                          "uid": "", "controller": True, "blockOwnerDeletion": True}]},
        "spec": core_vmi_spec(name)})
    return [vm, vmi]


def targeted() -> Preset:
    objects = [
        _namespace("kubevirt", {"kubernetes.io/metadata.name": "kubevirt"}),
        _namespace("banking", {"kubernetes.io/metadata.name": "banking", "tier": "core"}),
        _node("node-1", "zone-a"), _node("node-2", "zone-a"), _node("node-3", "zone-b"),
        _kubevirt_cr(),
        *_core_vm("banking", "banking-core-vm"),
    ]
    return Preset("targeted", objects, ["banking/banking-core-vm"])


PRESETS = {"targeted": targeted}


def load_preset(name: str) -> Preset:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown lab preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
