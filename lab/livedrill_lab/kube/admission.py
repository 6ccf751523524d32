"""The virt-api admission webhook for VirtualMachineInstanceMigrations, as a store admission hook.

A VMIM's spec is immutable; a new one needs an existing, Running, live-migratable VMI with no migration in
flight. Admitted VMIMs get the `kubevirt.io/vmi-name` label and the migration finalizer.
"""

from __future__ import annotations

from livedrill_lab.kube import errors, policy
from livedrill_lab.kube.cluster import MIGRATION_FINALIZER, VMIMS, VMIS, Obj
from livedrill_lab.kube.resources import ResourceType
from livedrill_lab.kube.store import Store


def admit_migration(store: Store, operation: str, r: ResourceType, obj: Obj, old: Obj | None) -> None:
    if r is not VMIMS:
        return
    name = obj["metadata"].get("name", "")
    if operation == "UPDATE" and old is not None and obj.get("spec") != old.get("spec"):
        raise errors.invalid(r.kind, name, "spec is immutable after creation", "spec")
    if operation != "CREATE":
        return
    vmi_name = obj.get("spec", {}).get("vmiName")
    if not vmi_name:
        raise errors.invalid(r.kind, name, "spec.vmiName is required", "spec.vmiName")
    namespace = obj["metadata"]["namespace"]
    vmi = store.find(VMIS, namespace, vmi_name)
    if vmi is None:
        raise errors.invalid(r.kind, name, f"the VMI {namespace}/{vmi_name} does not exist", "spec.vmiName")
    if vmi.get("status", {}).get("phase") != "Running":
        raise errors.invalid(r.kind, name, f"Cannot migrate VMI {namespace}/{vmi_name}: it is not running")
    migratable, reason, message = policy.live_migratable(vmi)
    if not migratable:
        raise errors.invalid(r.kind, name, f"Cannot migrate VMI, Reason: {reason}, Message: {message}")
    others, _ = store.list(VMIMS, namespace)
    for other in others:
        if (other["spec"].get("vmiName") == vmi_name
                and other.get("status", {}).get("phase") not in policy.FINAL_PHASES):
            raise errors.invalid(
                r.kind, name, f"in-flight migration detected. Active migration job "
                f"({other['metadata']['name']}) is currently already in progress for VMI {vmi_name}.", "spec.vmiName")
    meta = obj["metadata"]
    meta.setdefault("labels", {})["kubevirt.io/vmi-name"] = vmi_name
    if MIGRATION_FINALIZER not in meta.setdefault("finalizers", []):
        meta["finalizers"].append(MIGRATION_FINALIZER)
