"""The lab's Kubernetes API, exercised with the real kubernetes client and the real kubectl."""

from __future__ import annotations

import json
import ssl
import threading
import time

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from livedrill_lab.manager import running_lab

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One lab for this module: these tests leave the objects they judge as they found them."""
    with running_lab(tmp_path_factory.mktemp("api")) as info:
        yield info

KV = ("kubevirt.io", "v1")
JSON_PATCH = "application/json-patch+json"


def test_kubectl_discovery_and_get(kubectl):
    resources = kubectl("api-resources").stdout
    for plural, short in [("virtualmachineinstances", "vmi,vmis"), ("virtualmachineinstancemigrations", "vmim,vmims"),
                          ("virtualmachines", "vm,vms"), ("kubevirts", "kv,kvs")]:
        assert any(line.split()[:2] == [plural, short] for line in resources.splitlines()), resources
    assert "migrationpolicies" in resources
    listing = kubectl("get", "vmi,vmim", "-A").stdout
    assert "virtualmachineinstance.kubevirt.io/banking-core-vm" in listing
    assert "node-1" in listing and "Running" in listing
    nodes = kubectl("get", "nodes").stdout.splitlines()
    assert [line.split()[:2] for line in nodes[1:]] == [["node-1", "Ready"], ["node-2", "Ready"], ["node-3", "Ready"]]
    pod = json.loads(kubectl("get", "pods", "-n", "banking", "-o", "json").stdout)["items"][0]
    assert pod["metadata"]["name"].startswith("virt-launcher-banking-core-vm-")
    assert pod["spec"]["nodeName"] == "node-1"


def test_kubectl_cordon_uncordon(kubectl, core):
    assert "cordoned" in kubectl("cordon", "node-2").stdout
    assert core.read_node("node-2").spec.unschedulable is True
    assert "Ready,SchedulingDisabled" in kubectl("get", "node", "node-2").stdout
    kubectl("uncordon", "node-2")
    assert not core.read_node("node-2").spec.unschedulable


def test_kubectl_create_runs_server_side_validation(kubectl, custom):
    manifest = ("apiVersion: migrations.kubevirt.io/v1alpha1\nkind: MigrationPolicy\nmetadata: {name: core-fast}\n"
                "spec: {bandwidthPerMigration: 128Mi, selectors: {virtualMachineInstanceSelector: {tier: core}}}\n")
    kubectl("create", "-f", "-", input_text=manifest)
    policy = custom.get_cluster_custom_object("migrations.kubevirt.io", "v1alpha1", "migrationpolicies", "core-fast")
    assert policy["spec"]["bandwidthPerMigration"] == "128Mi"


def test_unauthenticated_requests_are_refused(lab):
    response = httpx.get(lab.api_url + "/api/v1/nodes", verify=ssl.create_default_context(cafile=str(lab.ca_file)),
                         timeout=5)
    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"


def test_crud_generate_name_conflicts_and_errors(core):
    body = client.V1Pod(metadata=client.V1ObjectMeta(generate_name="probe-", labels={"app": "probe"}),
                        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")],
                                              node_name="node-2"))
    created = core.create_namespaced_pod("banking", body)
    name = created.metadata.name
    assert name.startswith("probe-") and len(name) == len("probe-") + 5
    assert created.metadata.uid and created.metadata.creation_timestamp and created.metadata.resource_version
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_pod("banking", client.V1Pod(metadata=client.V1ObjectMeta(name=name),
                                                           spec=body.spec))
    assert exists.value.status == 409 and json.loads(exists.value.body)["reason"] == "AlreadyExists"

    stale = core.read_namespaced_pod(name, "banking")
    core.patch_namespaced_pod(name, "banking", {"metadata": {"labels": {"rev": "2"}}})
    stale.metadata.labels["rev"] = "stale"
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_pod(name, "banking", stale)
    assert conflict.value.status == 409 and json.loads(conflict.value.body)["reason"] == "Conflict"

    fresh = core.read_namespaced_pod(name, "banking")
    fresh.metadata.labels["rev"] = "3"
    replaced = core.replace_namespaced_pod(name, "banking", fresh)
    assert replaced.metadata.labels["rev"] == "3"
    assert int(replaced.metadata.resource_version) > int(fresh.metadata.resource_version)

    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("nope", "banking")
    assert missing.value.status == 404 and json.loads(missing.value.body)["reason"] == "NotFound"
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_pod("banking", client.V1Pod(metadata=client.V1ObjectMeta(name="Bad_Name"),
                                                           spec=body.spec))
    assert invalid.value.status == 422
    core.delete_namespaced_pod(name, "banking")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod(name, "banking")
    assert gone.value.status == 404


def test_patch_flavours_and_generation(custom):
    group, version = KV
    vm = custom.get_namespaced_custom_object(group, version, "banking", "virtualmachines", "banking-core-vm")
    assert vm["metadata"]["generation"] == 1
    merged = custom.patch_namespaced_custom_object(group, version, "banking", "virtualmachines", "banking-core-vm",
                                                   {"metadata": {"labels": {"drill": "q3"}}})
    assert merged["metadata"]["labels"]["drill"] == "q3" and merged["metadata"]["generation"] == 1
    patched = custom.patch_namespaced_custom_object(
        group, version, "banking", "virtualmachines", "banking-core-vm",
        [{"op": "replace", "path": "/spec/runStrategy", "value": "Manual"}], _content_type=JSON_PATCH)
    assert patched["spec"]["runStrategy"] == "Manual" and patched["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as failed_test:
        custom.patch_namespaced_custom_object(group, version, "banking", "virtualmachines", "banking-core-vm",
                                              [{"op": "test", "path": "/spec/runStrategy", "value": "Always"}],
                                              _content_type=JSON_PATCH)
    assert failed_test.value.status == 409


def test_status_subresource_is_separate(custom):
    group, version = KV
    args = (group, version, "banking", "virtualmachines", "banking-core-vm")
    ignored = custom.patch_namespaced_custom_object(*args, {"status": {"printableStatus": "Stopped"}})
    assert ignored["status"]["printableStatus"] == "Running"
    applied = custom.patch_namespaced_custom_object_status(*args, {"status": {"printableStatus": "Stopped"}})
    assert applied["status"]["printableStatus"] == "Stopped"


def test_label_and_field_selectors(core):
    pods = core.list_pod_for_all_namespaces(label_selector="kubevirt.io=virt-launcher,vm.kubevirt.io/name in (banking-core-vm)")
    assert [p.spec.node_name for p in pods.items] == ["node-1"]
    assert core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-2").items == []
    running = core.list_namespaced_pod("banking", field_selector="status.phase=Running,metadata.namespace=banking")
    assert len(running.items) == 1
    nodes = core.list_node(label_selector="kubernetes.io/hostname!=node-1")
    assert [n.metadata.name for n in nodes.items] == ["node-2", "node-3"]
    assert [n.metadata.name for n in core.list_node(field_selector="metadata.name=node-3").items] == ["node-3"]
    with pytest.raises(ApiException) as bad:
        core.list_node(field_selector="spec.podCIDR=x")
    assert bad.value.status == 400


def test_finalizers_delay_deletion(custom):
    group, version = KV
    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "held", "finalizers": ["lab.livedrill.io/test"]}, "spec": {"runStrategy": "Halted"}}
    custom.create_namespaced_custom_object(group, version, "banking", "virtualmachines", body)
    deleting = custom.delete_namespaced_custom_object(group, version, "banking", "virtualmachines", "held")
    assert deleting["metadata"]["deletionTimestamp"]
    still = custom.get_namespaced_custom_object(group, version, "banking", "virtualmachines", "held")
    assert still["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(group, version, "banking", "virtualmachines", "held",
                                          {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(group, version, "banking", "virtualmachines", "held")
    assert gone.value.status == 404


def _collect(stream, count: int, out: list) -> None:
    for event in stream:
        out.append(event)
        if len(out) >= count:
            break


def test_watch_streams_resumes_and_expires(lab, core):
    listed = core.list_node()
    start_rv = listed.metadata.resource_version
    core.patch_node("node-2", {"metadata": {"labels": {"step": "1"}}})
    core.patch_node("node-3", {"metadata": {"labels": {"step": "2"}}})

    # Resume from the list's resourceVersion: exactly the two changes since, in order.
    events = []
    w = watch.Watch()
    _collect(w.stream(core.list_node, resource_version=start_rv, timeout_seconds=10), 2, events)
    w.stop()
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("MODIFIED", "node-2"), ("MODIFIED", "node-3")]
    assert int(events[1]["object"].metadata.resource_version) > int(events[0]["object"].metadata.resource_version)

    # A live watch with a label selector sees objects enter (ADDED) and leave (DELETED) the selection.
    live: list = []
    w2 = watch.Watch()
    resume_from = events[1]["object"].metadata.resource_version
    reader = threading.Thread(target=_collect, args=(w2.stream(core.list_node, label_selector="drained=yes",
                                                               resource_version=resume_from, timeout_seconds=10),
                                                     2, live))
    reader.start()
    core.patch_node("node-1", {"metadata": {"labels": {"unrelated": "x"}}})
    core.patch_node("node-3", {"metadata": {"labels": {"drained": "yes"}}})
    core.patch_node("node-3", {"metadata": {"labels": {"drained": None}}})
    reader.join(timeout=15)
    w2.stop()
    assert [(e["type"], e["object"].metadata.name) for e in live] == [("ADDED", "node-3"), ("DELETED", "node-3")]

    # After a compaction, resuming from an old resourceVersion is 410 Gone, as the real apiserver answers.
    lab.api("POST", "/lab/v1/compact")
    with pytest.raises(ApiException) as expired:
        for _ in watch.Watch().stream(core.list_node, resource_version=start_rv, timeout_seconds=5):
            pass
    assert expired.value.status == 410


def test_injected_api_faults(lab, core):
    lab.add_fault(r"^/api/v1/nodes$", status=500, count=1, method="GET")
    with pytest.raises(ApiException) as injected:
        core.list_node()
    assert injected.value.status == 500
    assert len(core.list_node().items) == 3  # only the next matching request was affected

    lab.add_fault(r"/api/v1/nodes", status=429, retry_after_s=3)
    throttled = httpx.get(lab.api_url + "/api/v1/nodes", headers={"Authorization": f"Bearer {lab.token()}"},
                          verify=ssl.create_default_context(cafile=str(lab.ca_file)), timeout=5)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert throttled.json()["reason"] == "TooManyRequests"

    # The kubernetes client (urllib3) honours Retry-After on 429 and retries by itself.
    lab.add_fault(r"/api/v1/nodes", status=429, retry_after_s=0)
    assert len(core.list_node().items) == 3
    assert lab.api("GET", "/lab/v1/faults")["faults"] == []

    lab.add_fault(r"/api/v1/nodes/node-1$", delay_ms=300)
    started = time.monotonic()
    assert core.read_node("node-1").metadata.name == "node-1"
    assert time.monotonic() - started >= 0.3
