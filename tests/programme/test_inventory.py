"""Inventory: typed targets per cluster scope; exclusions and non-migratable VMs become exceptions."""

import pytest

from livedrill.programme.inventory import StaticInventory, Target, classify, gather, load_inventory
from livedrill.programme.spec import ClusterScope, ProgrammeSpec
from livedrill.spec import SpecError, VMRef

SCOPE = ClusterScope(name="a", platform={"kind": "kubevirt"}, exclusions=[
    {"vm": "banking/legacy", "reason": "SR-IOV NIC", "approved_by": "cio"}])


def target(name: str, cluster: str = "a", **kw) -> Target:
    return Target(cluster=cluster, vm=f"banking/{name}", node="n1", gib=4, labels={"tier": "core"}, **kw)


@pytest.mark.parametrize("t, kind, reason, approver", [
    (target("core-1"), None, None, None),
    (target("legacy"), "excluded", "SR-IOV NIC", "cio"),
    (target("pinned", migratable=False, why_not="hostDevices"), "not_migratable", "hostDevices", None),
    (target("legacy", migratable=False, why_not="hostDevices"), "excluded", "SR-IOV NIC", "cio"),
])
def test_classify(t, kind, reason, approver):
    exception = classify(SCOPE, t)
    assert (exception and (exception.kind, exception.reason, exception.approved_by)) == \
        ((kind, reason, approver) if kind else None)


def test_gather_keeps_every_core_vm_and_only_core_vms():
    spec = ProgrammeSpec.model_validate({
        "kind": "programme", "name": "p", "quarter": "2027Q1", "clusters": [SCOPE.model_dump()],
        "windows": {"timezone": "UTC", "slots": [{"start": "2027-01-02T01:00", "end": "2027-01-02T05:00"}]},
        "drill": {"spec": "x.yaml"}, "sign_off": {"roles": ["cio"]}})
    source = StaticInventory([
        target("core-1"), target("legacy"), target("pinned", migratable=False, why_not="hostDevices"),
        Target(cluster="a", vm="banking/web", node="n1", gib=2, labels={"tier": "web"}),
        target("other-cluster", cluster="b")])
    inventory = gather(spec, source)
    assert [t.vm for t in inventory.targets] == [VMRef(namespace="banking", name="core-1")]
    assert sorted((str(e.vm), e.kind) for e in inventory.exceptions) == [
        ("banking/legacy", "excluded"), ("banking/pinned", "not_migratable")]
    assert inventory.empty_clusters == []
    assert gather(spec, StaticInventory([target("core-1", cluster="b")])).empty_clusters == ["a"]


def test_inventory_file_problems_name_field_and_line(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text("targets:\n  - {cluster: a, vm: banking/x, node: n1, gib: -1}\n"
                    "  - {cluster: a, vm: banking/y, node: n1, gib: 2, migratable: false}\n")
    with pytest.raises(SpecError) as err:
        load_inventory(path)
    assert [(p.path, p.line) for p in err.value.problems] == [("targets[0].gib", 2), ("targets[1]", 3)]
    assert "say why" in err.value.problems[1].message


def test_inventory_file_refuses_a_vm_listed_twice(tmp_path):
    path = tmp_path / "inventory.json"
    path.write_text('{"targets": [{"cluster": "a", "vm": "banking/x", "node": "n1", "gib": 2},'
                    ' {"cluster": "a", "vm": "banking/x", "node": "n2", "gib": 2}]}')
    with pytest.raises(SpecError, match=r"more than once: \['a:banking/x'\]"):
        load_inventory(path)
