"""Table tests of the pure KubeVirt pre-flight checks, on objects shaped like a cluster's."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from livedrill.outcomes import CheckStatus
from livedrill.platforms.kubevirt import checks as kc
from livedrill.spec import Budgets, VMRef

VM = VMRef(namespace="banking", name="core")
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
PASSTHROUGH_LABELS = {"cpu-model.node.kubevirt.io/Skylake-Server": "true",
                      "host-model-cpu.node.kubevirt.io/Skylake-Server": "true",
                      "cpu-feature.node.kubevirt.io/invtsc": "true"}


def node(name, *, cpu="16", memory="64Gi", labels=None, unschedulable=False, ready=True, **allocatable):
    return {"metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true", "cpumanager": "true",
                                                   "zone": "a", **PASSTHROUGH_LABELS, **(labels or {})}},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "allocatable": {"cpu": cpu, "memory": memory, **{k.replace("_", "-"): v for k, v in allocatable.items()}}}}


def vmi(**spec_changes):
    obj = {"metadata": {"namespace": "banking", "name": "core", "labels": {"tier": "core", "app": "ledger"}},
           "spec": {"evictionStrategy": "LiveMigrate",
                    "domain": {"cpu": {"cores": 4, "model": "host-passthrough", "dedicatedCpuPlacement": True,
                                       "features": [{"name": "invtsc", "policy": "require"}]},
                               "memory": {"guest": "8Gi"},
                               "resources": {"requests": {"cpu": "4", "memory": "8Gi"}},
                               "devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
                    "volumes": [{"name": "root", "persistentVolumeClaim": {"claimName": "core-root"}}]},
           "status": {"phase": "Running", "nodeName": "node-1", "qosClass": "Guaranteed",
                      "conditions": [{"type": "Ready", "status": "True"}, {"type": "LiveMigratable", "status": "True"}]}}
    obj["spec"].update(spec_changes)
    return obj


def pvc(name, mode):
    return {"metadata": {"name": name, "namespace": "banking"}, "spec": {"accessModes": [mode]}}


def vmim(name, phase, *, vmi_name="other", namespace="banking", age_s=10, source="node-3"):
    return {"metadata": {"name": name, "namespace": namespace,
                         "creationTimestamp": (NOW - timedelta(seconds=age_s)).isoformat().replace("+00:00", "Z")},
            "spec": {"vmiName": vmi_name}, "status": {"phase": phase, "migrationState": {"sourceNode": source}}}


def pod(name, *, labels, node_name="node-2", launcher=False, requests=None, namespace="banking", phase="Running"):
    meta = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if launcher:
        meta["labels"]["kubevirt.io"] = "virt-launcher"
        meta["ownerReferences"] = [{"kind": "VirtualMachineInstance", "name": name}]
    return {"metadata": meta, "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {"requests": requests or {}}}]},
            "status": {"phase": phase}}


NODES = {n: node(n) for n in ("node-1", "node-2", "node-3")}
SETTINGS = kc.effective_migration_settings({}, None)


# ------------------------------------------------------------------ VM state


@pytest.mark.parametrize("condition, pvcs, status, words", [
    ({"type": "LiveMigratable", "status": "True"}, [], CheckStatus.PASS, ["LiveMigratable"]),
    ({"type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable", "message": "PVC not shared"},
     [pvc("core-root", "ReadWriteOnce")], CheckStatus.FAIL,
     ["DisksNotLiveMigratable", "not ReadWriteMany: PVC banking/core-root"]),
    ({"type": "LiveMigratable", "status": "False", "reason": "InterfaceNotLiveMigratable", "message": "bridge"},
     [pvc("core-root", "ReadWriteMany")], CheckStatus.FAIL, ["InterfaceNotLiveMigratable"]),
    (None, [], CheckStatus.FAIL, ["no LiveMigratable condition"]),
])
def test_live_migratable_names_the_reason_and_the_pvc(condition, pvcs, status, words):
    obj = vmi()
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True"}] + ([condition] if condition else [])
    check = kc.live_migratable_check(VM, obj, pvcs)
    assert check.status is status
    for word in words:
        assert word in check.message
    assert "banking/core" in check.message
    assert (check.remedy is None) == (status is CheckStatus.PASS)
    assert check.evidence["condition"] == condition


def test_live_migratable_remedy_follows_the_reason():
    obj = vmi()
    obj["status"]["conditions"][1] = {"type": "LiveMigratable", "status": "False", "reason": "InterfaceNotLiveMigratable"}
    assert "masquerade" in kc.live_migratable_check(VM, obj, []).remedy
    obj["status"]["conditions"][1]["reason"] = "DisksNotLiveMigratable"
    assert "ReadWriteMany" in kc.live_migratable_check(VM, obj, [pvc("core-root", "ReadWriteOnce")]).remedy


@pytest.mark.parametrize("own, cluster, required, status, effective", [
    ("LiveMigrate", None, True, CheckStatus.PASS, "LiveMigrate"),
    (None, "LiveMigrate", True, CheckStatus.PASS, "LiveMigrate"),
    ("None", "LiveMigrate", True, CheckStatus.FAIL, "None"),  # the VMI's own value wins
    (None, None, True, CheckStatus.FAIL, "None"),
    (None, None, False, CheckStatus.WARN, "None"),  # a targeted drill does not need it
    ("External", None, True, CheckStatus.FAIL, "External"),
])
def test_eviction_strategy(own, cluster, required, status, effective):
    obj = vmi(evictionStrategy=own) if own else vmi()
    if not own:
        del obj["spec"]["evictionStrategy"]
    cr = {"spec": {"configuration": {"evictionStrategy": cluster}}} if cluster else {}
    check = kc.eviction_strategy_check(VM, obj, cr, required)
    assert check.status is status and check.evidence["effective"] == effective
    assert (check.remedy is not None) == (status is not CheckStatus.PASS)


@pytest.mark.parametrize("cpu, qos, required, status", [
    ({"dedicatedCpuPlacement": True}, "Guaranteed", True, CheckStatus.PASS),
    ({"dedicatedCpuPlacement": True}, None, True, CheckStatus.PASS),
    ({}, "Guaranteed", True, CheckStatus.FAIL),
    ({"dedicatedCpuPlacement": True}, "Burstable", True, CheckStatus.FAIL),
    ({}, "Burstable", False, CheckStatus.NOT_APPLICABLE),
])
def test_cpu_pinning(cpu, qos, required, status):
    obj = vmi()
    obj["spec"]["domain"]["cpu"] = cpu
    obj["status"]["qosClass"] = qos
    check = kc.cpu_pinning_check(VM, obj, required)
    assert check.status is status
    assert check.evidence == {"cpu": cpu, "qosClass": qos}


@pytest.mark.parametrize("condition, required, status", [
    ({"type": "AgentConnected", "status": "True"}, True, CheckStatus.PASS),
    (None, True, CheckStatus.FAIL),
    ({"type": "AgentConnected", "status": "False"}, True, CheckStatus.FAIL),
    (None, False, CheckStatus.NOT_APPLICABLE),
])
def test_guest_agent(condition, required, status):
    obj = vmi()
    if condition:
        obj["status"]["conditions"].append(condition)
    assert kc.guest_agent_check(VM, obj, required).status is status


def test_missing_vmi_says_whether_the_vm_exists():
    gone = kc.missing_vmi_check(VM, None)
    assert gone.status is CheckStatus.FAIL and "does not exist" in gone.message
    stopped = kc.missing_vmi_check(VM, {"spec": {"runStrategy": "Halted"}, "status": {"printableStatus": "Stopped"}})
    assert stopped.status is CheckStatus.FAIL and "Stopped" in stopped.message and "virtctl start" in stopped.remedy


# ------------------------------------------------------------------ migrations in flight


@pytest.mark.parametrize("vmims, status, words", [
    ([], CheckStatus.PASS, "0 migration(s)"),
    ([vmim("a", "Running"), vmim("b", "Succeeded")], CheckStatus.PASS, "1 migration(s)"),
    ([vmim(f"m{i}", "Running", source=f"node-{i + 2}") for i in range(5)], CheckStatus.FAIL, "limit is 5"),
    ([vmim("a", "Running", source="node-1"), vmim("b", "Scheduling", source="node-1")], CheckStatus.FAIL,
     "per-node limit is 2"),
    ([vmim("a", "Scheduling", age_s=301)], CheckStatus.WARN, "stuck before transfer"),
    ([vmim("a", "Running", age_s=3000)], CheckStatus.PASS, "1 migration(s)"),  # transferring for long: not stuck
])
def test_cluster_migrations(vmims, status, words):
    check = kc.cluster_migrations_check("node-1", vmims, SETTINGS, NOW)
    assert check.status is status, check.message
    assert words in check.message


def test_in_flight_is_per_vmi_and_namespace():
    other_ns = vmim("x", "Running", vmi_name="core", namespace="payments")
    assert kc.no_migration_in_flight_check(VM, vmi(), [other_ns]).status is CheckStatus.PASS
    mine = vmim("y", "Scheduling", vmi_name="core")
    check = kc.no_migration_in_flight_check(VM, vmi(), [other_ns, mine])
    assert check.status is CheckStatus.FAIL and "y" in check.message


# ------------------------------------------------------------------ migration configuration


def policy(name, vmi_sel=None, ns_sel=None, **settings):
    return {"metadata": {"name": name}, "spec": {"selectors": {"virtualMachineInstanceSelector": vmi_sel or {},
                                                                "namespaceSelector": ns_sel or {}}, **settings}}


@pytest.mark.parametrize("policies, expected", [
    ([], None),
    ([policy("web", {"tier": "web"})], None),
    ([policy("core", {"tier": "core"})], "core"),
    ([policy("core", {"tier": "core"}), policy("ledger", {"tier": "core", "app": "ledger"})], "ledger"),
    ([policy("core", {"tier": "core"}), policy("ns", ns_sel={"env": "prod"})], "core"),  # tie: by name
    ([policy("core", {"tier": "core"}), policy("prod-core", {"tier": "core"}, {"env": "prod"})], "prod-core"),
    ([policy("both", {"tier": "core"}, {"env": "test"})], None),  # every selector must match
])
def test_matching_policy_most_labels_wins(policies, expected):
    chosen = kc.matching_policy(policies, {"tier": "core", "app": "ledger"}, {"env": "prod"})
    assert (chosen or {}).get("metadata", {}).get("name") == expected


def test_effective_settings_layer_defaults_cluster_and_policy():
    cr = {"spec": {"configuration": {"migrations": {"completionTimeoutPerGiB": 800, "bandwidthPerMigration": "64Mi"}}}}
    merged = kc.effective_migration_settings(cr, policy("p", completionTimeoutPerGiB=100))
    assert merged["completionTimeoutPerGiB"] == 100 and merged["bandwidthPerMigration"] == "64Mi"
    assert merged["parallelMigrationsPerCluster"] == 5 and "selectors" not in merged


@pytest.mark.parametrize("per_gib_cluster, per_gib_drill, status", [
    (150, 150, CheckStatus.PASS), (800, 150, CheckStatus.WARN), (100, 150, CheckStatus.PASS)])
def test_migration_budget(per_gib_cluster, per_gib_drill, status):
    settings = {**SETTINGS, "completionTimeoutPerGiB": per_gib_cluster}
    check = kc.migration_budget_check(VM, vmi(), settings, policy("core-policy"),
                                      Budgets(migration_timeout_per_gib_s=per_gib_drill))
    assert check.status is status
    assert "MigrationPolicy core-policy" in check.message
    assert check.evidence["kubevirt_completion_budget_s"] == per_gib_cluster * 8


# ------------------------------------------------------------------ target node, capacity, CPU


@pytest.mark.parametrize("target, nodes, selector, status, usable, words", [
    ("node-2", NODES, None, CheckStatus.PASS, ["node-2"], "Ready and schedulable"),
    ("node-2", {**NODES, "node-2": node("node-2", unschedulable=True)}, None, CheckStatus.FAIL, [], "cordoned"),
    ("node-2", NODES, {"zone": "b"}, CheckStatus.FAIL, [], "nodeSelector"),
    (None, NODES, None, CheckStatus.PASS, ["node-2", "node-3"], "node-2"),
    (None, {**NODES, "node-3": node("node-3", labels={"zone": "b"}), "node-4": node("node-4", labels={"zone": "b"},
                                                                                    unschedulable=True)},
     {"zone": "b"}, CheckStatus.PASS, ["node-3"], "node-3"),
    (None, {"node-1": NODES["node-1"], "node-4": node("node-4", labels={"zone": "b"}, unschedulable=True)},
     {"zone": "b"}, CheckStatus.FAIL, [], "node-4: cordoned"),
])
def test_target_node(target, nodes, selector, status, usable, words):
    check, candidates = kc.target_node_check(target, "node-1", nodes, selector)
    assert check.status is status and candidates == usable
    assert words in check.message


@pytest.mark.parametrize("vmi_changes, node_obj, pods, problem", [
    ({}, node("node-2"), [], None),
    ({}, node("node-2", cpu="3"), [], "cpu: 3 free of 3, the VM needs 4"),
    ({}, node("node-2"), [pod("filler", labels={}, requests={"cpu": "14"})], "cpu: 2 free of 16"),
    ({}, node("node-2"), [pod("done", labels={}, requests={"cpu": "14"}, phase="Succeeded")], None),
    ({}, node("node-2"), [pod("elsewhere", labels={}, requests={"cpu": "14"}, node_name="node-3")], None),
    ({}, node("node-2", memory="4Gi"), [], "memory: 4096Mi free"),
    ({}, node("node-2", labels={"cpumanager": "false"}), [], "static CPU manager"),
    ({"hugepages": "1Gi"}, node("node-2"), [], "no allocatable hugepages-1Gi"),
    ({"hugepages": "1Gi"}, node("node-2", hugepages_1Gi="8Gi"), [], None),
    ({"hugepages": "1Gi"}, node("node-2", hugepages_1Gi="4Gi"), [], "hugepages-1Gi: 4096Mi free"),
    ({"numa": True}, node("node-2"), [], "NUMA guestMappingPassthrough needs hugepages"),
])
def test_capacity_problems(vmi_changes, node_obj, pods, problem):
    obj = vmi()
    if "hugepages" in vmi_changes:
        obj["spec"]["domain"]["memory"]["hugepages"] = {"pageSize": vmi_changes["hugepages"]}
    if vmi_changes.get("numa"):
        obj["spec"]["domain"]["cpu"]["numa"] = {"guestMappingPassthrough": {}}
    problems = kc.capacity_problems(kc.VMNeeds.of(obj), node_obj, pods)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_capacity_check_names_every_node_it_rejects():
    nodes = {**NODES, "node-2": node("node-2", cpu="2"), "node-3": node("node-3", memory="1Gi")}
    check, fits = kc.target_capacity_check(VM, vmi(), ["node-2", "node-3"], nodes, [])
    assert check.status is CheckStatus.FAIL and fits == []
    assert "node node-2: cpu" in check.message and "node node-3: memory" in check.message
    check, fits = kc.target_capacity_check(VM, vmi(), [], nodes, [])
    assert check.status is CheckStatus.NOT_APPLICABLE


@pytest.mark.parametrize("model, features, target_labels, problem", [
    ("host-passthrough", [], {}, None),
    ("host-passthrough", [], {"host-model-cpu.node.kubevirt.io/Skylake-Server": "false",
                              "host-model-cpu.node.kubevirt.io/Icelake-Server": "true"}, "identical CPUs"),
    ("host-model", [], {}, None),
    ("host-model", [], {"host-model-cpu.node.kubevirt.io/Skylake-Server": "false",
                        "cpu-model.node.kubevirt.io/Skylake-Server": "false"}, "not supported on the target"),
    ("Skylake-Server", [], {}, None),
    ("Cascadelake-Server", [], {}, "Cascadelake-Server is not supported"),
    ("host-passthrough", [{"name": "invtsc", "policy": "require"}], {"cpu-feature.node.kubevirt.io/invtsc": "false"},
     "feature invtsc"),
    ("host-passthrough", [{"name": "vmx", "policy": "optional"}], {}, None),
])
def test_cpu_problems(model, features, target_labels, problem):
    obj = vmi()
    obj["spec"]["domain"]["cpu"].update(model=model, features=features)
    problems, judged = kc.cpu_problems(obj, NODES["node-1"], node("node-2", labels=target_labels))
    assert judged
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_cpu_compatibility_warns_when_nodes_carry_no_cpu_labels():
    bare = {n: {"metadata": {"name": n, "labels": {}}} for n in ("node-1", "node-2")}
    check = kc.cpu_compatibility_check(VM, vmi(), ["node-2"], bare)
    assert check.status is CheckStatus.WARN and "node-labeller" in check.remedy


# ------------------------------------------------------------------ compliance


@pytest.mark.parametrize("pods, status, named", [
    ([], CheckStatus.PASS, None),
    ([pod("virt-launcher-core-x", labels={"tier": "core"}, launcher=True)], CheckStatus.PASS, None),
    ([pod("ledger", labels={"tier": "core"})], CheckStatus.FAIL, "pod banking/ledger"),
    ([pod("fake", labels={"tier": "core", "kubevirt.io": "virt-launcher"})], CheckStatus.FAIL, "pod banking/fake"),
    ([pod("web", labels={"tier": "web"})], CheckStatus.PASS, None),
    ([pod("old", labels={"tier": "core"}, phase="Succeeded")], CheckStatus.PASS, None),
])
def test_core_tier_isolation(pods, status, named):
    check = kc.core_tier_isolation_check(pods, {"tier": "core"}, "cluster")
    assert check.status is status
    if named:
        assert named in check.message and "plain container" in check.message and check.remedy
        assert check.evidence["violations"][0]["labels"]["tier"] == "core"


def test_every_check_of_a_healthy_vm_passes_with_evidence():
    objects = kc.ClusterObjects(kubevirt_cr={}, nodes=NODES, vmims=[], pods=[], pvcs=[pvc("core-root", "ReadWriteMany")],
                                policies=[], namespaces={}, now=NOW)
    checks = kc.vm_checks(kc.CheckPolicy(), VM, vmi(), objects, "node-2")
    assert [c.name for c in checks] == [
        "vmi-running", "live-migratable", "eviction-strategy", "no-migration-in-flight", "cluster-migrations",
        "target-node", "target-capacity", "cpu-compatibility", "migration-budget", "cpu-pinning", "guest-agent",
        "core-tier-isolation"]
    assert {c.name: c.status for c in checks if c.status is not CheckStatus.PASS} == \
        {"guest-agent": CheckStatus.NOT_APPLICABLE}
    assert all(c.evidence for c in checks if c.name != "guest-agent")


def test_a_cordoned_target_is_judged_once():
    nodes = copy.deepcopy(NODES)
    nodes["node-2"]["spec"]["unschedulable"] = True
    objects = kc.ClusterObjects(kubevirt_cr={}, nodes=nodes, vmims=[], now=NOW)
    checks = {c.name: c for c in kc.vm_checks(kc.CheckPolicy(), VM, vmi(), objects, "node-2")}
    assert checks["target-node"].status is CheckStatus.FAIL
    assert checks["target-capacity"].status is CheckStatus.NOT_APPLICABLE
    assert checks["cpu-compatibility"].status is CheckStatus.NOT_APPLICABLE
