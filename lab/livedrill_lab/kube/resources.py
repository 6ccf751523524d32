"""The resource types the lab serves, with what discovery says about each."""

from __future__ import annotations

from dataclasses import dataclass, field

_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
_ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    singular: str = ""
    categories: tuple[str, ...] = ()
    has_status: bool = True
    verbs: tuple[str, ...] = _ALL_VERBS
    field_selectors: frozenset[str] = _COMMON_FIELDS
    extra_subresources: tuple[tuple[str, str, tuple[str, ...]], ...] = field(default=())  # (name, kind, verbs)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}"


KUBEVIRT = "kubevirt.io"
MIGRATIONS = "migrations.kubevirt.io"

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), "namespace",
                 field_selectors=_COMMON_FIELDS | {"status.phase"}),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), "node",
                 field_selectors=_COMMON_FIELDS | {"spec.unschedulable"}),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), "pod", ("all",),
                 field_selectors=_COMMON_FIELDS | {"spec.nodeName", "status.phase"},
                 extra_subresources=(("eviction", "Eviction", ("create",)),)),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), "persistentvolumeclaim"),
    ResourceType("", "v1", "events", "Event", True, ("ev",), "event", has_status=False,
                 field_selectors=_COMMON_FIELDS | {
                     "involvedObject.kind", "involvedObject.name", "involvedObject.namespace",
                     "involvedObject.uid", "reason", "type"}),
    ResourceType(KUBEVIRT, "v1", "virtualmachines", "VirtualMachine", True, ("vm", "vms"), "virtualmachine", ("all",)),
    ResourceType(KUBEVIRT, "v1", "virtualmachineinstances", "VirtualMachineInstance", True, ("vmi", "vmis"),
                 "virtualmachineinstance", ("all",),
                 field_selectors=_COMMON_FIELDS | {"status.phase", "status.nodeName"}),
    ResourceType(KUBEVIRT, "v1", "virtualmachineinstancemigrations", "VirtualMachineInstanceMigration", True,
                 ("vmim", "vmims"), "virtualmachineinstancemigration", ("all",),
                 field_selectors=_COMMON_FIELDS | {"status.phase"}),
    ResourceType(KUBEVIRT, "v1", "kubevirts", "KubeVirt", True, ("kv", "kvs"), "kubevirt", ("all",)),
    ResourceType(MIGRATIONS, "v1alpha1", "migrationpolicies", "MigrationPolicy", False, (), "migrationpolicy",
                 ("all",)),
)

# Virtual subresources of KubeVirt's aggregated API (subresources.kubevirt.io), served by handlers.
SUBRESOURCE_GROUP = "subresources.kubevirt.io"
SUBRESOURCE_VERSION = "v1"

BY_KEY = {r.key: r for r in RESOURCES}


def find(group: str, version: str, plural: str) -> ResourceType | None:
    resource = BY_KEY.get(f"{group}/{plural}")
    return resource if resource and resource.version == version else None


def groups() -> dict[str, str]:
    """Named API groups and their (single) version."""
    return {r.group: r.version for r in RESOURCES if r.group}
