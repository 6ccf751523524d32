"""Eviction and the KubeVirt subresources the API server routes to the controller.

policy/v1 Eviction with KubeVirt's eviction webhook in front of virt-launcher pods (a LiveMigrate VMI's
pod is not evicted: its VMI is marked for evacuation and the eviction denied with 429), the evacuation
migrations the controller starts for VMIs so marked, the VMI `evacuate-cancel` and the VM `migrate`
subresources.
"""

from __future__ import annotations

import time

from livedrill_lab.kube import cluster, errors, policy
from livedrill_lab.kube.cluster import EVACUATION_ANNOTATION, PODS, VMIMS, VMIS, VMS, Obj
from livedrill_lab.kube.launcher import LAUNCHER_LABEL, VMI_NAME_LABEL, shut_down
from livedrill_lab.kube.resources import KUBEVIRT
from livedrill_lab.kube.store import Store

WEBHOOK_DENIAL = 'admission webhook "virt-launcher-eviction-interceptor.kubevirt.io" denied the request: '


class Eviction:
    def __init__(self, store: Store, evacuation_retry_s: float):
        self.store = store
        self.evacuation_retry_s = evacuation_retry_s
        self._evacuation_backoff: dict[str, float] = {}  # "ns/vmi" -> monotonic time of next attempt

    def evict(self, namespace: str, pod_name: str, body: Obj) -> Obj:
        """policy/v1 Eviction of a pod, with KubeVirt's eviction webhook in front of virt-launcher pods."""
        with self.store.lock:  # one decision at a time: concurrent evictions see each other's evacuation
            pod = self.store.get(PODS, namespace, pod_name)
            labels = pod["metadata"].get("labels") or {}
            vmi_name = labels.get(VMI_NAME_LABEL)
            vmi = self.store.find(VMIS, namespace, vmi_name) if labels.get(LAUNCHER_LABEL) == "virt-launcher" else None
            serving = (vmi is not None and pod.get("status", {}).get("phase") == "Running"
                       and vmi.get("status", {}).get("nodeName") == pod["spec"].get("nodeName"))
            if serving:
                strategy = policy.eviction_strategy(vmi, cluster.kubevirt_cr(self.store))
                if strategy in ("LiveMigrate", "LiveMigrateIfPossible", "External"):
                    self._deny_eviction(vmi, strategy, pod["spec"]["nodeName"])
            self.store.delete(PODS, namespace, pod_name)
            if serving:  # the VMI's only launcher is gone: the guest is shut down with it
                self.store.mutate(VMIS, namespace, vmi_name, shut_down, "all")
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _deny_eviction(self, vmi: Obj, strategy: str, node: str) -> None:
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        migratable, _, _ = policy.live_migratable(vmi)
        if not migratable and strategy == "LiveMigrate":
            raise errors.too_many_requests(
                WEBHOOK_DENIAL + f"VMI {namespace}/{name} is configured with an eviction strategy but is not "
                "live-migratable")
        if not migratable and strategy == "LiveMigrateIfPossible":
            return  # evicted like any pod: the VMI shuts down
        triggered = f'Eviction triggered evacuation of VMI "{namespace}/{name}"'
        if vmi.get("status", {}).get("evacuationNodeName"):
            raise errors.too_many_requests(WEBHOOK_DENIAL + f"Evacuation in progress: {triggered}")
        self.store.mutate(VMIS, namespace, name, lambda v: v["status"].update(evacuationNodeName=node), "all")
        raise errors.too_many_requests(WEBHOOK_DENIAL + triggered)

    def cancel_evacuation(self, namespace: str, vmi_name: str, body: Obj) -> Obj:
        vmi = self.store.get(VMIS, namespace, vmi_name)
        current = vmi.get("status", {}).get("evacuationNodeName")
        wanted = body.get("evacuationNodeName")
        if not current:
            raise errors.bad_request(f"VMI {namespace}/{vmi_name} is not being evacuated")
        if wanted and wanted != current:
            raise errors.bad_request(f"VMI {namespace}/{vmi_name} is being evacuated from {current}, not {wanted}")
        if not body.get("dryRun"):
            self.store.mutate(VMIS, namespace, vmi_name, lambda v: v["status"].pop("evacuationNodeName", None), "all")
            vmims, _ = self.store.list(VMIMS, namespace)
            for vmim in vmims:
                if (vmim["spec"].get("vmiName") == vmi_name and EVACUATION_ANNOTATION in
                        (vmim["metadata"].get("annotations") or {})
                        and vmim.get("status", {}).get("phase") not in policy.FINAL_PHASES):
                    self.store.delete(VMIMS, namespace, vmim["metadata"]["name"])
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200}

    def migrate_vm(self, namespace: str, vm_name: str, body: Obj) -> Obj:
        """The VM `migrate` subresource (virtctl migrate): a VMIM named kubevirt-migrate-vm-*; returns it."""
        vm = self.store.get(VMS, namespace, vm_name)
        if self.store.find(VMIS, namespace, vm_name) is None:
            raise errors.conflict(KUBEVIRT, "virtualmachines", vm_name, "VM is not running")
        migration = {
            "apiVersion": f"{KUBEVIRT}/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"generateName": "kubevirt-migrate-vm-"},
            "spec": {"vmiName": vm["metadata"]["name"],
                     **({"addedNodeSelector": body["addedNodeSelector"]} if body.get("addedNodeSelector") else {})},
        }
        if body.get("dryRun"):
            return migration
        return self.store.create(VMIMS, namespace, migration)

    def evacuate(self) -> None:
        """One reconcile step: a migration for each VMI marked for evacuation with none in flight (with back-off)."""
        vmis, _ = self.store.list(VMIS, None)
        vmims, _ = self.store.list(VMIMS, None)
        in_flight = {(m["metadata"]["namespace"], m["spec"].get("vmiName")) for m in vmims
                     if m.get("status", {}).get("phase") not in policy.FINAL_PHASES}
        now = time.monotonic()
        kubevirt_cr = cluster.kubevirt_cr(self.store)
        for vmi in vmis:
            node = vmi.get("status", {}).get("evacuationNodeName")
            key = (vmi["metadata"]["namespace"], vmi["metadata"]["name"])
            if not node or key in in_flight or now < self._evacuation_backoff.get("/".join(key), 0.0):
                continue
            if policy.eviction_strategy(vmi, kubevirt_cr) == "External":
                continue  # an external controller acts on evacuationNodeName, not KubeVirt
            if vmi.get("status", {}).get("nodeName") != node:
                self.store.mutate(VMIS, key[0], key[1], lambda v: v["status"].pop("evacuationNodeName", None), "all")
                continue
            self._evacuation_backoff["/".join(key)] = now + self.evacuation_retry_s
            self.store.create(VMIMS, key[0], {
                "apiVersion": f"{KUBEVIRT}/v1", "kind": "VirtualMachineInstanceMigration",
                "metadata": {"generateName": "kubevirt-evacuation-", "annotations": {EVACUATION_ANNOTATION: node}},
                "spec": {"vmiName": key[1]},
            })
