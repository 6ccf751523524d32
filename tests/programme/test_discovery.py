"""Discovery from a readiness scan: memory, labels and why a VM cannot be drilled, per VM."""

from datetime import datetime, timezone

import pytest

from livedrill.errors import InputError
from livedrill.programme.discovery import targets_from_readiness
from livedrill.programme.inventory import ScopedSources, StaticInventory, Target
from livedrill.programme.spec import ClusterScope
from livedrill.readiness import ReadinessReport, VMReadiness


def vmi(name: str, memory: dict | None, labels: dict | None = None) -> dict:
    return {"metadata": {"namespace": "banking", "name": name, "labels": labels or {}},
            "spec": {"domain": memory or {}}}


def vm(name: str, memory: dict | None, labels: dict) -> dict:
    return {"metadata": {"namespace": "banking", "name": name},
            "spec": {"template": {"metadata": {"labels": labels}, "spec": {"domain": memory or {}}}}}


@pytest.mark.parametrize("judged, vmis, vms, expected", [
    (VMReadiness(vm="banking/a", node="node-1", ready=True), [vmi("a", {"memory": {"guest": "8Gi"}}, {"tier": "core"})],
     [vm("a", {"memory": {"guest": "4Gi"}}, {"app": "ledger"})], (8.0, True, None, {"tier": "core", "app": "ledger"})),
    (VMReadiness(vm="banking/b", node="node-1", ready=True),
     [vmi("b", {"resources": {"requests": {"memory": "512Mi"}}})], [], (0.5, True, None, {})),
    (VMReadiness(vm="banking/c", node="node-2", ready=False, reasons=["live-migratable: DisksNotLiveMigratable"]),
     [vmi("c", {"memory": {"guest": "2Gi"}})], [], (2.0, False, "live-migratable: DisksNotLiveMigratable", {})),
    (VMReadiness(vm="banking/d", node=None, ready=False, reasons=["vmi-running: no VMI"]), [],
     [vm("d", {"memory": {"guest": "16Gi"}}, {"tier": "core"})], (16.0, False, "vmi-running: no VMI", {"tier": "core"})),
    (VMReadiness(vm="banking/e", node="node-1", ready=True), [vmi("e", None)], [],
     (0.0, False, "memory size unknown: no spec.domain.memory.guest nor memory request or limit", {})),
])
def test_targets_from_readiness(judged, vmis, vms, expected):
    report = ReadinessReport(scanned_at=datetime.now(timezone.utc), selector={"tier": "core"}, vms=[judged])
    [target] = targets_from_readiness("lab", report, vmis, vms)
    assert (target.cluster, str(target.vm), target.node) == ("lab", str(judged.vm), judged.node)
    assert (target.gib, target.migratable, target.why_not, target.labels) == expected


def test_scoped_sources_name_a_cluster_without_inventory():
    file_source = StaticInventory([Target(cluster="b", vm="banking/x", node="n", gib=2, labels={"tier": "core"})])
    sources = ScopedSources({}, file_source)
    assert [str(t.vm) for t in sources.targets(ClusterScope(name="b", platform={"kind": "kubevirt"}))] == ["banking/x"]
    with pytest.raises(InputError, match="cluster a: no inventory"):
        ScopedSources({}, None).targets(ClusterScope(name="a", platform={"kind": "kubevirt"}))
