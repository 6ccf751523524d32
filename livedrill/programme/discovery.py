"""KubeVirt cluster scopes read live, as `livedrill readiness` reads a cluster: one LIST of each kind, never a
write. A VM the drill's pre-flight checks would refuse (not live-migratable, no VMI, ...) is listed as not
migratable, with the failing checks as the reason, so it shows as a coverage exception."""

from __future__ import annotations

from livedrill.platforms.kubevirt.adapter import KubeVirtAdapter
from livedrill.platforms.kubevirt.checks import CheckPolicy, vmi_memory_gib
from livedrill.programme.inventory import Inventory, InventorySource, ScopedSources, Target, gather
from livedrill.programme.spec import ClusterScope, Programme
from livedrill.readiness import ClusterReader, ReadinessReport, judge_readiness
from livedrill.spec import VMRef


def _key(obj: dict) -> VMRef:
    meta = obj.get("metadata", {})
    return VMRef(namespace=meta.get("namespace", ""), name=meta.get("name", ""))


def targets_from_readiness(cluster: str, report: ReadinessReport, vmis: list[dict], vms: list[dict]) -> list[Target]:
    """Pure: each VM the scan judged as a Target; memory from its VMI, else from its VirtualMachine's template."""
    vmi_by_key = {_key(v): v for v in vmis}
    template_by_key = {_key(v): v.get("spec", {}).get("template", {}) for v in vms}
    targets = []
    for judged in report.vms:
        vmi = vmi_by_key.get(judged.vm)
        template = template_by_key.get(judged.vm, {})
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels.update((vmi or {}).get("metadata", {}).get("labels") or {})
        annotations = dict(template.get("metadata", {}).get("annotations") or {})
        annotations.update((vmi or {}).get("metadata", {}).get("annotations") or {})
        gib = vmi_memory_gib(vmi if vmi is not None else template)
        why_not = list(judged.reasons)
        if gib == 0 and not why_not:
            why_not.append("memory size unknown: no spec.domain.memory.guest nor memory request or limit")
        targets.append(Target(cluster=cluster, vm=judged.vm, node=judged.node, gib=gib, labels=labels, annotations=annotations,
                              migratable=not why_not, why_not="; ".join(why_not) or None))
    return targets


class ReadinessSource:
    """An InventorySource over live KubeVirt clusters: one reader per cluster scope name."""

    def __init__(self, readers: dict[str, ClusterReader], policy: CheckPolicy):
        self._readers = readers
        self._policy = policy

    def targets(self, scope: ClusterScope) -> list[Target]:
        reader = self._readers[scope.name]
        objects = reader.cluster_objects(None)
        vmis = reader.list_all("kubevirt.io", "v1", "virtualmachineinstances")
        vms = reader.list_all("kubevirt.io", "v1", "virtualmachines")
        report = judge_readiness(vmis, vms, objects, self._policy, scope.selector)
        return targets_from_readiness(scope.name, report, vmis, vms)


def open_live_sources(programme: Programme, adapters: list) -> dict[str, InventorySource]:
    """A readiness-scan source per KubeVirt cluster scope (reads only); each adapter opened is added to `adapters`."""
    readers = {}
    for scope in programme.spec.clusters:
        if scope.platform.kind == "kubevirt":
            # As `livedrill readiness`: a transient error may be retried, within a few request timeouts.
            adapter = KubeVirtAdapter(scope.platform, call_deadline_s=scope.platform.request_timeout_s * 3)
            adapters.append(adapter)
            readers[scope.name] = adapter
    source = ReadinessSource(readers, CheckPolicy.from_spec(programme.template))
    return {name: source for name in readers}


def live_inventory(programme: Programme, rest: InventorySource | None = None) -> Inventory:
    """Every KubeVirt scope discovered live, the others from `rest` (an inventory file), split by `gather`."""
    adapters: list = []
    try:
        return gather(programme.spec, ScopedSources(open_live_sources(programme, adapters), rest))
    finally:
        for adapter in adapters:
            adapter.close()
