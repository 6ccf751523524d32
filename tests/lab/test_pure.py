"""Table tests of the lab's pure functions: the pre-copy model, selectors, patches, controller decisions."""

from __future__ import annotations

import pytest

from livedrill_lab.kube import patch, policy, selectors
from livedrill_lab.kube.precopy import PrecopyInputs, completion_budget_s, plan_precopy
from livedrill.quantity import parse_quantity

MI = 1024**2
GI = 1024**3


def _inputs(**overrides):
    base = dict(memory_bytes=256 * MI, dirty_rate_bytes_per_s=6 * MI, bandwidth_bytes_per_s=64 * MI,
                max_downtime_ms=50, progress_timeout_s=150, completion_timeout_per_gib_s=800)
    return PrecopyInputs(**{**base, **overrides})


@pytest.mark.parametrize(
    "overrides, converges, iterations, downtime_ms, total_s, reason_part",
    [
        # The lab's core VM: 4 s first pass, 0.375 s second, then 2.25 MiB at 64 MiB/s = 35.16 ms paused.
        ({}, True, 2, 35.15625, 4.375 + 0.03515625, None),
        # An idle guest: everything moves in one pass and nothing is left to pause for.
        ({"dirty_rate_bytes_per_s": 0}, True, 1, 0.0, 4.0, None),
        # A tight downtime budget takes more iterations and a shorter pause.
        ({"max_downtime_ms": 5}, True, 3, 35.15625 * 6 / 64, 4.375 + 0.03515625 + 35.15625 * 6 / 64 / 1000, None),
        # Dirtying as fast as the link copies never converges: Failed at first pass + progress timeout.
        ({"dirty_rate_bytes_per_s": 64 * MI}, False, 1, 0.0, 4.0 + 150, "no progress"),
        ({"dirty_rate_bytes_per_s": 100 * MI, "progress_timeout_s": 1}, False, 1, 0.0, 5.0, "no progress"),
        # 8 GiB at 1 MiB/s: the first pass alone (8192 s) exceeds the budget of 800 s x 8 GiB = 6400 s.
        ({"memory_bytes": 8 * GI, "bandwidth_bytes_per_s": 1 * MI, "dirty_rate_bytes_per_s": 0}, False, 1, 0.0,
         6400.0, "completion budget"),
        # The budget also bounds a non-converging migration when it is shorter than the progress timeout.
        ({"dirty_rate_bytes_per_s": 80 * MI, "completion_timeout_per_gib_s": 2, "progress_timeout_s": 150},
         False, 1, 0.0, 4.0, "completion budget"),
    ],
)
def test_precopy_plan(overrides, converges, iterations, downtime_ms, total_s, reason_part):
    plan = plan_precopy(_inputs(**overrides))
    assert plan.converges is converges
    assert plan.iterations == iterations
    assert plan.downtime_ms == pytest.approx(downtime_ms)
    assert plan.total_s == pytest.approx(total_s)
    if reason_part:
        assert reason_part in plan.failure_reason
        assert plan.failure_at_s == pytest.approx(total_s)
    else:
        assert plan.failure_reason is None


@pytest.mark.parametrize("memory, per_gib, budget", [(256 * MI, 800, 1600), (2 * GI, 150, 300), (8 * GI, 150, 1200)])
def test_completion_budget_uses_at_least_two_gib(memory, per_gib, budget):
    assert completion_budget_s(memory, per_gib) == budget


@pytest.mark.parametrize("text, value", [("64Mi", 64 * MI), ("1Gi", GI), ("0", 0), ("500m", 0.5), ("2k", 2000),
                                         (1024, 1024)])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


LABELS = {"app": "banking-core", "tier": "core"}


@pytest.mark.parametrize(
    "selector, matches",
    [
        ("", True), ("app=banking-core", True), ("app==banking-core", True), ("app!=banking-core", False),
        ("app=other", False), ("tier in (core, edge)", True), ("tier notin (core)", False), ("tier", True),
        ("!tier", False), ("zone", False), ("!zone", True), ("app=banking-core,tier in (edge)", False),
        ("zone!=a", True), ("zone notin (a)", True),
    ],
)
def test_label_selector(selector, matches):
    matcher = selectors.object_matcher(selectors.parse_label_selector(selector), [])
    assert matcher({"metadata": {"labels": LABELS}}) is matches


def test_field_selector_and_unsupported_field():
    fields = frozenset({"metadata.name", "spec.nodeName", "status.phase"})
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}}
    match = lambda text: selectors.object_matcher([], selectors.parse_field_selector(text, fields))(pod)  # noqa: E731
    assert match("spec.nodeName=node-1,status.phase=Running")
    assert not match("spec.nodeName!=node-1")
    assert match("metadata.name==p")
    with pytest.raises(selectors.SelectorError, match="not supported"):
        selectors.parse_field_selector("spec.hostname=x", fields)


@pytest.mark.parametrize(
    "target, document, expected",
    [
        ({"spec": {"a": 1, "b": 2}}, {"spec": {"a": None, "c": 3}}, {"spec": {"b": 2, "c": 3}}),
        ({"spec": {"unschedulable": True}}, {"spec": {"unschedulable": None}}, {"spec": {}}),
        ({"l": [1, 2]}, {"l": [3]}, {"l": [3]}),
    ],
)
def test_merge_patch(target, document, expected):
    assert patch.merge_patch(target, document) == expected


@pytest.mark.parametrize(
    "operations, expected",
    [
        ([{"op": "add", "path": "/metadata/labels/x", "value": "1"}], {"metadata": {"labels": {"a": "b", "x": "1"}}, "l": [1, 2]}),
        ([{"op": "remove", "path": "/metadata/labels/a"}], {"metadata": {"labels": {}}, "l": [1, 2]}),
        ([{"op": "replace", "path": "/l/0", "value": 9}], {"metadata": {"labels": {"a": "b"}}, "l": [9, 2]}),
        ([{"op": "add", "path": "/l/-", "value": 3}], {"metadata": {"labels": {"a": "b"}}, "l": [1, 2, 3]}),
        ([{"op": "move", "from": "/l", "path": "/m"}], {"metadata": {"labels": {"a": "b"}}, "m": [1, 2]}),
        ([{"op": "test", "path": "/l/1", "value": 2}, {"op": "copy", "from": "/l/1", "path": "/n"}],
         {"metadata": {"labels": {"a": "b"}}, "l": [1, 2], "n": 2}),
    ],
)
def test_json_patch(operations, expected):
    assert patch.json_patch({"metadata": {"labels": {"a": "b"}}, "l": [1, 2]}, operations) == expected


@pytest.mark.parametrize(
    "operations, error",
    [
        ([{"op": "test", "path": "/l/0", "value": 5}], patch.PatchTestFailed),
        ([{"op": "remove", "path": "/nope"}], patch.PatchError),
        ([{"op": "replace", "path": "/l/7", "value": 1}], patch.PatchError),
        ({"op": "add"}, patch.PatchError),
    ],
)
def test_json_patch_errors(operations, error):
    with pytest.raises(error):
        patch.json_patch({"l": [1]}, operations)


def _node(name, unschedulable=False, ready=True, labels=None):
    return {"metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true", "kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _launcher(node, phase="Running"):
    return {"spec": {"nodeName": node}, "status": {"phase": phase}}


VMI_ON_1 = {"spec": {}, "status": {"nodeName": "node-1"}}


@pytest.mark.parametrize(
    "nodes, pods, vmi, added, expected",
    [
        ([_node("node-1"), _node("node-2"), _node("node-3")], [], VMI_ON_1, None, "node-2"),
        ([_node("node-1"), _node("node-2"), _node("node-3")], [_launcher("node-2")], VMI_ON_1, None, "node-3"),
        ([_node("node-1"), _node("node-2"), _node("node-3")], [_launcher("node-2", "Succeeded")], VMI_ON_1, None, "node-2"),
        ([_node("node-1"), _node("node-2", unschedulable=True), _node("node-3")], [], VMI_ON_1, None, "node-3"),
        ([_node("node-1"), _node("node-2", ready=False)], [], VMI_ON_1, None, None),
        ([_node("node-1"), _node("node-2"), _node("node-3")], [], VMI_ON_1, {"kubernetes.io/hostname": "node-3"}, "node-3"),
        ([_node("node-1"), _node("node-2")], [], VMI_ON_1, {"kubernetes.io/hostname": "node-9"}, None),
        ([_node("node-1"), _node("node-2")], [], VMI_ON_1, {"kubernetes.io/hostname": "node-1"}, None),
        # The VMI's own nodeSelector wins over the migration's addedNodeSelector on the same key.
        ([_node("node-1"), _node("node-2", labels={"zone": "a"}), _node("node-3", labels={"zone": "b"})], [],
         {"spec": {"nodeSelector": {"zone": "a"}}, "status": {"nodeName": "node-1"}}, {"zone": "b"}, "node-2"),
        ([_node("node-1"), {**_node("node-2"), "metadata": {"name": "node-2", "labels": {}}}], [], VMI_ON_1, None, None),
    ],
)
def test_pick_target_node(nodes, pods, vmi, added, expected):
    assert policy.pick_target_node(nodes, pods, vmi, added) == expected


SETTINGS = policy.effective_settings({"spec": {"configuration": {"migrations": {
    "parallelMigrationsPerCluster": 3, "parallelOutboundMigrationsPerNode": 1}}}}, None)


@pytest.mark.parametrize(
    "source, running, allowed",
    [("node-1", [], True), ("node-1", ["node-1"], False), ("node-2", ["node-1"], True),
     ("node-4", ["node-1", "node-2", "node-3"], False)],
)
def test_may_start(source, running, allowed):
    assert policy.may_start(source, running, SETTINGS) is allowed


def test_effective_settings_defaults_seed_and_policy():
    defaults = policy.effective_settings(None, None)
    assert (defaults.bandwidth_bytes_per_s, defaults.completion_timeout_per_gib_s, defaults.max_downtime_ms) == (0, 150, 900)
    seed = {"spec": {"configuration": {"migrations": {"bandwidthPerMigration": "64Mi", "completionTimeoutPerGiB": 800}}}}
    tight = {"metadata": {"name": "tight"}, "spec": {"bandwidthPerMigration": "1Gi",
                                                    "selectors": {"virtualMachineInstanceSelector": {"tier": "core"}}}}
    broad = {"metadata": {"name": "broad"}, "spec": {"bandwidthPerMigration": "8Mi", "selectors": {}}}
    chosen = policy.matching_policy([broad, tight], {"tier": "core"}, {})
    assert chosen is tight
    merged = policy.effective_settings(seed, chosen)
    assert merged.bandwidth_bytes_per_s == GI and merged.completion_timeout_per_gib_s == 800
    assert merged.policy_name == "tight"
    assert policy.matching_policy([tight], {"tier": "edge"}, {}) is None


def test_finished_to_collect_keeps_the_newest():
    def vmim(name, rv, phase, finalizers=()):
        return {"metadata": {"name": name, "resourceVersion": str(rv), "finalizers": list(finalizers)},
                "status": {"phase": phase}}

    items = [vmim(f"m{i}", i, "Succeeded") for i in range(7)] + [vmim("live", 99, "Running"),
                                                                  vmim("closing", 100, "Failed", ["f"])]
    assert policy.finished_to_collect(items, keep=5) == ["m0", "m1"]


@pytest.mark.parametrize(
    "vmi_strategy, cluster_strategy, expected",
    [("LiveMigrate", None, "LiveMigrate"), (None, "LiveMigrate", "LiveMigrate"), ("None", "LiveMigrate", "None"),
     (None, None, "None")],
)
def test_eviction_strategy_vmi_wins(vmi_strategy, cluster_strategy, expected):
    vmi = {"spec": {"evictionStrategy": vmi_strategy} if vmi_strategy else {}}
    cr = {"spec": {"configuration": {"evictionStrategy": cluster_strategy}}} if cluster_strategy else None
    assert policy.eviction_strategy(vmi, cr) == expected
