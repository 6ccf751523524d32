"""What a lab starts with. A preset is a list of API objects loaded in order, plus the VMIs that get a
real workload (ledger) process.

`targeted`: namespace `banking` with `banking-core-vm` (a core-banking VM: 4 dedicated vCPUs with
invtsc, 256Mi, a PVC root disk, LiveMigrate) running on node-1 of three schedulable nodes; the `kubevirt`
CR carries a bank's migration settings (PRESET_MIGRATIONS).

`drain`: node maintenance of node-1 (what `kubectl drain node-1 --ignore-daemonsets
--delete-emptydir-data` does). node-1 hosts two core VMs (`banking/banking-core-vm`, `banking/banking-core-vm-2`,
each with its own ledger process, really paused at stop-and-copy), three non-core VMs in namespace `apps`
(128Mi, no workload process: their stop-and-copy is modelled, nothing is paused) and `apps/report-cache`,
a ReplicaSet pod with emptyDir scratch data (evicted only with delete_emptydir_data).

`drain-100`: the scale case: 100 VMIs on node-1: four core VMs with ledgers (`banking/banking-core-vm`,
`banking/banking-core-vm-2..4`) and 96 non-core VMs (`apps/app-vm-001..096`, 64Mi, no workload process:
a hundred ledger processes would cost ~2.5 GB and measure nothing the four do not).

The drain presets' VMIs are loaded already running on node-1 (launcher pod bound there, status as
virt-handler reports it): the lab's controller would otherwise spread new VMIs over all nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from livedrill_lab.kube.launcher import launcher_pod, running_vmi_status

Obj = dict[str, Any]

CPU_MODEL_LABEL = "cpu-model.node.kubevirt.io/Skylake-Server-noTSX-IBRS"
HOST_MODEL_LABEL = "host-model-cpu.node.kubevirt.io/Skylake-Server-noTSX-IBRS"
INVTSC_LABEL = "cpu-feature.node.kubevirt.io/invtsc"
# A bank's migration settings (64Mi/s per migration, 5 in the cluster, 2 out of a node, no post-copy or
# auto-converge); maxDowntimeMs is the lab's choice so that the modelled pause of the
# 256Mi core VM lands in the tens of milliseconds (see precopy.py).
PRESET_MIGRATIONS: Obj = {
    "bandwidthPerMigration": "64Mi",
    "completionTimeoutPerGiB": 800,
    "progressTimeout": 150,
    "maxDowntimeMs": 50,
    "parallelMigrationsPerCluster": 5,
    "parallelOutboundMigrationsPerNode": 2,
    "allowAutoConverge": False,
    "allowPostCopy": False,
}
LEDGER_ADDRESS_ANNOTATION = "lab.livedrill.io/ledger-address"  # host:port of the VM's ledger
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
    # Each workload VMI (and its VM) carries its ledger's host:port in LEDGER_ADDRESS_ANNOTATION, the way a bank
    # annotates a VM with the test account its probe uses: the manager then starts the ledgers first.
    annotate_ledger_addresses: bool = False


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
        "spec": {"configuration": {"migrations": dict(PRESET_MIGRATIONS), "evictionStrategy": "LiveMigrate",
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


CORE_VM_LABELS = {"app": "banking-core", "tier": "core"}


def _core_vm_object(namespace: str, name: str) -> PresetObject:
    """The VirtualMachine of a core-banking VM (its VMI is started by the controller or placed by a preset)."""
    return PresetObject("kubevirt.io", "v1", "virtualmachines", namespace, {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": dict(CORE_VM_LABELS)},
        "spec": {"runStrategy": "Always", "template": {"metadata": {"labels": dict(CORE_VM_LABELS)},
                                                     "spec": core_vmi_spec(name)}},
        "status": {"printableStatus": "Running", "ready": True, "created": True}})


def _core_vm(namespace: str, name: str) -> list[PresetObject]:
    labels = dict(CORE_VM_LABELS)
    vm = _core_vm_object(namespace, name)
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


def _running_on(node: str, namespace: str, name: str, spec: Obj, labels: dict[str, str]) -> list[PresetObject]:
    """A VMI already running on `node`, and its virt-launcher pod (loaded after it: the owner uid is filled in)."""
    vmi: Obj = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "metadata": {"name": name, "namespace": namespace, "labels": {**labels, "kubevirt.io/nodeName": node}},
                "spec": spec}
    pod = launcher_pod(vmi, node)
    status = running_vmi_status(vmi, node, {"metadata": {"uid": ""}})
    status.pop("activePods")  # keyed by the pod's uid, which only the store assigns
    vmi["status"] = status
    return [PresetObject("kubevirt.io", "v1", "virtualmachineinstances", namespace, vmi),
            PresetObject("", "v1", "pods", namespace, pod)]


def _core_vm_on(node: str, namespace: str, name: str) -> list[PresetObject]:
    labels = dict(CORE_VM_LABELS)
    vm = _core_vm_object(namespace, name)
    vmi, pod = _running_on(node, namespace, name, core_vmi_spec(name), {**labels, "kubevirt.io/vm": name})
    vmi.body["metadata"]["ownerReferences"] = [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": name,
                                                "uid": "", "controller": True, "blockOwnerDeletion": True}]
    return [vm, vmi, pod]


def noncore_vmi_spec(memory: str) -> Obj:
    """A non-core tier VM: small, LiveMigrate, masquerade networking, a shared (RWX) root disk."""
    return {
        "domain": {"cpu": {"cores": 1}, "memory": {"guest": memory},
                   "resources": {"requests": {"memory": memory, "cpu": "500m"}},
                   "devices": {"disks": [{"name": "rootdisk", "disk": {"bus": "virtio"}}],
                               "interfaces": [{"name": "default", "masquerade": {}}]}},
        "evictionStrategy": "LiveMigrate",
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [{"name": "rootdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}],
    }


def _scratch_pod(namespace: str, name: str, node: str) -> PresetObject:
    """A ReplicaSet pod with emptyDir data: kubectl drain evicts it only with --delete-emptydir-data."""
    return PresetObject("", "v1", "pods", namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "report-cache"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "report-cache-5d4f8",
                                          "uid": "6c1f2f0e-0000-4000-8000-000000000001", "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "cache", "image": "registry.k8s.io/pause:3.10",
                                 "volumeMounts": [{"name": "scratch", "mountPath": "/cache"}]}],
                 "volumes": [{"name": "scratch", "emptyDir": {}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})


def _drain_preset(name: str, core: list[str], noncore: list[str], noncore_memory: str) -> Preset:
    objects = [
        _namespace("kubevirt", {"kubernetes.io/metadata.name": "kubevirt"}),
        _namespace("banking", {"kubernetes.io/metadata.name": "banking", "tier": "core"}),
        _namespace("apps", {"kubernetes.io/metadata.name": "apps", "tier": "non-core"}),
        _node("node-1", "zone-a"), _node("node-2", "zone-a"), _node("node-3", "zone-b"),
        _kubevirt_cr(),
    ]
    for vm in core:
        objects += _core_vm_on("node-1", "banking", vm)
    for vm in noncore:
        objects += _running_on("node-1", "apps", vm, noncore_vmi_spec(noncore_memory), {"app": vm, "tier": "non-core"})
    objects.append(_scratch_pod("apps", "report-cache-5d4f8-x7k2p", "node-1"))
    return Preset(name, objects, [f"banking/{vm}" for vm in core])


def drain() -> Preset:
    return _drain_preset("drain", ["banking-core-vm", "banking-core-vm-2"], [f"app-vm-{i}" for i in range(1, 4)],
                         "128Mi")


def drain_100() -> Preset:
    core = ["banking-core-vm"] + [f"banking-core-vm-{i}" for i in range(2, 5)]
    return _drain_preset("drain-100", core, [f"app-vm-{i:03d}" for i in range(1, 97)], "64Mi")


PRESETS = {"targeted": targeted, "drain": drain, "drain-100": drain_100}


def load_preset(name: str) -> Preset:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown lab preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def _pvc(namespace: str, name: str, access_mode: str) -> PresetObject:
    return PresetObject("", "v1", "persistentvolumeclaims", namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": [access_mode], "resources": {"requests": {"storage": "10Gi"}},
                 "storageClassName": "lab-shared" if access_mode == "ReadWriteMany" else "lab-local"},
        "status": {"phase": "Bound", "accessModes": [access_mode], "capacity": {"storage": "10Gi"}}})


def _readiness_vm(namespace: str, name: str, change=None, annotations: dict[str, str] | None = None,
                  access_mode: str = "ReadWriteMany") -> list[PresetObject]:
    """A core-tier VM like `banking-core-vm`, with `change` applied to its VMI spec (the fault it carries)."""
    vm, vmi = _core_vm(namespace, name)
    for obj in (vm.body["spec"]["template"]["spec"], vmi.body["spec"]):
        if change:
            change(obj)
    if annotations:
        vmi.body["metadata"]["annotations"] = dict(annotations)
    return [_pvc(namespace, f"{name}-rootdisk", access_mode), vm, vmi]


def readiness() -> Preset:
    """A cluster with deliberately broken core-tier VMs, for `livedrill readiness`.

    core-ready: healthy. core-rwo-disk: its PVC is ReadWriteOnce. core-bridge: bridge on the pod network.
    core-no-eviction: no evictionStrategy (and the cluster sets none). core-zone-b: may only run in zone-b,
    whose other node (node-4) is cordoned. Pod payments/core-ledger-container: a core-tier workload as a plain
    container (a compliance failure of the cluster, outside the VMs' namespace).
    """
    cordoned = _node("node-4", "zone-b")
    cordoned.body["spec"]["unschedulable"] = True
    cluster = _kubevirt_cr()
    del cluster.body["spec"]["configuration"]["evictionStrategy"]

    def bridge(spec: Obj) -> None:
        spec["domain"]["devices"]["interfaces"] = [{"name": "default", "bridge": {}}]

    def zone_b(spec: Obj) -> None:
        spec["nodeSelector"] = {"topology.kubernetes.io/zone": "zone-b"}

    container = PresetObject("", "v1", "pods", "payments", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "core-ledger-container", "labels": {"app": "ledger", "tier": "core"}},
        "spec": {"nodeName": "node-2", "containers": [{"name": "ledger", "image": "registry.bank.example/ledger:1.0",
                                                       "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
        "status": {"phase": "Running"}})
    web = PresetObject("", "v1", "pods", "banking", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-frontend", "labels": {"app": "web", "tier": "non-core"}},
        "spec": {"nodeName": "node-2", "containers": [{"name": "web", "image": "registry.bank.example/web:1.0"}]},
        "status": {"phase": "Running"}})
    objects = [
        _namespace("kubevirt", {"kubernetes.io/metadata.name": "kubevirt"}),
        _namespace("banking", {"kubernetes.io/metadata.name": "banking", "tier": "core"}),
        _namespace("payments", {"kubernetes.io/metadata.name": "payments"}),
        _node("node-1", "zone-a"), _node("node-2", "zone-a"), _node("node-3", "zone-b"), cordoned,
        cluster,
        *_readiness_vm("banking", "core-ready"),
        *_readiness_vm("banking", "core-rwo-disk", annotations={"lab.livedrill.io/pvc-access-mode": "ReadWriteOnce"},
                       access_mode="ReadWriteOnce"),
        *_readiness_vm("banking", "core-bridge", bridge),
        *_readiness_vm("banking", "core-no-eviction", lambda spec: spec.pop("evictionStrategy")),
        *_readiness_vm("banking", "core-zone-b", zone_b),
        container, web,
    ]
    return Preset("readiness", objects, [])


PRESETS["readiness"] = readiness

FLEET_CORE_VMS = [f"core-{i:02d}" for i in range(1, 13)]
FLEET_NON_MIGRATABLE = "core-legacy"


def fleet_member() -> Preset:
    """One cluster of the fleet lab (`livedrill lab up --preset fleet` starts two): twelve core VMs with real
    ledgers, four on each of three nodes, two non-core VMs, and `banking/core-legacy`, a core VM whose
    ReadWriteOnce root disk makes it not live-migratable (the quarter's coverage exception)."""
    cluster = _kubevirt_cr()
    # 256Mi/s per migration: a core VM's modelled pre-copy takes about a second, so a window of 12 drills per
    # cluster stays short on the lab; the pause stays in the tens of milliseconds.
    cluster.body["spec"]["configuration"]["migrations"]["bandwidthPerMigration"] = "256Mi"
    nodes = ["node-1", "node-2", "node-3"]
    objects = [
        _namespace("kubevirt", {"kubernetes.io/metadata.name": "kubevirt"}),
        _namespace("banking", {"kubernetes.io/metadata.name": "banking", "tier": "core"}),
        _namespace("apps", {"kubernetes.io/metadata.name": "apps", "tier": "non-core"}),
        *(_node(name, "zone-a") for name in nodes),
        cluster,
    ]
    for i, vm in enumerate(FLEET_CORE_VMS):
        objects += _core_vm_on(nodes[i % len(nodes)], "banking", vm)
    for i, vm in enumerate(("app-vm-1", "app-vm-2")):
        objects += _running_on(nodes[i], "apps", vm, noncore_vmi_spec("128Mi"), {"app": vm, "tier": "non-core"})
    objects += _readiness_vm("banking", FLEET_NON_MIGRATABLE, access_mode="ReadWriteOnce",
                             annotations={"lab.livedrill.io/pvc-access-mode": "ReadWriteOnce"})
    return Preset("fleet-member", objects, [f"banking/{vm}" for vm in FLEET_CORE_VMS], annotate_ledger_addresses=True)


PRESETS["fleet-member"] = fleet_member
