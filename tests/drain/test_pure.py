"""Table tests of the drain's pure decisions (livedrill/drain.py), on objects shaped like a cluster's."""

from __future__ import annotations

import pytest

from livedrill.drain import (DrainObservation, DrainSettings, EvictionAnswer, PodAction, PodRef, VMIFate, blocking_budgets,
                             classify_eviction, decide_pod, drain_budget_s, drain_summary_check, drain_lanes, drain_preflight_checks,
                             evacuations_of, fate_check, list_schedule_makespan_s, migration_parallelism,
                             needs_eviction, next_eviction_at, observed_budget, pods_to_drain, vm_verdict,
                             vmi_done, vmi_fate, vmi_left_node, vmi_moved_off, vmi_ref)
from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.spec import VMRef

SETTINGS = DrainSettings()
NODE = "node-1"
VM_A = VMRef(namespace="apps", name="vm-a")


def pod(name, *, ns="apps", owner="ReplicaSet", phase="Running", node=NODE, emptydir=False, mirror=False,
        launcher_of=None, labels=None):
    meta = {"name": name, "namespace": ns, "labels": dict(labels or {}), "annotations": {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": f"{name}-owner", "controller": True}]
    if mirror:
        meta["annotations"]["kubernetes.io/config.mirror"] = "abc"
    if launcher_of:
        meta["labels"].update({"kubevirt.io": "virt-launcher", "vm.kubevirt.io/name": launcher_of})
        meta["ownerReferences"] = [{"kind": "VirtualMachineInstance", "name": launcher_of, "controller": True}]
    volumes = [{"name": "scratch", "emptyDir": {}}] if emptydir else [{"name": "cfg", "configMap": {"name": "c"}}]
    return {"metadata": meta, "spec": {"nodeName": node, "volumes": volumes}, "status": {"phase": phase}}


@pytest.mark.parametrize("kwargs, ignore_ds, delete_emptydir, action, reason_word", [
    ({"owner": "ReplicaSet"}, True, False, PodAction.EVICT, "ReplicaSet"),
    ({"owner": "DaemonSet"}, True, False, PodAction.SKIP, "DaemonSet"),
    ({"owner": "DaemonSet"}, False, False, PodAction.REFUSE, "ignore_daemonsets"),
    ({"owner": "DaemonSet", "phase": "Succeeded"}, False, False, PodAction.EVICT, "finished"),  # finished: always fine
    ({"owner": None, "mirror": True}, True, True, PodAction.SKIP, "mirror"),
    ({"emptydir": True}, True, False, PodAction.REFUSE, "delete_emptydir_data"),
    ({"emptydir": True}, True, True, PodAction.EVICT, "ReplicaSet"),
    ({"emptydir": True, "phase": "Failed"}, True, False, PodAction.EVICT, "finished"),
    ({"owner": None}, True, True, PodAction.REFUSE, "without a controller"),
    ({"owner": None, "phase": "Succeeded"}, True, True, PodAction.EVICT, "finished"),
    ({"launcher_of": "vm-a"}, True, False, PodAction.EVICT, "evacuate"),
])
def test_pods_are_treated_as_kubectl_drain_treats_them(kwargs, ignore_ds, delete_emptydir, action, reason_word):
    decision = decide_pod(pod("p", **kwargs), ignore_daemonsets=ignore_ds, delete_emptydir_data=delete_emptydir)
    assert decision.action is action
    assert reason_word in decision.reason


def test_emptydir_eviction_carries_a_warning_and_launcher_pods_name_their_vmi():
    scratch = decide_pod(pod("cache", emptydir=True), ignore_daemonsets=True, delete_emptydir_data=True)
    launcher = decide_pod(pod("virt-launcher-vm-a-x", ns="banking", launcher_of="vm-a"), ignore_daemonsets=True,
                          delete_emptydir_data=False)
    assert scratch.warning and "emptyDir" in scratch.warning and scratch.vmi is None
    assert launcher.vmi == VMRef(namespace="banking", name="vm-a") and launcher.warning is None
    assert launcher.pod == PodRef(namespace="banking", name="virt-launcher-vm-a-x")
    # drain/plan.json names both as text
    assert (launcher.evidence()["pod"], launcher.evidence()["vmi"]) == ("banking/virt-launcher-vm-a-x", "banking/vm-a")


def test_only_pods_on_the_node_are_planned_in_a_stable_order():
    pods = [pod("b"), pod("a"), pod("elsewhere", node="node-2")]
    assert [d.pod for d in pods_to_drain(pods, NODE, ignore_daemonsets=True, delete_emptydir_data=False)] == \
        [PodRef(namespace="apps", name="a"), PodRef(namespace="apps", name="b")]


def pdb(name, *, ns="apps", allowed=0, match_labels=None, expressions=None):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": match_labels or {}, "matchExpressions": expressions or []}},
            "status": {"disruptionsAllowed": allowed}}


@pytest.mark.parametrize("budgets, blocked", [
    ([pdb("web", match_labels={"app": "web"})], ["web"]),
    ([pdb("web", match_labels={"app": "web"}, allowed=1)], []),
    ([pdb("web", match_labels={"app": "db"})], []),
    ([pdb("web", ns="other", match_labels={"app": "web"})], []),
    ([pdb("all")], ["all"]),  # an empty selector covers the namespace
    ([pdb("in", expressions=[{"key": "tier", "operator": "In", "values": ["front"]}])], ["in"]),
    ([pdb("notin", expressions=[{"key": "tier", "operator": "NotIn", "values": ["front"]}])], []),
    ([pdb("exists", expressions=[{"key": "tier", "operator": "Exists"}])], ["exists"]),
    ([pdb("absent", expressions=[{"key": "tier", "operator": "DoesNotExist"}])], []),
])
def test_disruption_budgets_that_block_a_pod(budgets, blocked):
    assert blocking_budgets(pod("w", labels={"app": "web", "tier": "front"}), budgets) == blocked


def vmi(name="vm-a", ns="apps", *, strategy="LiveMigrate", migratable=True, node=NODE, evacuation=None,
        migration_uid=None, memory="256Mi"):
    status = {"phase": "Running", "nodeName": node,
              "conditions": [{"type": "LiveMigratable", "status": "True" if migratable else "False",
                              **({} if migratable else {"reason": "DisksNotLiveMigratable", "message": "PVC not RWX"})}]}
    if evacuation:
        status["evacuationNodeName"] = evacuation
    if migration_uid:
        status["migrationState"] = {"migrationUid": migration_uid, "sourceNode": NODE, "targetNode": node,
                                    "completed": True, "failed": False, "startTimestamp": "t0", "endTimestamp": "t1",
                                    "targetNodeDomainReadyTimestamp": "t1"}
    spec = {"domain": {"memory": {"guest": memory}}}
    if strategy:
        spec["evictionStrategy"] = strategy
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec, "status": status}


@pytest.mark.parametrize("strategy, cluster, migratable, fate", [
    ("LiveMigrate", None, True, VMIFate.MIGRATES),
    ("LiveMigrate", None, False, VMIFate.BLOCKS),
    ("LiveMigrateIfPossible", None, True, VMIFate.MIGRATES),
    ("LiveMigrateIfPossible", None, False, VMIFate.SHUTS_DOWN),
    ("None", "LiveMigrate", True, VMIFate.SHUTS_DOWN),  # the VMI's own strategy wins
    (None, "LiveMigrate", True, VMIFate.MIGRATES),  # unset: the cluster's
    (None, None, True, VMIFate.SHUTS_DOWN),  # KubeVirt's default is None
    ("External", None, True, VMIFate.EXTERNAL),
])
def test_what_an_eviction_does_to_a_vmi(strategy, cluster, migratable, fate):
    cr = {"spec": {"configuration": {"evictionStrategy": cluster}}} if cluster else None
    assert vmi_fate(vmi(strategy=strategy, migratable=migratable), cr)[0] is fate


@pytest.mark.parametrize("fate, allowed, status", [
    (VMIFate.MIGRATES, False, CheckStatus.PASS),
    (VMIFate.BLOCKS, True, CheckStatus.FAIL),  # no flag can make a refused eviction pass
    (VMIFate.SHUTS_DOWN, False, CheckStatus.FAIL),
    (VMIFate.SHUTS_DOWN, True, CheckStatus.WARN),
    (VMIFate.EXTERNAL, False, CheckStatus.FAIL),
    (VMIFate.EXTERNAL, True, CheckStatus.WARN),
])
def test_non_migratable_vmis_refuse_the_drill_unless_allowed(fate, allowed, status):
    check = fate_check(VM_A, fate, "why", allowed)
    assert check.status is status and check.subject == "vmi apps/vm-a"
    if status is CheckStatus.WARN:
        assert "shut down" in check.message or "controller" in check.message


KUBEVIRT_WEBHOOK = 'admission webhook "virt-launcher-eviction-interceptor.kubevirt.io" denied the request: '


@pytest.mark.parametrize("status, message, answer", [
    (201, "", EvictionAnswer.EVICTED),
    (200, "", EvictionAnswer.EVICTED),
    (404, "pods \"x\" not found", EvictionAnswer.GONE),
    (429, KUBEVIRT_WEBHOOK + 'Eviction triggered evacuation of VMI "apps/vm-a"', EvictionAnswer.EVACUATION_TRIGGERED),
    (429, KUBEVIRT_WEBHOOK + 'Evacuation in progress: Eviction triggered evacuation of VMI "apps/vm-a"',
     EvictionAnswer.EVACUATION_IN_PROGRESS),
    (429, KUBEVIRT_WEBHOOK + "VMI apps/vm-a is configured with an eviction strategy but is not live-migratable",
     EvictionAnswer.NOT_MIGRATABLE),
    (429, "Cannot evict pod as it would violate the pod's disruption budget.", EvictionAnswer.BUDGET_BLOCKED),
    (429, "too many requests", EvictionAnswer.RETRY),
    (500, KUBEVIRT_WEBHOOK + "Eviction triggered evacuation", EvictionAnswer.RETRY),  # only a 429 means evacuation
    (503, "", EvictionAnswer.RETRY),
    (None, "connection reset", EvictionAnswer.RETRY),
    (403, "forbidden", EvictionAnswer.REJECTED),
    (400, "bad request", EvictionAnswer.REJECTED),
])
def test_eviction_answers_429_is_progress_when_kubevirt_says_so(status, message, answer):
    assert classify_eviction(status, message) is answer


@pytest.mark.parametrize("answer, retry_after, expected", [
    (EvictionAnswer.EVACUATION_TRIGGERED, None, 105.0),
    (EvictionAnswer.BUDGET_BLOCKED, None, 105.0),
    (EvictionAnswer.RETRY, None, 105.0),
    (EvictionAnswer.RETRY, 2.0, 102.0),  # the server's hint wins
    (EvictionAnswer.RETRY, 3600.0, 130.0),  # within reason
    (EvictionAnswer.REJECTED, None, None),
    (EvictionAnswer.NOT_MIGRATABLE, None, None),
])
def test_when_a_pod_is_evicted_again(answer, retry_after, expected):
    assert next_eviction_at(answer, 100.0, SETTINGS, retry_after) == expected


@pytest.mark.parametrize("the_vmi, present, finished, expected", [
    (vmi(), True, False, True),  # not yet evacuating
    (vmi(evacuation=NODE), True, False, False),  # KubeVirt is on it
    (vmi(node="node-2"), True, False, False),  # already moved: KubeVirt deletes the old pod
    (vmi(node="node-2"), True, True, True),  # the finished source pod is deleted by evicting it
    (vmi(), False, False, False),  # pod gone
])
def test_a_launcher_pod_needs_an_eviction_only_while_its_vmi_is_not_evacuating(the_vmi, present, finished, expected):
    decision = decide_pod(pod("virt-launcher-vm-a-x", launcher_of="vm-a", phase="Succeeded" if finished else "Running"),
                          ignore_daemonsets=True, delete_emptydir_data=False)
    assert needs_eviction(decision, present, the_vmi, NODE) is expected


@pytest.mark.parametrize("migrations, expected", [
    (None, (5, 2)),  # KubeVirt's defaults
    ({"parallelMigrationsPerCluster": 10, "parallelOutboundMigrationsPerNode": 4}, (10, 4)),
    ({"parallelOutboundMigrationsPerNode": 1}, (5, 1)),
])
def test_parallelism_from_the_kubevirt_cr(migrations, expected):
    cr = {"spec": {"configuration": {"migrations": migrations}}} if migrations else None
    assert migration_parallelism(cr) == expected


@pytest.mark.parametrize("per_cluster, per_node, lanes", [(5, 2, 2), (1, 2, 1), (5, 5, 5), (0, 0, 1)])
def test_lanes_are_the_tighter_limit(per_cluster, per_node, lanes):
    assert drain_lanes(per_cluster, per_node) == lanes


@pytest.mark.parametrize("durations, lanes, makespan", [
    ([], 2, 0.0),
    ([4.0], 2, 4.0),
    ([4.0, 4.0, 2.0, 2.0, 2.0], 2, 8.0),  # 4|4, then 2+2 | 2 -> 8
    ([1.0] * 100, 2, 50.0),
    ([1.0] * 100, 5, 20.0),
    ([5.0, 1.0, 1.0, 1.0], 2, 5.0),
])
def test_list_schedule_makespan(durations, lanes, makespan):
    assert list_schedule_makespan_s(durations, lanes) == pytest.approx(makespan)


@pytest.mark.parametrize("deadlines, lanes, graces, expected", [
    ([300.0] * 4, 2, [], 4 * 300 / 2 + 300 + 10),
    ([300.0] * 4, 1, [], 4 * 300 + 300 + 10),  # half the lanes: twice the budget
    ([600.0, 300.0], 2, [30.0], 900 / 2 + 600 + 30 + 10),
    ([], 2, [], 10.0),
])
def test_drain_budget_scales_with_memory_and_parallelism(deadlines, lanes, graces, expected):
    assert drain_budget_s(deadlines, lanes, graces, SETTINGS) == pytest.approx(expected)


def vmim(name, phase, *, uid=None, node=NODE, vmi_name="vm-a", created="2026-01-01T00:00:00Z", phases=None):
    return {"metadata": {"name": name, "namespace": "apps", "uid": uid or f"uid-{name}", "creationTimestamp": created,
                         "resourceVersion": "1", "annotations": {"kubevirt.io/evacuationMigration": node}},
            "spec": {"vmiName": vmi_name},
            "status": {"phase": phase, "phaseTransitionTimestamps": [
                {"phase": p, "phaseTransitionTimestamp": "t"} for p in (phases or ["Pending", "Running", phase])]}}


@pytest.mark.parametrize("the_vmi, migrations, left", [
    (vmi(node="node-2", migration_uid="uid-m1"), [vmim("m1", "Succeeded")], True),
    (vmi(node="node-2", migration_uid="uid-m1", evacuation=NODE), [vmim("m1", "Succeeded")], False),
    (vmi(migration_uid="uid-m1"), [vmim("m1", "Running")], False),  # still on the node
    (vmi(node="node-2", migration_uid="uid-other"), [vmim("m1", "Succeeded")], False),  # moved by something else
    (None, [], False),
])
def test_a_vmi_has_left_when_moved_cleared_and_its_migration_succeeded(the_vmi, migrations, left):
    assert vmi_left_node(the_vmi, NODE, migrations) is left


def _failed_state(v):
    v["status"]["migrationState"]["failed"] = True
    return v


@pytest.mark.parametrize("the_vmi, moved", [
    (vmi(node="node-2", migration_uid="m1"), True),
    (vmi(node="node-2", migration_uid="m1", evacuation=NODE), False),  # KubeVirt has not cleared it yet
    (_failed_state(vmi(node="node-2", migration_uid="m1")), False),
    (vmi(node="node-2"), False),  # no migration record: not moved by a migration
    (vmi(migration_uid="m1"), False),
    (None, False),
])
def test_the_loop_sees_a_vmi_moved_off_from_the_vmi_alone(the_vmi, moved):
    assert vmi_moved_off(the_vmi, NODE) is moved
    assert vmi_done(VMIFate.MIGRATES, the_vmi, NODE, 0) is moved


@pytest.mark.parametrize("pods_left, done", [(0, True), (1, False)])
def test_a_vmi_that_shuts_down_is_done_when_its_pods_are_gone(pods_left, done):
    assert vmi_done(VMIFate.SHUTS_DOWN, vmi(strategy="None"), NODE, pods_left) is done


def test_evacuations_of_a_vmi_from_the_node_oldest_first():
    found = evacuations_of([vmim("b", "Succeeded", created="2026-01-01T00:00:02Z"),
                            vmim("a", "Failed", created="2026-01-01T00:00:01Z"),
                            vmim("c", "Succeeded", node="node-2"), vmim("d", "Succeeded", vmi_name="vm-b")],
                           "apps", "vm-a", NODE)
    assert [m["metadata"]["name"] for m in found] == ["a", "b"]


def test_vm_verdict_passes_a_clean_evacuation_and_keeps_the_probe_failures():
    moved = vmi(node="node-2", migration_uid="uid-m2")
    attempts = [vmim("m1", "Failed", created="t1"), vmim("m2", "Succeeded", created="t2")]
    slo_fail = CheckResult(name="slo.max-downtime", status=CheckStatus.FAIL, subject="probe p", message="gap 900 ms")
    clean = vm_verdict(VM_A, core=False, fate=VMIFate.MIGRATES, node=NODE, vmi=moved, evacuations=attempts[1:],
                       launcher_pods_left=0, probe_checks=[], observed_downtime_ms=None, stop_reason=None)
    retried = vm_verdict(VM_A, core=True, fate=VMIFate.MIGRATES, node=NODE, vmi=moved, evacuations=attempts,
                         launcher_pods_left=0, probe_checks=[slo_fail], observed_downtime_ms=900.0, stop_reason=None)
    assert clean.status is CheckStatus.PASS and clean.migration == "m2" and clean.final_node == "node-2"
    assert clean.model_dump(mode="json")["vm"] == "apps/vm-a"  # as drain/verdicts.json names it
    assert {c.name for c in clean.checks} >= {"drain.vm-off-node", "migration-succeeded", "vm-on-target"}
    assert retried.status is CheckStatus.FAIL and retried.attempts == 2
    assert {c.name: c.status for c in retried.checks}["drain.evacuation-retries"] is CheckStatus.WARN
    assert "gap 900 ms" in retried.as_check().message


def test_vm_verdict_fails_a_vm_left_behind_with_the_stop_reason():
    stuck = vm_verdict(VM_A, core=False, fate=VMIFate.MIGRATES, node=NODE, vmi=vmi(evacuation=NODE),
                       evacuations=[vmim("m1", "Running")], launcher_pods_left=1, probe_checks=[],
                       observed_downtime_ms=None, stop_reason="deadline: 4/5 VMIs off the node")
    assert stuck.status is CheckStatus.FAIL
    assert "deadline" in stuck.as_check().message and stuck.as_check().subject == "vmi apps/vm-a"


@pytest.mark.parametrize("pods_left, status", [(0, CheckStatus.WARN), (1, CheckStatus.FAIL)])
def test_vm_verdict_for_a_shutdown_allowed_by_the_spec(pods_left, status):
    verdict = vm_verdict(VM_A, core=False, fate=VMIFate.SHUTS_DOWN, node=NODE, vmi=vmi(strategy="None"),
                         evacuations=[], launcher_pods_left=pods_left, probe_checks=[], observed_downtime_ms=None,
                         stop_reason=None)
    assert verdict.status is status


def node(name, *, unschedulable=False, ready=True):
    return {"metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true"}},
            "spec": {"unschedulable": unschedulable} if unschedulable else {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def observation(*, nodes=None, pods=None, vmis=None, pdbs=None, cr=None):
    vmis = vmis if vmis is not None else [vmi("core", ns="banking"), vmi("vm-a")]
    return DrainObservation(
        node=NODE, nodes=nodes or [node(NODE), node("node-2"), node("node-3")],
        pods=pods if pods is not None else [pod(f"virt-launcher-{v['metadata']['name']}", ns=v["metadata"]["namespace"],
                                                launcher_of=v["metadata"]["name"]) for v in vmis],
        vmis=vmis, kubevirt_cr=cr, pdbs=pdbs or [],
        deadlines_s={vmi_ref(v): 300.0 for v in vmis})


def judge(obs, core=("banking/core",), allow=False, emptydir=False):
    return {(c.name, c.subject): c for c in drain_preflight_checks(
        obs, [VMRef.parse(vm) for vm in core], ignore_daemonsets=True, delete_emptydir_data=emptydir,
        allow_non_migratable=allow, settings=SETTINGS)}


def failed(checks):
    return sorted(name for (name, _), c in checks.items() if c.status is CheckStatus.FAIL)


def test_preflight_of_a_healthy_node_passes_with_its_budget():
    checks = judge(observation())
    assert failed(checks) == []
    budget = checks[("drain.budget", "node node-1")]
    assert budget.evidence["lanes"] == 2 and budget.evidence["budget_s"] == pytest.approx(600 / 2 + 300 + 10)
    assert budget.evidence["deadlines_s"] == {"banking/core": 300.0, "apps/vm-a": 300.0}
    assert checks[("drain.core-vms-on-node", "node node-1")].evidence == {"core_vms": ["banking/core"],
                                                                         "on_node": ["apps/vm-a", "banking/core"]}


@pytest.mark.parametrize("obs_kwargs, judge_kwargs, failing", [
    ({"nodes": [node(NODE, unschedulable=True), node("node-2")]}, {}, ["drain.node"]),
    ({"nodes": [node(NODE), node("node-2", unschedulable=True), node("node-3", ready=False)]}, {},
     ["drain.destinations"]),
    ({"vmis": [vmi("core", ns="banking"), vmi("vm-a", migratable=False)]}, {}, ["drain.vmi-migratable"]),
    ({"vmis": [vmi("core", ns="banking"), vmi("vm-a", strategy="None")]}, {}, ["drain.vmi-migratable"]),
    ({"vmis": [vmi("core", ns="banking"), vmi("vm-a", strategy="None")]}, {"allow": True}, []),
    ({"vmis": [vmi("core", ns="banking"), vmi("vm-a", migratable=False)]}, {"allow": True}, ["drain.vmi-migratable"]),
    ({}, {"core": ("banking/core", "banking/elsewhere")}, ["drain.core-vms-on-node"]),
    ({"pods": [pod("cache", emptydir=True)]}, {}, ["drain.pods"]),
    ({"pods": [pod("cache", emptydir=True)]}, {"emptydir": True}, []),
])
def test_preflight_refuses_what_a_drain_cannot_do(obs_kwargs, judge_kwargs, failing):
    assert failed(judge(observation(**obs_kwargs), **judge_kwargs)) == failing


def test_preflight_warns_of_disruption_budgets_and_drops_shutdowns_from_the_budget():
    vmis = [vmi("core", ns="banking"), vmi("vm-a", strategy="None")]
    obs = observation(vmis=vmis, pdbs=[pdb("all", ns="banking")])
    checks = judge(obs, allow=True)
    assert checks[("drain.disruption-budgets", "node node-1")].status is CheckStatus.WARN
    assert checks[("drain.vmi-migratable", "vmi apps/vm-a")].status is CheckStatus.WARN
    budget, lanes, _ = observed_budget(obs, SETTINGS)
    assert lanes == 2 and budget == pytest.approx(300 / 2 + 300 + 10)  # only the migrating VMI counts


def _verdict(status):
    return vm_verdict(VM_A, core=False, fate=VMIFate.MIGRATES, node=NODE,
                      vmi=vmi(node="node-2", migration_uid="uid-m1") if status == "pass" else vmi(evacuation=NODE),
                      evacuations=[vmim("m1", "Succeeded" if status == "pass" else "Running")], launcher_pods_left=0,
                      probe_checks=[], observed_downtime_ms=None, stop_reason=None)


@pytest.mark.parametrize("pods_left, stop_reason, verdicts, status, words", [
    ([], None, ["pass", "pass"], CheckStatus.PASS, ["drained in 12.0 s", "'pass': 2"]),
    ([PodRef(namespace="apps", name="virt-launcher-vm-a-x")], None, ["pass", "fail"], CheckStatus.FAIL,
     ["not drained", "pods left", "['apps/virt-launcher-vm-a-x']"]),
    ([], "probe breach: gap 900 ms", ["pass"], CheckStatus.FAIL, ["probe breach"]),
])
def test_the_drain_as_a_whole(pods_left, stop_reason, verdicts, status, words):
    check = drain_summary_check(NODE, [_verdict(v) for v in verdicts], pods_left, 12.0, 600.0, stop_reason)
    assert check.name == "drain.completed" and check.status is status
    assert all(w in check.message for w in words), check.message
    assert check.evidence["wall_s"] == 12.0 and check.evidence["budget_s"] == 600.0
