"""What the virt-controller's parts share: the kinds they touch, the kubevirt CR and a VMI's effective
migration settings, and their writes (a VMIM's phase and conditions, the VMI's migrationState, events)."""

from __future__ import annotations

from typing import Any, Callable

from livedrill_lab.kube import errors, policy, resources
from livedrill_lab.kube.resources import KUBEVIRT, MIGRATIONS, ResourceType
from livedrill_lab.kube.store import Store, generated_suffix, rfc3339_now

Obj = dict[str, Any]

NODES = resources.find("", "v1", "nodes")
PODS = resources.find("", "v1", "pods")
EVENTS = resources.find("", "v1", "events")
NAMESPACES = resources.find("", "v1", "namespaces")
VMS = resources.find(KUBEVIRT, "v1", "virtualmachines")
VMIS = resources.find(KUBEVIRT, "v1", "virtualmachineinstances")
VMIMS = resources.find(KUBEVIRT, "v1", "virtualmachineinstancemigrations")
KUBEVIRTS = resources.find(KUBEVIRT, "v1", "kubevirts")
POLICIES = resources.find(MIGRATIONS, "v1alpha1", "migrationpolicies")

MIGRATION_FINALIZER = "kubevirt.io/migrationJobFinalize"
EVACUATION_ANNOTATION = "kubevirt.io/evacuationMigration"
KNOB = "lab.livedrill.io/"


# ---------------------------------------------------------------------- reads


def kubevirt_cr(store: Store) -> Obj | None:
    kubevirt_crs, _ = store.list(KUBEVIRTS, None)
    return kubevirt_crs[0] if kubevirt_crs else None


def migration_settings(store: Store, vmi: Obj) -> policy.MigrationSettings:
    """The settings a migration of `vmi` runs with: the kubevirt CR's, overridden by a matching MigrationPolicy."""
    policies, _ = store.list(POLICIES, None)
    namespace = store.find(NAMESPACES, "", vmi["metadata"]["namespace"]) or {"metadata": {}}
    chosen = policy.matching_policy(policies, vmi["metadata"].get("labels") or {},
                                    namespace["metadata"].get("labels") or {})
    return policy.effective_settings(kubevirt_cr(store), chosen)


# ---------------------------------------------------------------------- writes


def set_phase(store: Store, vmim: Obj, phase: str) -> None:
    def change(m: Obj) -> None:
        status = m.setdefault("status", {})
        status["phase"] = phase
        status.setdefault("phaseTransitionTimestamps", []).append(
            {"phase": phase, "phaseTransitionTimestamp": rfc3339_now()})
        if phase in policy.FINAL_PHASES:  # a final migration is released in the same write
            m["metadata"]["finalizers"] = [f for f in m["metadata"].get("finalizers", [])
                                           if f != MIGRATION_FINALIZER]

    store.mutate(VMIMS, vmim["metadata"]["namespace"], vmim["metadata"]["name"], change, "all")


def add_condition(store: Store, vmim: Obj, kind: str, message: str) -> None:
    def change(m: Obj) -> None:
        m.setdefault("status", {}).setdefault("conditions", []).append(
            {"type": kind, "status": "True", "message": message, "lastTransitionTime": rfc3339_now()})

    mutate_quietly(store, VMIMS, vmim, change)


def update_migration_state(store: Store, vmim: Obj, fields: Obj) -> None:
    namespace = vmim["metadata"]["namespace"]

    def change(v: Obj) -> None:
        state = v.setdefault("status", {}).get("migrationState") or {}
        if state.get("migrationUid") not in (None, vmim["metadata"]["uid"]):
            state = {}  # a previous migration's record is replaced by this one's
        state.update(fields)
        v["status"]["migrationState"] = state

    vmi = store.mutate(VMIS, namespace, vmim["spec"]["vmiName"], change, "all")
    mirror_state(store, vmim, vmi)


def mirror_state(store: Store, vmim: Obj, vmi: Obj) -> None:
    """The VMIM carries a copy of the VMI's migrationState (KubeVirt v1.x)."""
    state = vmi.get("status", {}).get("migrationState")
    mutate_quietly(store, VMIMS, vmim, lambda m: m.setdefault("status", {}).update(migrationState=state))


def mutate_quietly(store: Store, r: ResourceType, obj: Obj, change: Callable[[Obj], Any]) -> None:
    try:
        store.mutate(r, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], change, "all")
    except errors.ApiError:
        pass  # deleted meanwhile (e.g. a VMIM whose finalizer is already gone)


def delete_quietly(store: Store, r: ResourceType, namespace: str, name: str | None) -> None:
    if name:
        try:
            store.delete(r, namespace, name)
        except errors.ApiError:
            pass


def remove_finalizer(store: Store, vmim: Obj) -> None:
    def change(m: Obj) -> None:
        m["metadata"]["finalizers"] = [f for f in m["metadata"].get("finalizers", []) if f != MIGRATION_FINALIZER]

    mutate_quietly(store, VMIMS, vmim, change)


def event(store: Store, r: ResourceType, obj: Obj, kind: str, reason: str, message: str) -> None:
    meta = obj["metadata"]
    now = rfc3339_now()
    record = {
        "metadata": {"name": f"{meta['name']}.{generated_suffix(10)}", "namespace": meta["namespace"]},
        "involvedObject": {"kind": r.kind, "apiVersion": r.api_version, "namespace": meta["namespace"],
                           "name": meta["name"], "uid": meta["uid"]},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": "virtualmachine-controller"}, "reportingComponent": "virt-controller",
    }
    store.create(EVENTS, meta["namespace"], record)
