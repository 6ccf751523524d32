"""The simulated virt-controller, driven through the real kubernetes client: migrations, cancel, faults, evacuation.

The core VM's workload is a real ledger process; the controller really stops it (SIGSTOP) for the modelled
stop-and-copy, and the tests check that from outside with requests sent to the ledger.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from livedrill_lab.kube.precopy import PrecopyInputs, plan_precopy
from livedrill_lab.manager import running_lab
from livedrill_lab.presets import PRESET_MIGRATIONS

pytestmark = pytest.mark.e2e

NS, VMI = "banking", "banking-core-vm"
GROUP, VERSION = "kubevirt.io", "v1"
MI = 1024**2
PHASES = ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]
# The freeze is a sleep between two kill() calls in the lab's process; on a busy 2-core machine the
# scheduler may add a few ms to the modelled pause.
FREEZE_TOLERANCE_MS = 20.0


def create_vmim(custom, vmi=VMI, added=None, name=None):
    metadata = {"name": name} if name else {"generateName": "drill-"}
    spec = {"vmiName": vmi, **({"addedNodeSelector": added} if added else {})}
    return custom.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstancemigrations", {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration", "metadata": metadata, "spec": spec})


def get(custom, plural, name):
    return custom.get_namespaced_custom_object(GROUP, VERSION, NS, plural, name)


def annotate_vmi(custom, annotations, vmi=VMI):
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances", vmi,
                                          {"metadata": {"annotations": annotations}})


def wait_for(read, done, timeout_s=30.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = read()
        if done(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last seen: {json.dumps(last, default=str)[:2000]}")


def wait_phase(custom, name, phases, timeout_s=30.0):
    return wait_for(lambda: get(custom, "virtualmachineinstancemigrations", name),
                    lambda m: m.get("status", {}).get("phase") in phases, timeout_s, f"{name} in {phases}")


def phases_of(vmim):
    return [p["phase"] for p in vmim["status"]["phaseTransitionTimestamps"]]


def events_for(core, name):
    return {(e.reason, e.type) for e in core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items}


def launcher_pods(core, vmi=VMI):
    return core.list_namespaced_pod(NS, label_selector=f"kubevirt.io=virt-launcher,vm.kubevirt.io/name={vmi}").items


def patch_migrations(custom, **fields):
    custom.patch_namespaced_custom_object(GROUP, VERSION, "kubevirt", "kubevirts", "kubevirt",
                                          {"spec": {"configuration": {"migrations": fields}}})


class LedgerProbe:
    """Sends GET /healthz every `period_s` from a pool (without waiting for earlier answers) and records
    (sent, answered) in time.monotonic(), so that some requests are sent while the ledger is stopped."""

    def __init__(self, url: str, period_s: float = 0.005):
        self.url = url
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=16)
        self._http = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=16))
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self):
        sent = time.monotonic()
        self._http.get(self.url + "/healthz").raise_for_status()
        with self._lock:
            self.samples.append((sent, time.monotonic()))

    def _run(self):
        while not self._stop.wait(self.period_s):
            self._pool.submit(self._one)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=15)
        self._pool.shutdown(wait=True)
        self._http.close()


def test_targeted_migration_succeeds_and_really_pauses_the_workload(lab, custom, core):
    before_pod = launcher_pods(core)[0].metadata.name
    with LedgerProbe(lab.ledger_urls[f"{NS}/{VMI}"]) as probe:
        vmim = create_vmim(custom, added={"kubernetes.io/hostname": "node-3"})
        done = wait_phase(custom, vmim["metadata"]["name"], ("Succeeded", "Failed"))
    assert phases_of(done) == PHASES
    assert "kubevirt.io/migrationJobFinalize" not in (done["metadata"].get("finalizers") or [])
    assert done["metadata"]["labels"]["kubevirt.io/vmi-name"] == VMI

    vmi = get(custom, "virtualmachineinstances", VMI)
    state = vmi["status"]["migrationState"]
    assert vmi["status"]["nodeName"] == state["targetNode"] == "node-3" != state["sourceNode"] == "node-1"
    assert state["completed"] is True and state["failed"] is False and state["mode"] == "PreCopy"
    assert state["migrationUid"] == vmim["metadata"]["uid"]
    assert state["startTimestamp"] and state["endTimestamp"] and state["targetNodeDomainReadyTimestamp"]
    assert state["sourcePod"] == before_pod
    assert vmi["status"]["migrationMethod"] == "LiveMigration"
    assert done["status"]["migrationState"] == state
    pods = launcher_pods(core)
    assert [(p.metadata.name, p.spec.node_name, p.status.phase) for p in pods] == [(state["targetPod"], "node-3", "Running")]
    assert ("SuccessfulMigration", "Normal") in events_for(core, vmim["metadata"]["name"])
    assert ("Migrated", "Normal") in events_for(core, VMI)

    # Ground truth: one real pause of the ledger, as long as the pre-copy model says.
    expected = plan_precopy(PrecopyInputs(
        memory_bytes=256 * MI, dirty_rate_bytes_per_s=6 * MI, bandwidth_bytes_per_s=64 * MI,
        max_downtime_ms=PRESET_MIGRATIONS["maxDowntimeMs"], progress_timeout_s=PRESET_MIGRATIONS["progressTimeout"],
        completion_timeout_per_gib_s=PRESET_MIGRATIONS["completionTimeoutPerGiB"]))
    [freeze] = lab.freezes()
    assert freeze["pid"] == lab.workload_pid(f"{NS}/{VMI}") and freeze["signalled"] is True
    assert freeze["migrationUid"] == vmim["metadata"]["uid"]
    assert freeze["modelled_downtime_ms"] == pytest.approx(expected.downtime_ms)
    assert 10 < expected.downtime_ms < 100  # the bank's SLO is downtime < 100 ms; the lab models tens of ms
    assert freeze["stop_confirmed"] is True
    paused_ms = (freeze["cont_monotonic"] - freeze["stop_confirmed_monotonic"]) * 1000
    assert freeze["stopped_ms"] == pytest.approx(paused_ms)
    assert paused_ms == pytest.approx(expected.downtime_ms, abs=FREEZE_TOLERANCE_MS)
    assert paused_ms >= expected.downtime_ms
    assert freeze["frozen_ms"] >= paused_ms
    assert json.loads((lab.state_dir / "freezes.json").read_text())["freezes"] == [freeze]

    # Seen from outside: a request sent while the ledger was stopped was answered only after SIGCONT.
    stopped, resumed = freeze["stop_confirmed_monotonic"], freeze["cont_monotonic"]
    held = [(sent, answered) for sent, answered in probe.samples if stopped <= sent < resumed]
    assert held, f"no probe request was sent during the {freeze['frozen_ms']:.1f} ms freeze"
    assert all(answered >= resumed for _, answered in held)
    first_sent, first_answered = min(held)
    assert (first_answered - first_sent) * 1000 >= paused_ms - (first_sent - stopped) * 1000


def test_cancel_by_delete_aborts_and_the_vmi_stays(lab, custom, core):
    vmim = create_vmim(custom)
    name = vmim["metadata"]["name"]
    wait_phase(custom, name, ("Running",))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstancemigrations", name)

    def gone():
        try:
            get(custom, "virtualmachineinstancemigrations", name)
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_for(gone, bool, 10, f"{name} to be finalized and deleted")
    vmi = get(custom, "virtualmachineinstances", VMI)
    state = vmi["status"]["migrationState"]
    assert state["abortRequested"] is True and state["abortStatus"] == "Succeeded"
    assert state["completed"] is True and state["failed"] is True
    assert vmi["status"]["nodeName"] == "node-1"
    assert [p.spec.node_name for p in launcher_pods(core)] == ["node-1"]
    assert ("SuccessfulAbortMigration", "Normal") in events_for(core, name)
    assert lab.freezes() == []


def test_second_migration_of_the_same_vmi_is_rejected(lab, custom):
    first = create_vmim(custom)
    with pytest.raises(ApiException) as rejected:
        create_vmim(custom)
    assert rejected.value.status == 422
    assert f"Active migration job ({first['metadata']['name']})" in json.loads(rejected.value.body)["message"]


def test_fail_at_phase_knob(lab, custom, core, kubectl):
    annotate_vmi(custom, {"lab.livedrill.io/fail-at-phase": "PreparingTarget"})
    vmim = create_vmim(custom)
    # kubectl wait runs a watch-list (initial events, then the initial-events-end bookmark, then changes).
    kubectl("wait", "-n", NS, f"vmim/{vmim['metadata']['name']}", "--for=jsonpath={.status.phase}=Failed",
            "--timeout=20s")
    failed = get(custom, "virtualmachineinstancemigrations", vmim["metadata"]["name"])
    assert phases_of(failed) == ["Pending", "Scheduling", "Scheduled", "Failed"]
    state = get(custom, "virtualmachineinstances", VMI)["status"]["migrationState"]
    assert state["failed"] is True and "PreparingTarget" in state["failureReason"]
    assert get(custom, "virtualmachineinstances", VMI)["status"]["nodeName"] == "node-1"
    assert [p.spec.node_name for p in launcher_pods(core)] == ["node-1"]
    assert ("FailedMigration", "Warning") in events_for(core, vmim["metadata"]["name"])


def test_never_converging_migration_fails_at_the_progress_timeout(lab, custom):
    patch_migrations(custom, progressTimeout=1)
    annotate_vmi(custom, {"lab.livedrill.io/never-converge": "true", "lab.livedrill.io/memory": "32Mi"})
    vmim = create_vmim(custom)
    failed = wait_phase(custom, vmim["metadata"]["name"], ("Succeeded", "Failed"), timeout_s=15)
    assert phases_of(failed)[-2:] == ["Running", "Failed"]
    state = failed["status"]["migrationState"]
    assert state["failed"] is True and "no progress for 1s" in state["failureReason"]
    assert lab.freezes() == []  # a migration that never converges never pauses the guest


def test_unschedulable_target_is_auto_cancelled(tmp_path):
    with running_lab(tmp_path, controller={"unschedulable_timeout_s": 1.0}) as lab:
        api = config.new_client_from_config(config_file=str(lab.kubeconfig))
        try:
            custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
            vmim = create_vmim(custom, added={"kubernetes.io/hostname": "node-9"})
            name = vmim["metadata"]["name"]
            scheduling = wait_phase(custom, name, ("Scheduling",))
            target = scheduling["status"]["migrationState"]["targetPod"]
            pod = core.read_namespaced_pod(target, NS)
            assert pod.status.phase == "Pending" and pod.status.conditions[0].reason == "Unschedulable"
            failed = wait_phase(custom, name, ("Failed", "Succeeded"), timeout_s=10)
            assert phases_of(failed) == ["Pending", "Scheduling", "Failed"]
            assert "unschedulable" in failed["status"]["migrationState"]["failureReason"]
            assert ("migrationTargetPodUnschedulable", "Warning") in events_for(core, name)
            assert [p.spec.node_name for p in launcher_pods(core)] == ["node-1"]
        finally:
            api.close()


def test_outbound_parallelism_limit_keeps_the_extra_migration_pending(lab, custom):
    patch_migrations(custom, parallelOutboundMigrationsPerNode=1)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances", {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "batch-vm", "annotations": {"lab.livedrill.io/memory": "32Mi"}},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": "node-1"},
                 "domain": {"memory": {"guest": "32Mi"}, "devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
                 "networks": [{"name": "default", "pod": {}}]}})
    wait_for(lambda: get(custom, "virtualmachineinstances", "batch-vm"),
             lambda v: v.get("status", {}).get("nodeName") == "node-1", 10, "batch-vm running on node-1")
    # Pinned to node-1 to start there; unpinned so that it may leave.
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances", "batch-vm",
                                          {"spec": {"nodeSelector": None}})
    annotate_vmi(custom, {"lab.livedrill.io/memory": "96Mi"})  # about 1.5 s of pre-copy
    first = create_vmim(custom)
    wait_phase(custom, first["metadata"]["name"], ("Running",))
    second = create_vmim(custom, vmi="batch-vm")
    time.sleep(0.5)
    assert get(custom, "virtualmachineinstancemigrations", second["metadata"]["name"])["status"]["phase"] == "Pending"
    first_done = wait_phase(custom, first["metadata"]["name"], ("Succeeded", "Failed"))
    second_done = wait_phase(custom, second["metadata"]["name"], ("Succeeded", "Failed"))
    assert (first_done["status"]["phase"], second_done["status"]["phase"]) == ("Succeeded", "Succeeded")
    first_end = first_done["status"]["phaseTransitionTimestamps"][-1]["phaseTransitionTimestamp"]
    second_start = [p for p in second_done["status"]["phaseTransitionTimestamps"] if p["phase"] == "Scheduling"][0]
    assert second_start["phaseTransitionTimestamp"] >= first_end


def test_eviction_of_the_launcher_pod_triggers_an_evacuation(lab, custom, core):
    annotate_vmi(custom, {"lab.livedrill.io/memory": "32Mi", "lab.livedrill.io/extra-downtime-ms": "40"})
    pod = launcher_pods(core)[0].metadata.name
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=NS))
    with pytest.raises(ApiException) as denied:
        core.create_namespaced_pod_eviction(pod, NS, eviction)
    assert denied.value.status == 429
    assert f'Eviction triggered evacuation of VMI "{NS}/{VMI}"' in json.loads(denied.value.body)["message"]
    assert get(custom, "virtualmachineinstances", VMI)["status"]["evacuationNodeName"] == "node-1"
    with pytest.raises(ApiException) as again:
        core.create_namespaced_pod_eviction(pod, NS, eviction)
    assert again.value.status == 429 and "Evacuation in progress" in json.loads(again.value.body)["message"]

    vmi = wait_for(lambda: get(custom, "virtualmachineinstances", VMI),
                   lambda v: v["status"]["nodeName"] != "node-1" and "evacuationNodeName" not in v["status"],
                   20, "the evacuation to finish")
    vmims = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstancemigrations")["items"]
    [evacuation] = vmims
    assert evacuation["metadata"]["name"].startswith("kubevirt-evacuation-")
    assert evacuation["metadata"]["annotations"]["kubevirt.io/evacuationMigration"] == "node-1"
    assert evacuation["status"]["phase"] == "Succeeded"
    assert vmi["status"]["migrationState"]["migrationUid"] == evacuation["metadata"]["uid"]
    with pytest.raises(ApiException) as evicted_pod_gone:
        core.read_namespaced_pod(pod, NS)
    assert evicted_pod_gone.value.status == 404
    [freeze] = lab.freezes()
    assert freeze["modelled_downtime_ms"] == pytest.approx(freeze["model_downtime_ms"] + 40)
    paused_ms = (freeze["cont_monotonic"] - freeze["stop_confirmed_monotonic"]) * 1000
    assert paused_ms == pytest.approx(freeze["modelled_downtime_ms"], abs=FREEZE_TOLERANCE_MS)


def test_kubectl_drain_evacuates_the_vm(lab, custom, core, kubectl):
    annotate_vmi(custom, {"lab.livedrill.io/memory": "32Mi"})
    # kubectl drain retries a 429 eviction every 5 s: the evacuation finishes before its second attempt.
    result = kubectl("drain", "node-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
    assert "Eviction triggered evacuation of VMI" in result.stderr + result.stdout
    assert "node/node-1 drained" in result.stdout
    vmi = get(custom, "virtualmachineinstances", VMI)
    assert vmi["status"]["nodeName"] in ("node-2", "node-3")
    assert core.read_node("node-1").spec.unschedulable is True
    assert [f["migration"].startswith("kubevirt-evacuation-") for f in lab.freezes()] == [True]


def test_evacuation_cancel_subresource(lab, custom, core):
    annotate_vmi(custom, {"lab.livedrill.io/memory": "256Mi"})  # about 4 s of pre-copy: time to cancel
    pod = launcher_pods(core)[0].metadata.name
    with pytest.raises(ApiException):
        core.create_namespaced_pod_eviction(pod, NS, client.V1Eviction(metadata=client.V1ObjectMeta(name=pod)))
    evacuation = wait_for(
        lambda: custom.list_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstancemigrations")["items"],
        lambda items: any(m.get("status", {}).get("phase") == "Running" for m in items), 10, "the evacuation")[0]
    lab.api("PUT", f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/{VMI}/evacuate/cancel",
            {"evacuationNodeName": "node-1"})
    vmi = get(custom, "virtualmachineinstances", VMI)
    assert "evacuationNodeName" not in vmi["status"]

    def gone():
        try:
            get(custom, "virtualmachineinstancemigrations", evacuation["metadata"]["name"])
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_for(gone, bool, 10, "the evacuation migration to be aborted")
    vmi = get(custom, "virtualmachineinstances", VMI)
    assert vmi["status"]["nodeName"] == "node-1"
    assert vmi["status"]["migrationState"]["abortStatus"] == "Succeeded"
    with pytest.raises(httpx.HTTPStatusError) as not_evacuating:
        lab.api("PUT", f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/{VMI}/evacuate/cancel", {})
    assert not_evacuating.value.response.status_code == 400


def test_eviction_of_a_non_migratable_vmi_is_refused(lab, custom, core):
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances", {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "rwo-vm", "annotations": {"lab.livedrill.io/pvc-access-mode": "ReadWriteOnce"}},
        "spec": {"evictionStrategy": "LiveMigrate", "domain": {"devices": {}},
                 "volumes": [{"name": "root", "persistentVolumeClaim": {"claimName": "rwo-root"}}]}})
    vmi = wait_for(lambda: get(custom, "virtualmachineinstances", "rwo-vm"),
                   lambda v: v.get("status", {}).get("phase") == "Running", 10, "rwo-vm running")
    condition = [c for c in vmi["status"]["conditions"] if c["type"] == "LiveMigratable"][0]
    assert (condition["status"], condition["reason"]) == ("False", "DisksNotLiveMigratable")
    pod = launcher_pods(core, "rwo-vm")[0].metadata.name
    with pytest.raises(ApiException) as denied:
        core.create_namespaced_pod_eviction(pod, NS, client.V1Eviction(metadata=client.V1ObjectMeta(name=pod)))
    assert denied.value.status == 429 and "is not live-migratable" in json.loads(denied.value.body)["message"]
    with pytest.raises(ApiException) as rejected:
        create_vmim(custom, vmi="rwo-vm")
    assert rejected.value.status == 422 and "DisksNotLiveMigratable" in json.loads(rejected.value.body)["message"]


def test_vm_migrate_subresource_creates_a_migration(lab, custom):
    path = f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachines/{VMI}/migrate"
    dry = lab.api("PUT", path, {"dryRun": ["All"], "addedNodeSelector": {"kubernetes.io/hostname": "node-2"}})
    assert dry["spec"]["addedNodeSelector"] == {"kubernetes.io/hostname": "node-2"}
    assert custom.list_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstancemigrations")["items"] == []
    created = lab.api("PUT", path, {"addedNodeSelector": {"kubernetes.io/hostname": "node-2"}})
    assert created["metadata"]["name"].startswith("kubevirt-migrate-vm-")
    running = wait_phase(custom, created["metadata"]["name"], ("Scheduled", "PreparingTarget", "TargetReady", "Running"))
    assert running["spec"]["vmiName"] == VMI


def test_eviction_without_live_migration_shuts_the_vmi_down(lab, custom, core):
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances", VMI,
                                          {"spec": {"evictionStrategy": "None"}})
    pod = launcher_pods(core)[0].metadata.name
    core.create_namespaced_pod_eviction(pod, NS, client.V1Eviction(metadata=client.V1ObjectMeta(name=pod)))
    assert launcher_pods(core) == []
    vmi = get(custom, "virtualmachineinstances", VMI)
    assert vmi["status"]["phase"] == "Failed" and "evacuationNodeName" not in vmi["status"]
    assert custom.list_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstancemigrations")["items"] == []
