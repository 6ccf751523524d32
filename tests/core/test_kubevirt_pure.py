"""The KubeVirt adapter's pure parts, judged on objects shaped like a cluster's."""

import copy

import pytest

from livedrill.outcomes import CheckStatus
from livedrill.platforms.kubevirt.adapter import abort_settled, vmim_manifest
from livedrill.platforms.kubevirt.checks import preflight_checks, vmi_memory_gib
from livedrill.quantity import parse_quantity
from livedrill.spec import VMRef, parse_spec
from tests.kubevirt_openapi import validator

SPEC = parse_spec("""\
name: t
cluster: lab
platform: {kind: kubevirt}
vms: [{namespace: banking, name: banking-core-vm}]
mode: {kind: targeted, target_node: node-2}
slo: {max_downtime_ms: 100, p99_latency_ms: 5}
""")
VM = VMRef(namespace="banking", name="banking-core-vm")


def _node(name, ready=True, unschedulable=False, kv="true"):
    return {"metadata": {"name": name, "labels": {"kubevirt.io/schedulable": kv, "kubernetes.io/hostname": name,
                                                  "cpumanager": "true"}},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "allocatable": {"cpu": "8", "memory": "16Gi"}}}


VMI = {"metadata": {"namespace": "banking", "name": "banking-core-vm"},
       "spec": {"evictionStrategy": "LiveMigrate", "domain": {"memory": {"guest": "256Mi"}, "cpu": {"dedicatedCpuPlacement": True}}},
       "status": {"phase": "Running", "nodeName": "node-1",
                  "conditions": [{"type": "Ready", "status": "True"}, {"type": "LiveMigratable", "status": "True"}]}}
NODES = {n: _node(n) for n in ("node-1", "node-2", "node-3")}
CR = {"spec": {"configuration": {"migrations": {"completionTimeoutPerGiB": 150}}}}


def _failing(checks):
    return {c.name: c.message for c in checks if c.status is CheckStatus.FAIL}


def test_healthy_cluster_passes_the_gate():
    assert _failing(preflight_checks(SPEC, VM, VMI, CR, NODES, [], "node-2")) == {}


@pytest.mark.parametrize("mutate, target, failing, words", [
    (lambda v, n, m: v["status"].update(phase="Pending"), "node-2", "vmi-running", "Pending"),
    (lambda v, n, m: v["status"]["conditions"].__setitem__(1, {"type": "LiveMigratable", "status": "False",
     "reason": "DisksNotLiveMigratable", "message": "PVC rootdisk is not shared (ReadWriteOnce)"}), "node-2",
     "live-migratable", "DisksNotLiveMigratable"),
    (lambda v, n, m: m.append({"metadata": {"name": "other"}, "spec": {"vmiName": "banking-core-vm"},
                               "status": {"phase": "Running"}}), "node-2", "no-migration-in-flight", "other"),
    (lambda v, n, m: n["node-2"]["spec"].update(unschedulable=True), "node-2", "target-node", "cordoned"),
    (lambda v, n, m: n["node-2"]["status"]["conditions"][0].update(status="False"), "node-2", "target-node", "not Ready"),
    (lambda v, n, m: n["node-2"]["metadata"]["labels"].update({"kubevirt.io/schedulable": "false"}), "node-2",
     "target-node", "kubevirt.io/schedulable"),
    (lambda v, n, m: None, "node-1", "target-node", "source node"),
    (lambda v, n, m: None, "node-9", "target-node", "does not exist"),
    (lambda v, n, m: [n[x]["spec"].update(unschedulable=True) for x in ("node-2", "node-3")], None, "target-node",
     "no Ready, schedulable"),
])
def test_each_gate_failure_names_the_problem(mutate, target, failing, words):
    vmi, nodes, vmims = copy.deepcopy(VMI), copy.deepcopy(NODES), []
    mutate(vmi, nodes, vmims)
    failures = _failing(preflight_checks(SPEC, VM, vmi, CR, nodes, vmims, target))
    assert set(failures) == {failing}, failures
    assert words in failures[failing]


def test_eviction_strategy_falls_back_to_the_cluster_and_warns_when_none():
    vmi = copy.deepcopy(VMI)
    del vmi["spec"]["evictionStrategy"]
    checks = {c.name: c for c in preflight_checks(SPEC, VM, vmi, {"spec": {"configuration": {"evictionStrategy": "LiveMigrate"}}}, NODES, [], "node-2")}
    assert checks["eviction-strategy"].status is CheckStatus.PASS and "cluster" in checks["eviction-strategy"].message
    checks = {c.name: c for c in preflight_checks(SPEC, VM, vmi, {}, NODES, [], "node-2")}
    assert checks["eviction-strategy"].status is CheckStatus.WARN


@pytest.mark.parametrize("state, uid, expected", [
    ({}, "u1", "cancelled before"),
    ({"migrationUid": "u0", "completed": True}, "u1", "cancelled before"),
    ({"migrationUid": "u1", "abortRequested": True}, "u1", None),
    ({"migrationUid": "u1", "abortStatus": "Succeeded", "completed": True, "failed": True}, "u1", "aborted"),
    ({"migrationUid": "u1", "abortStatus": "Failed", "completed": True}, "u1", "abort failed"),
    ({"migrationUid": "u1", "completed": True, "failed": False}, "u1", "completed before"),
])
def test_abort_settled(state, uid, expected):
    result = abort_settled(state, uid)
    assert (result is None) if expected is None else (expected in result)


@pytest.mark.parametrize("text, value", [("256Mi", 2**28), ("8Gi", 8 * 2**30), ("1G", 1e9), ("500m", 0.5), ("3", 3)])
def test_quantities(text, value):
    assert parse_quantity(text) == value


def test_quantity_error_names_the_value():
    with pytest.raises(ValueError, match="12XB"):
        parse_quantity("12XB")


def test_vmi_memory_from_guest_or_requests():
    assert vmi_memory_gib(VMI) == 0.25
    assert vmi_memory_gib({"spec": {"domain": {"resources": {"requests": {"memory": "8Gi"}}}}}) == 8



@pytest.mark.parametrize("target", [None, "node-2"])
def test_the_migration_object_we_create_validates_against_kubevirt_openapi(target):
    body = vmim_manifest(VM, target, "20261126T000000Z-t-abcdef")
    validator("v1.VirtualMachineInstanceMigration").validate(body)
    assert body["spec"]["vmiName"] == "banking-core-vm"
    assert body["metadata"]["labels"]["kubevirt.io/vmi-name"] == "banking-core-vm"  # how virtctl finds it
    assert ("addedNodeSelector" in body["spec"]) == (target is not None)
