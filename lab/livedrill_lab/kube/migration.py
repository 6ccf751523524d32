"""One migration's state machine: a VMIM through KubeVirt's phases (Scheduling, Scheduled, PreparingTarget,
TargetReady, Running, then Succeeded or Failed), keeping `vmi.status.migrationState` as KubeVirt does.

Runs on its own thread (started by the controller); an abort request (the VMIM deleted) is honoured
until the stop-and-copy begins. The fault knobs (annotations lab.livedrill.io/...) are read here, and
the timing comes from the pre-copy model.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass

from livedrill.quantity import parse_quantity
from livedrill_lab.kube import cluster, errors, policy, scheduling
from livedrill_lab.kube.cluster import EVACUATION_ANNOTATION, KNOB, PODS, VMIMS, VMIS, Obj
from livedrill_lab.kube.config import ControllerConfig
from livedrill_lab.kube.freezer import Freezer
from livedrill_lab.kube.launcher import complete_pod, node_address, run_pod
from livedrill_lab.kube.precopy import PrecopyInputs, PrecopyPlan, plan_precopy
from livedrill_lab.kube.store import Store, rfc3339_now


class MigrationFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MigrationAborted(Exception):
    pass


def knobs_of(vmi: Obj, vmim: Obj | None = None) -> dict[str, str]:
    """The fault knobs of a VMI, those of its VMIM winning for that migration."""
    merged = {**(vmi["metadata"].get("annotations") or {}), **((vmim or {}).get("metadata", {}).get("annotations") or {})}
    return {k[len(KNOB):]: v for k, v in merged.items() if k.startswith(KNOB)}


def modelled_dirty_rate(knobs: dict[str, str], config: ControllerConfig, settings: policy.MigrationSettings) -> float:
    """The guest's dirty rate in bytes/s, as both the pre-copy model and virt-handler's metric see it."""
    dirty = parse_quantity(knobs["dirty-rate"]) if "dirty-rate" in knobs else config.default_dirty_rate_bytes_per_s
    if knobs.get("never-converge") == "true":
        dirty = max(dirty, migration_bandwidth(config, settings) * 1.5)
    return dirty


def migration_bandwidth(config: ControllerConfig, settings: policy.MigrationSettings) -> float:
    return settings.bandwidth_bytes_per_s or config.unlimited_bandwidth_bytes_per_s


@dataclass(frozen=True)
class LiveCopy:
    """A migration copying memory while its guest runs: what virt-handler's migration metrics report."""

    namespace: str
    vmi: str
    source_node: str
    inputs: PrecopyInputs
    plan: PrecopyPlan
    started: float  # time.monotonic() when the copy began


def _modelled_memory_bytes(vmi: Obj, knobs: dict[str, str]) -> int:
    if "memory" in knobs:
        return int(parse_quantity(knobs["memory"]))
    domain = vmi.get("spec", {}).get("domain", {})
    guest = domain.get("memory", {}).get("guest") or domain.get("resources", {}).get("requests", {}).get("memory")
    return int(parse_quantity(guest or "256Mi"))


def finish_failed(store: Store, vmim: Obj, target_pod: str | None, reason: str) -> None:
    """The migration ends Failed: the VMI's migrationState says why (when it is this one's), the target pod goes."""
    namespace = vmim["metadata"]["namespace"]
    vmi = store.find(VMIS, namespace, vmim["spec"]["vmiName"])
    if vmi is not None and (vmi.get("status", {}).get("migrationState") or {}).get("migrationUid") == vmim["metadata"]["uid"]:
        cluster.update_migration_state(store, vmim, {"completed": True, "failed": True, "failureReason": reason,
                                                     "endTimestamp": rfc3339_now()})
    cluster.delete_quietly(store, PODS, namespace, target_pod)
    cluster.set_phase(store, vmim, "Failed")
    cluster.event(store, VMIMS, vmim, "Warning", "FailedMigration", f"VirtualMachineInstance migration failed: {reason}")


class Migration:
    def __init__(self, store: Store, config: ControllerConfig, freezer: Freezer):
        self.store = store
        self.config = config
        self.freezer = freezer
        self._live: dict[str, LiveCopy] = {}  # VMIM uid -> its live copy, while the guest runs during it
        self._live_lock = threading.Lock()

    def live_copies(self) -> list[LiveCopy]:
        with self._live_lock:
            return list(self._live.values())

    def run(self, vmim: Obj, abort: threading.Event) -> None:
        """Drives `vmim` to Succeeded or Failed; every way out (abort, failure, API error, lab bug) ends it."""
        namespace = vmim["metadata"]["namespace"]
        created: dict[str, str] = {}  # what this migration created so far, for the clean-up of a failure
        try:
            vmi = self.store.get(VMIS, namespace, vmim["spec"]["vmiName"])
            knobs = knobs_of(vmi, vmim)
            settings = cluster.migration_settings(self.store, vmi)
            self._run_phases(vmim, vmi, knobs, settings, abort, created)
        except MigrationAborted:
            self._finish_aborted(vmim, created.get("target_pod"))
        except MigrationFailed as failure:
            finish_failed(self.store, vmim, created.get("target_pod"), failure.reason)
        except errors.ApiError as error:
            finish_failed(self.store, vmim, created.get("target_pod"), f"lab controller: {error.message}")
        except Exception as exc:  # a lab bug must still end the migration, or it would hang in its phase
            traceback.print_exc()
            finish_failed(self.store, vmim, created.get("target_pod"), f"lab controller error: {exc!r}")
        finally:
            self._end_live_copy(vmim)

    def _end_live_copy(self, vmim: Obj) -> None:
        with self._live_lock:
            self._live.pop(vmim["metadata"]["uid"], None)

    def _enter(self, vmim: Obj, phase: str, knobs: dict[str, str], abort: threading.Event) -> None:
        if abort.is_set():
            raise MigrationAborted()
        if knobs.get("fail-at-phase") == phase:
            raise MigrationFailed(f"lab fault: failed at phase {phase}")
        cluster.set_phase(self.store, vmim, phase)

    def _wait(self, seconds: float, abort: threading.Event) -> None:
        if abort.wait(max(0.0, seconds)):
            raise MigrationAborted()

    def _run_phases(self, vmim: Obj, vmi: Obj, knobs: dict[str, str], settings: policy.MigrationSettings,
                    abort: threading.Event, created: dict[str, str]) -> None:
        store = self.store
        namespace, vmi_name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        step = self.config.phase_step_s
        source_node = vmi["status"]["nodeName"]
        source_pod = scheduling.launcher_pod_name(store, namespace, vmi_name, source_node)
        self._enter(vmim, "Scheduling", knobs, abort)
        target_pod = created["target_pod"] = scheduling.create_target_pod(store, vmim, vmi)
        cluster.update_migration_state(store, vmim, {
            "sourceNode": source_node, "sourcePod": source_pod, "targetPod": target_pod,
            "migrationUid": vmim["metadata"]["uid"], "mode": "PreCopy", "completed": False, "failed": False,
            **({"migrationPolicyName": settings.policy_name} if settings.policy_name else {}),
        })
        target_node = scheduling.bind_target(
            store, vmim, vmi, target_pod, unschedulable=knobs.get("target-unschedulable") == "true",
            timeout_s=self.config.unschedulable_timeout_s, poll_s=min(0.2, self.config.reconcile_interval_s * 4),
            wait=lambda seconds: self._wait(seconds, abort))
        if target_node is None:
            raise MigrationFailed(f"target pod {target_pod} unschedulable for "
                                  f"{self.config.unschedulable_timeout_s:g}s: migration auto-cancelled")
        self._wait(step, abort)
        self._enter(vmim, "Scheduled", knobs, abort)
        self._wait(step, abort)
        self._enter(vmim, "PreparingTarget", knobs, abort)
        cluster.event(store, VMIS, vmi, "Normal", "PreparingTarget", "VirtualMachineInstance Migration Target Prepared.")
        cluster.update_migration_state(store, vmim, {"targetNode": target_node,
                                                     "targetNodeAddress": node_address(target_node)})
        store.mutate(PODS, namespace, target_pod, lambda p: run_pod(p, target_node), "all")
        self._wait(step, abort)
        self._enter(vmim, "TargetReady", knobs, abort)
        self._wait(step, abort)
        inputs = self._inputs(vmi, knobs, settings)
        plan = plan_precopy(inputs)
        self._enter(vmim, "Running", knobs, abort)
        cluster.update_migration_state(store, vmim, {"startTimestamp": rfc3339_now()})
        store.mutate(VMIS, namespace, vmi_name, lambda v: v["status"].update(migrationMethod="LiveMigration"), "all")
        with self._live_lock:
            self._live[vmim["metadata"]["uid"]] = LiveCopy(namespace, vmi_name, source_node, inputs, plan, time.monotonic())
        if not plan.converges:
            self._wait(plan.failure_at_s or 0.0, abort)
            raise MigrationFailed(plan.failure_reason or "migration did not converge")
        self._wait(plan.precopy_s, abort)
        self._end_live_copy(vmim)  # the guest pauses: what is left is the stop-and-copy
        # Past this point the guest is handed over: an abort request can no longer be honoured.
        downtime_ms = plan.downtime_ms + float(knobs.get("extra-downtime-ms", 0))
        freeze = self.freezer.freeze(vmim, vmi, downtime_ms, plan)
        if freeze.get("signalled") is False:
            raise MigrationFailed(f"the workload process {freeze['pid']} of {freeze['vmi']} is gone")
        if abort.is_set():
            cluster.update_migration_state(store, vmim, {"abortRequested": True, "abortStatus": "Failed"})
            cluster.event(store, VMIMS, vmim, "Warning", "FailedAbortMigration",
                          "Failed to abort the migration: it was already completing")
        self._finish_succeeded(vmim, vmi, source_pod, target_pod, target_node)

    def _inputs(self, vmi: Obj, knobs: dict[str, str], settings: policy.MigrationSettings) -> PrecopyInputs:
        return PrecopyInputs(
            memory_bytes=_modelled_memory_bytes(vmi, knobs),
            dirty_rate_bytes_per_s=modelled_dirty_rate(knobs, self.config, settings),
            bandwidth_bytes_per_s=migration_bandwidth(self.config, settings), max_downtime_ms=settings.max_downtime_ms,
            progress_timeout_s=settings.progress_timeout_s,
            completion_timeout_per_gib_s=settings.completion_timeout_per_gib_s)

    # ------------------------------------------------------------------ endings

    def _finish_succeeded(self, vmim: Obj, vmi: Obj, source_pod: str | None, target_pod: str, target: str) -> None:
        store = self.store
        namespace, vmi_name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        now = rfc3339_now()
        evacuation = (vmim["metadata"].get("annotations") or {}).get(EVACUATION_ANNOTATION)
        target_pod_uid = store.get(PODS, namespace, target_pod)["metadata"]["uid"]

        def move(v: Obj) -> None:
            status = v["status"]
            status["nodeName"] = target
            status["activePods"] = {target_pod_uid: target}
            status["migrationState"].update(completed=True, failed=False, endTimestamp=now,
                                            targetNodeDomainReadyTimestamp=now, targetNodeDomainDetected=True)
            v["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = target
            if evacuation:
                status.pop("evacuationNodeName", None)

        migrated = store.mutate(VMIS, namespace, vmi_name, move, "all")
        cluster.mirror_state(store, vmim, migrated)
        if source_pod:
            store.mutate(PODS, namespace, source_pod, complete_pod, "all")
        cluster.set_phase(store, vmim, "Succeeded")
        cluster.event(store, VMIMS, vmim, "Normal", "SuccessfulMigration", "Source node reported migration succeeded")
        cluster.event(store, VMIS, migrated, "Normal", "Migrated",
                      f"The VirtualMachineInstance migrated to node {target}.")
        if source_pod:
            store.delete(PODS, namespace, source_pod)

    def _finish_aborted(self, vmim: Obj, target_pod: str | None) -> None:
        store = self.store
        namespace = vmim["metadata"]["namespace"]
        vmi = store.find(VMIS, namespace, vmim["spec"]["vmiName"])
        ours = vmi is not None and (vmi.get("status", {}).get("migrationState") or {}).get("migrationUid") == vmim["metadata"]["uid"]
        if ours:
            cluster.update_migration_state(store, vmim, {"abortRequested": True, "abortStatus": "Aborting"})
        cluster.add_condition(store, vmim, "migrationAbortRequested", "Migration abort requested")
        time.sleep(self.config.abort_duration_s)
        if ours:
            cluster.update_migration_state(store, vmim, {"abortStatus": "Succeeded", "completed": True, "failed": True,
                                                         "endTimestamp": rfc3339_now()})
        cluster.delete_quietly(store, PODS, namespace, target_pod)
        cluster.set_phase(store, vmim, "Failed")
        cluster.event(store, VMIMS, vmim, "Normal", "SuccessfulAbortMigration", "Live migration aborted")
