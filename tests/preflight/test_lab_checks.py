"""Each KubeVirt pre-flight check on the lab: it passes on the healthy core VM, fails (naming the object and
the remedy) once an operator breaks what it judges with kubectl, and passes again once that is undone."""

from __future__ import annotations

import json

import pytest

from livedrill.outcomes import CheckStatus
from livedrill.spec import DrillSpec
from tests.preflight.conftest import kubectl, kubectl_apply, preflight, spec_data

pytestmark = pytest.mark.e2e

VMI = ("-n", "banking", "vmi/banking-core-vm")


def _filler_pod(name: str, labels: dict, cpu: str = "100m") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "banking", "labels": labels},
            "spec": {"nodeName": "node-2", "containers": [{"name": "app", "image": "registry.bank.example/app:1",
                                                           "resources": {"requests": {"cpu": cpu}}}]}}


def _stuck_migration(lab) -> None:
    kubectl(lab, "annotate", *VMI, "lab.livedrill.io/target-unschedulable=true")
    kubectl_apply(lab, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                        "metadata": {"name": "manual", "namespace": "banking"}, "spec": {"vmiName": "banking-core-vm"}})


def _cancel_migration(lab) -> None:
    kubectl(lab, "delete", "-n", "banking", "vmim/manual", "--wait=true", "--timeout=30s")
    kubectl(lab, "annotate", *VMI, "lab.livedrill.io/target-unschedulable-")


AGENT = json.dumps([{"op": "add", "path": "/status/conditions/-",
                     "value": {"type": "AgentConnected", "status": "True"}}])
CORE_POLICY = {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy", "metadata": {"name": "core-tier"},
               "spec": {"completionTimeoutPerGiB": 100, "selectors": {"virtualMachineInstanceSelector": {"tier": "core"},
                                                                       "namespaceSelector": {"tier": "core"}}}}

# (check, spec overrides, break it, undo it, words in the failure message, words in the remedy)
CASES = [
    ("vmi-running", {},
     lambda lab: kubectl(lab, "patch", *VMI, "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Paused"}}'),
     lambda lab: kubectl(lab, "patch", *VMI, "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Running"}}'),
     ["banking/banking-core-vm", "'Paused'"], "Running and Ready"),
    ("eviction-strategy", {"mode": {"kind": "drain", "node": "node-1"}},
     lambda lab: kubectl(lab, "patch", *VMI, "--type=merge", "-p", '{"spec":{"evictionStrategy":"None"}}'),
     lambda lab: kubectl(lab, "patch", *VMI, "--type=merge", "-p", '{"spec":{"evictionStrategy":"LiveMigrate"}}'),
     ["banking/banking-core-vm", "evictionStrategy None", "would not live-migrate"], "LiveMigrate"),
    ("no-migration-in-flight", {}, _stuck_migration, _cancel_migration,
     ["banking/banking-core-vm", "manual"], "cancel it"),
    ("cluster-migrations", {},
     lambda lab: (_stuck_migration(lab), kubectl(lab, "patch", "-n", "kubevirt", "kubevirt/kubevirt", "--type=merge", "-p",
                                                 '{"spec":{"configuration":{"migrations":{"parallelMigrationsPerCluster":1}}}}')),
     _cancel_migration, ["banking/manual", "the limit is 1"], "wait for the running migrations"),
    ("target-node", {}, lambda lab: kubectl(lab, "cordon", "node-2"), lambda lab: kubectl(lab, "uncordon", "node-2"),
     ["node-2", "cordoned"], "uncordon"),
    ("target-capacity", {}, lambda lab: kubectl_apply(lab, _filler_pod("batch", {"tier": "batch"}, cpu="14")),
     lambda lab: kubectl(lab, "delete", "-n", "banking", "pod/batch"),
     ["banking/banking-core-vm", "node node-2: cpu: 1 free of 15, the VM needs 4"], "free capacity"),
    ("cpu-compatibility", {},
     lambda lab: kubectl(lab, "label", "node", "node-2", "cpu-model.node.kubevirt.io/Skylake-Server-noTSX-IBRS-"),
     lambda lab: kubectl(lab, "label", "node", "node-2", "cpu-model.node.kubevirt.io/Skylake-Server-noTSX-IBRS=true"),
     ["banking/banking-core-vm", "host-passthrough needs identical CPUs", "Skylake-Server-noTSX-IBRS"], "same CPU"),
    ("cpu-pinning", {},
     lambda lab: kubectl(lab, "patch", *VMI, "--type=merge", "-p", '{"spec":{"domain":{"cpu":{"dedicatedCpuPlacement":false}}}}'),
     lambda lab: kubectl(lab, "patch", *VMI, "--type=merge", "-p", '{"spec":{"domain":{"cpu":{"dedicatedCpuPlacement":true}}}}'),
     ["banking/banking-core-vm", "dedicatedCpuPlacement is not true"], "dedicatedCpuPlacement: true"),
    ("guest-agent", {"preflight": {"require_guest_agent": True}},
     lambda lab: None, lambda lab: kubectl(lab, "patch", *VMI, "--subresource=status", "--type=json", "-p", AGENT),
     ["banking/banking-core-vm", "guest agent not connected"], "qemu-guest-agent"),
    ("core-tier-isolation", {}, lambda lab: kubectl_apply(lab, _filler_pod("ledger-sidecar", {"tier": "core"})),
     lambda lab: kubectl(lab, "delete", "-n", "banking", "pod/ledger-sidecar"),
     ["pod banking/ledger-sidecar", "plain container"], "KubeVirt VMs"),
    ("migration-budget", {"budgets": {"migration_timeout_per_gib_s": 150}},
     lambda lab: None, lambda lab: kubectl_apply(lab, CORE_POLICY),
     ["banking/banking-core-vm", "completion budget 1600s", "completionTimeoutPerGiB 800 from cluster config"],
     "migration_timeout_per_gib_s"),
]


def test_the_healthy_core_vm_passes_every_check(lab, tmp_path):
    checks = preflight(DrillSpec.model_validate(spec_data(lab, tmp_path)))
    assert {n: c.status for n, c in checks.items() if c.status is not CheckStatus.PASS} == \
        {"guest-agent": CheckStatus.NOT_APPLICABLE}
    for name, check in checks.items():
        assert check.subject and check.message, name
        assert check.evidence or name == "guest-agent", f"{name} judged no evidence"
    # the evidence is the raw object judged, e.g. the target node's labels and allocatable as the API served them
    assert checks["target-node"].evidence["allocatable"]["cpu"] == "15"
    assert checks["migration-budget"].evidence["effective_migrations"]["bandwidthPerMigration"] == "64Mi"


@pytest.mark.parametrize("name, overrides, breaks, undo, words, remedy", CASES, ids=[c[0] for c in CASES])
def test_each_check_fails_on_what_it_judges_and_recovers(lab, tmp_path, name, overrides, breaks, undo, words, remedy):
    spec = DrillSpec.model_validate(spec_data(lab, tmp_path, **overrides))
    breaks(lab)
    failed = preflight(spec)[name]
    assert failed.status in (CheckStatus.FAIL, CheckStatus.WARN), failed
    # a warn only where the check is advisory: the migration budget
    assert (failed.status is CheckStatus.WARN) == (name == "migration-budget")
    for word in words:
        assert word in failed.message, failed.message
    assert remedy in (failed.remedy or ""), failed.remedy
    undo(lab)
    again = preflight(spec)[name]
    assert again.status is CheckStatus.PASS, again.message
    if name == "migration-budget":
        assert "MigrationPolicy core-tier" in again.message  # the policy matched by labels now sets the budget
