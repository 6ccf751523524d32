"""A simulated virt-controller and virt-handler, running as threads beside the lab's API server.

It drives VirtualMachineInstanceMigrations through KubeVirt's phases (Pending, Scheduling, Scheduled,
PreparingTarget, TargetReady, Running, Succeeded or Failed), keeps `vmi.status.migrationState` as
KubeVirt does, moves virt-launcher pods, honours cancel-by-delete, parallelism limits and
addedNodeSelector, and answers the eviction webhook (evacuation of LiveMigrate VMIs).

During the modelled stop-and-copy it REALLY pauses the VMI's workload process (SIGSTOP, then SIGCONT
after the modelled downtime) and records the freeze window measured around the two kill calls.

Fault knobs, set as annotations on the VMI (or on one VMIM, which wins for that migration):
  lab.livedrill.io/fail-at-phase: <Phase>    the migration fails instead of entering that phase
  lab.livedrill.io/never-converge: "true"    the dirty rate exceeds the bandwidth: Failed at the progress timeout
  lab.livedrill.io/target-unschedulable: "true"  no node takes the target pod: Scheduling until auto-cancel
  lab.livedrill.io/extra-downtime-ms: "200"  added to the modelled stop-and-copy pause
  lab.livedrill.io/dirty-rate: "6Mi"         the guest's dirty rate in bytes/s (a quantity)
  lab.livedrill.io/memory: "256Mi"           modelled guest memory (default: the VMI's memory request/guest)
  lab.livedrill.io/pvc-access-mode: ReadWriteOnce  (VMIs the lab starts) the PVCs' access mode: not RWX makes
                                             the VMI not live-migratable (DisksNotLiveMigratable)
API-level faults (errors, 429s, delays on chosen paths) live in the server: see `faults.py`.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from livedrill.quantity import parse_quantity
from livedrill_lab.kube import errors, policy, resources
from livedrill_lab.kube.precopy import PrecopyInputs, PrecopyPlan, plan_precopy
from livedrill_lab.kube.resources import KUBEVIRT, MIGRATIONS, ResourceType
from livedrill_lab.kube.store import Store, generated_suffix, rfc3339_now

Obj = dict[str, Any]

NODES = resources.find("", "v1", "nodes")
PODS = resources.find("", "v1", "pods")
EVENTS = resources.find("", "v1", "events")
NAMESPACES = resources.find("", "v1", "namespaces")
VMS = resources.find(KUBEVIRT, "v1", "virtualmachines")
VMIS = resources.find(KUBEVIRT, "v1", "virtualmachineinstances")
VMIMS = resources.find(KUBEVIRT, "v1", "virtualmachineinstancemigrations")
KUBEVIRTS = resources.find(KUBEVIRT, "v1", "kubevirts")
POLICIES = resources.find(MIGRATIONS, "v1alpha1", "migrationpolicies")

MIGRATION_FINALIZER = "kubevirt.io/migrationJobFinalize"
EVACUATION_ANNOTATION = "kubevirt.io/evacuationMigration"
KNOB = "lab.livedrill.io/"
LAUNCHER_LABEL = "kubevirt.io"  # = "virt-launcher" on launcher pods
VMI_NAME_LABEL = "vm.kubevirt.io/name"
# How long the freeze waits for the kernel to actually stop the workload after SIGSTOP is queued.
STOP_CONFIRM_TIMEOUT_S = 0.5
SPIN_S = 0.001
WEBHOOK_DENIAL = 'admission webhook "virt-launcher-eviction-interceptor.kubevirt.io" denied the request: '


class ControllerConfig(BaseModel):
    """How the lab paces and models migrations (all durations in seconds)."""

    model_config = ConfigDict(extra="forbid")

    phase_step_s: float = Field(0.1, ge=0, description="Pause between the early phases (scheduling, target start)")
    unlimited_bandwidth_bytes_per_s: float = Field(1024**3, gt=0, description="Used when bandwidthPerMigration is 0")
    default_dirty_rate_bytes_per_s: float = Field(6 * 1024**2, ge=0)
    unschedulable_timeout_s: float = Field(300.0, gt=0, description="KubeVirt auto-cancels an unschedulable target pod")
    abort_duration_s: float = Field(0.1, ge=0)
    finished_kept_per_vmi: int = Field(5, ge=1)
    evacuation_retry_s: float = Field(2.0, ge=0)
    reconcile_interval_s: float = Field(0.05, gt=0, description="How often the controller looks for changes")
    resync_interval_s: float = Field(1.0, gt=0, description="A full pass at least this often, changes or not")
    workloads: dict[str, int] = Field(default_factory=dict, description='"ns/name" -> PID paused at stop-and-copy')
    freezes_file: Path | None = None


class MigrationFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MigrationAborted(Exception):
    pass


def _now_rfc3339() -> str:
    return rfc3339_now()


def _knobs(vmi: Obj, vmim: Obj) -> dict[str, str]:
    merged = {**(vmi["metadata"].get("annotations") or {}), **(vmim["metadata"].get("annotations") or {})}
    return {k[len(KNOB):]: v for k, v in merged.items() if k.startswith(KNOB)}


def _modelled_memory_bytes(vmi: Obj, knobs: dict[str, str]) -> int:
    if "memory" in knobs:
        return int(parse_quantity(knobs["memory"]))
    domain = vmi.get("spec", {}).get("domain", {})
    guest = domain.get("memory", {}).get("guest") or domain.get("resources", {}).get("requests", {}).get("memory")
    return int(parse_quantity(guest or "256Mi"))


class VirtController:
    def __init__(self, store: Store, config: ControllerConfig):
        self.store = store
        self.config = config
        self._stop = threading.Event()
        self._workers: dict[str, threading.Thread] = {}  # VMIM uid -> its migration thread
        self._aborts: dict[str, threading.Event] = {}  # VMIM uid -> abort requested
        self._sources: dict[str, str] = {}  # VMIM uid -> source node, while it runs
        self._worker_ended = threading.Event()
        self._freezes: list[Obj] = []
        self._frozen_pids: set[int] = set()
        self._lock = threading.Lock()
        self._evacuation_backoff: dict[str, float] = {}  # "ns/vmi" -> monotonic time of next attempt
        self._thread = threading.Thread(target=self._loop, name="virt-controller", daemon=True)
        store.add_admission_hook(self._admit)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for event in list(self._aborts.values()):
            event.set()
        self._thread.join(timeout=5)
        for worker in list(self._workers.values()):
            worker.join(timeout=5)
        with self._lock:
            for pid in list(self._frozen_pids):  # never leave a workload stopped behind
                _signal(pid, signal.SIGCONT)
            self._frozen_pids.clear()

    def freezes(self) -> list[Obj]:
        with self._lock:
            return [dict(f) for f in self._freezes]

    # ------------------------------------------------------------------ admission (the virt-api webhooks)

    def _admit(self, operation: str, r: ResourceType, obj: Obj, old: Obj | None) -> None:
        if r is not VMIMS:
            return
        name = obj["metadata"].get("name", "")
        if operation == "UPDATE" and old is not None and obj.get("spec") != old.get("spec"):
            raise errors.invalid(r.kind, name, "spec is immutable after creation", "spec")
        if operation != "CREATE":
            return
        vmi_name = obj.get("spec", {}).get("vmiName")
        if not vmi_name:
            raise errors.invalid(r.kind, name, "spec.vmiName is required", "spec.vmiName")
        namespace = obj["metadata"]["namespace"]
        vmi = self.store.find(VMIS, namespace, vmi_name)
        if vmi is None:
            raise errors.invalid(r.kind, name, f"the VMI {namespace}/{vmi_name} does not exist", "spec.vmiName")
        if vmi.get("status", {}).get("phase") != "Running":
            raise errors.invalid(r.kind, name, f"Cannot migrate VMI {namespace}/{vmi_name}: it is not running")
        migratable, reason, message = policy.live_migratable(vmi)
        if not migratable:
            raise errors.invalid(r.kind, name, f"Cannot migrate VMI, Reason: {reason}, Message: {message}")
        others, _ = self.store.list(VMIMS, namespace)
        for other in others:
            if (other["spec"].get("vmiName") == vmi_name
                    and other.get("status", {}).get("phase") not in policy.FINAL_PHASES):
                raise errors.invalid(
                    r.kind, name, f"in-flight migration detected. Active migration job "
                    f"({other['metadata']['name']}) is currently already in progress for VMI {vmi_name}.", "spec.vmiName")
        meta = obj["metadata"]
        meta.setdefault("labels", {})["kubevirt.io/vmi-name"] = vmi_name
        if MIGRATION_FINALIZER not in meta.setdefault("finalizers", []):
            meta["finalizers"].append(MIGRATION_FINALIZER)

    # ------------------------------------------------------------------ reconcile loop

    def _loop(self) -> None:
        seen_rv, last_pass = -1, 0.0
        while not self._stop.is_set():
            # A pass when anything changed, else once per resync period (the evacuation back-off is timed).
            rv, now = self.store.current_rv(), time.monotonic()
            worker_ended = self._worker_ended.is_set()  # frees capacity for Pending migrations
            if rv == seen_rv and not worker_ended and now - last_pass < self.config.resync_interval_s:
                self._stop.wait(self.config.reconcile_interval_s)
                continue
            seen_rv, last_pass = rv, now
            self._worker_ended.clear()
            try:
                self._reconcile()
            except errors.ApiError:
                pass  # an object vanished between read and write: the next pass sees the new state
            except Exception:  # a lab bug: keep the traceback in the log, keep reconciling
                traceback.print_exc()
            self._stop.wait(self.config.reconcile_interval_s)

    def _reconcile(self) -> None:
        vmims, _ = self.store.list(VMIMS, None)
        with self._lock:  # every migration past Pending has a worker until it is final
            running_sources = list(self._sources.values())
        for vmim in sorted(vmims, key=lambda m: int(m["metadata"]["resourceVersion"])):
            uid = vmim["metadata"]["uid"]
            phase = vmim.get("status", {}).get("phase", "")
            deleting = bool(vmim["metadata"].get("deletionTimestamp"))
            with self._lock:
                worker = self._workers.get(uid)
            if worker is not None:
                if deleting:
                    with self._lock:
                        abort = self._aborts.get(uid)
                    if abort is not None:
                        abort.set()
                continue
            if deleting or phase in policy.FINAL_PHASES:
                if MIGRATION_FINALIZER in (vmim["metadata"].get("finalizers") or []):
                    self._remove_finalizer(vmim)
                continue
            if phase == "":
                self._set_phase(vmim, "Pending")
                continue
            if phase == "Pending":
                vmi = self.store.find(VMIS, vmim["metadata"]["namespace"], vmim["spec"]["vmiName"])
                if vmi is None:
                    self._finish_failed(vmim, None, "the VMI no longer exists")
                    continue
                source = vmi.get("status", {}).get("nodeName", "")
                if policy.may_start(source, running_sources, self._settings(vmi)):
                    running_sources.append(source)
                    self._start_worker(vmim, source)
        self.start_new_vmis()
        self._evacuate()
        self._collect_garbage(vmims)

    def start_new_vmis(self) -> None:
        """A VMI created without a phase gets a virt-launcher pod on a schedulable node and runs (no workload)."""
        fresh, _ = self.store.list(VMIS, None, lambda v: not v.get("status", {}).get("phase"))
        for vmi in fresh:
            nodes, _ = self.store.list(NODES, None)
            pods, _ = self.store.list(PODS, None, _is_launcher)
            node = policy.pick_target_node(nodes, pods, vmi, None)
            if node is None:
                continue  # stays unscheduled until a node is available
            pod = self.store.create(PODS, vmi["metadata"]["namespace"], launcher_pod(vmi, node))
            self.store.mutate(VMIS, vmi["metadata"]["namespace"], vmi["metadata"]["name"],
                              lambda v: _start_vmi(v, node, pod), "all")

    def _start_worker(self, vmim: Obj, source_node: str) -> None:
        uid = vmim["metadata"]["uid"]
        abort = threading.Event()
        thread = threading.Thread(target=self._migrate, args=(vmim, abort), daemon=True,
                                  name=f"migration-{vmim['metadata']['name']}")
        with self._lock:
            self._aborts[uid] = abort
            self._workers[uid] = thread
            self._sources[uid] = source_node
        thread.start()

    def _settings(self, vmi: Obj) -> policy.MigrationSettings:
        policies, _ = self.store.list(POLICIES, None)
        namespace = self.store.find(NAMESPACES, "", vmi["metadata"]["namespace"]) or {"metadata": {}}
        chosen = policy.matching_policy(policies, vmi["metadata"].get("labels") or {},
                                        namespace["metadata"].get("labels") or {})
        return policy.effective_settings(self._kubevirt_cr(), chosen)

    def _collect_garbage(self, vmims: list[Obj]) -> None:
        by_vmi: dict[tuple[str, str], list[Obj]] = {}
        for vmim in vmims:
            by_vmi.setdefault((vmim["metadata"]["namespace"], vmim["spec"].get("vmiName", "")), []).append(vmim)
        for (namespace, _), group in by_vmi.items():
            for name in policy.finished_to_collect(group, self.config.finished_kept_per_vmi):
                self.store.delete(VMIMS, namespace, name)

    # ------------------------------------------------------------------ one migration

    def _migrate(self, vmim: Obj, abort: threading.Event) -> None:
        uid = vmim["metadata"]["uid"]
        namespace = vmim["metadata"]["namespace"]
        created: dict[str, str] = {}  # what this migration created so far, for the clean-up of a failure
        try:
            vmi = self.store.get(VMIS, namespace, vmim["spec"]["vmiName"])
            knobs = _knobs(vmi, vmim)
            settings = self._settings(vmi)
            self._run_phases(vmim, vmi, knobs, settings, abort, created)
        except MigrationAborted:
            self._finish_aborted(vmim, created.get("target_pod"))
        except MigrationFailed as failure:
            self._finish_failed(vmim, created.get("target_pod"), failure.reason)
        except errors.ApiError as error:
            self._finish_failed(vmim, created.get("target_pod"), f"lab controller: {error.message}")
        except Exception as exc:  # a lab bug must still end the migration, or it would hang in its phase
            traceback.print_exc()
            self._finish_failed(vmim, created.get("target_pod"), f"lab controller error: {exc!r}")
        finally:
            with self._lock:
                self._workers.pop(uid, None)
                self._aborts.pop(uid, None)
                self._sources.pop(uid, None)
            self._worker_ended.set()

    def _enter(self, vmim: Obj, phase: str, knobs: dict[str, str], abort: threading.Event) -> None:
        if abort.is_set():
            raise MigrationAborted()
        if knobs.get("fail-at-phase") == phase:
            raise MigrationFailed(f"lab fault: failed at phase {phase}")
        self._set_phase(vmim, phase)

    def _wait(self, seconds: float, abort: threading.Event) -> None:
        if abort.wait(max(0.0, seconds)):
            raise MigrationAborted()

    def _run_phases(self, vmim: Obj, vmi: Obj, knobs: dict[str, str], settings: policy.MigrationSettings,
                    abort: threading.Event, created: dict[str, str]) -> None:
        namespace, vmi_name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        step = self.config.phase_step_s
        source_node = vmi["status"]["nodeName"]
        source_pod = self._launcher_pod_name(namespace, vmi_name, source_node)
        self._enter(vmim, "Scheduling", knobs, abort)
        target_pod = created["target_pod"] = self._create_target_pod(vmim, vmi)
        self._update_migration_state(vmim, {
            "sourceNode": source_node, "sourcePod": source_pod, "targetPod": target_pod,
            "migrationUid": vmim["metadata"]["uid"], "mode": "PreCopy", "completed": False, "failed": False,
            **({"migrationPolicyName": settings.policy_name} if settings.policy_name else {}),
        })
        target_node = self._wait_for_target(vmim, vmi, target_pod, knobs, abort)
        self._wait(step, abort)
        self._enter(vmim, "Scheduled", knobs, abort)
        self._wait(step, abort)
        self._enter(vmim, "PreparingTarget", knobs, abort)
        self._event(VMIS, vmi, "Normal", "PreparingTarget", "VirtualMachineInstance Migration Target Prepared.")
        self._update_migration_state(vmim, {"targetNode": target_node, "targetNodeAddress": _node_address(target_node)})
        self.store.mutate(PODS, namespace, target_pod, lambda p: _run_pod(p, target_node), "all")
        self._wait(step, abort)
        self._enter(vmim, "TargetReady", knobs, abort)
        self._wait(step, abort)
        plan = self._plan(vmi, knobs, settings)
        self._enter(vmim, "Running", knobs, abort)
        self._update_migration_state(vmim, {"startTimestamp": _now_rfc3339()})
        self.store.mutate(VMIS, namespace, vmi_name, lambda v: v["status"].update(migrationMethod="LiveMigration"),
                          "all")
        if not plan.converges:
            self._wait(plan.failure_at_s or 0.0, abort)
            raise MigrationFailed(plan.failure_reason or "migration did not converge")
        self._wait(plan.precopy_s, abort)
        # Past this point the guest is handed over: an abort request can no longer be honoured.
        downtime_ms = plan.downtime_ms + float(knobs.get("extra-downtime-ms", 0))
        self._freeze(vmim, vmi, downtime_ms, plan)
        if abort.is_set():
            self._update_migration_state(vmim, {"abortRequested": True, "abortStatus": "Failed"})
            self._event(VMIMS, vmim, "Warning", "FailedAbortMigration",
                        "Failed to abort the migration: it was already completing")
        self._finish_succeeded(vmim, vmi, source_pod, target_pod, target_node)

    def _plan(self, vmi: Obj, knobs: dict[str, str], settings: policy.MigrationSettings) -> PrecopyPlan:
        bandwidth = settings.bandwidth_bytes_per_s or self.config.unlimited_bandwidth_bytes_per_s
        dirty = parse_quantity(knobs["dirty-rate"]) if "dirty-rate" in knobs else self.config.default_dirty_rate_bytes_per_s
        if knobs.get("never-converge") == "true":
            dirty = max(dirty, bandwidth * 1.5)
        return plan_precopy(PrecopyInputs(
            memory_bytes=_modelled_memory_bytes(vmi, knobs), dirty_rate_bytes_per_s=dirty,
            bandwidth_bytes_per_s=bandwidth, max_downtime_ms=settings.max_downtime_ms,
            progress_timeout_s=settings.progress_timeout_s,
            completion_timeout_per_gib_s=settings.completion_timeout_per_gib_s))

    def _wait_for_target(self, vmim: Obj, vmi: Obj, target_pod: str, knobs: dict[str, str],
                         abort: threading.Event) -> str:
        """Bind the target pod to a node, or fail once KubeVirt's unschedulable timeout passes."""
        deadline = time.monotonic() + self.config.unschedulable_timeout_s
        reported = False
        while True:
            nodes, _ = self.store.list(NODES, None)
            pods, _ = self.store.list(PODS, None, _is_launcher)
            current_vmi = self.store.get(VMIS, vmi["metadata"]["namespace"], vmi["metadata"]["name"])
            target = None if knobs.get("target-unschedulable") == "true" else policy.pick_target_node(
                nodes, pods, current_vmi, vmim["spec"].get("addedNodeSelector"))
            if target:
                self.store.mutate(PODS, vmim["metadata"]["namespace"], target_pod, lambda p: _bind_pod(p, target), "all")
                return target
            if not reported:
                reported = True
                message = "0/{} nodes are available for the target pod {}".format(len(nodes), target_pod)
                self.store.mutate(PODS, vmim["metadata"]["namespace"], target_pod, lambda p: _unschedulable(p, message),
                                  "all")
                self._event(VMIMS, vmim, "Warning", "migrationTargetPodUnschedulable",
                            f"Migration target pod for VMI [{vmi['metadata']['namespace']}/{vmi['metadata']['name']}] "
                            f"is currently unschedulable.")
            if time.monotonic() >= deadline:
                raise MigrationFailed(f"target pod {target_pod} unschedulable for "
                                      f"{self.config.unschedulable_timeout_s:g}s: migration auto-cancelled")
            self._wait(min(0.2, self.config.reconcile_interval_s * 4), abort)

    # ------------------------------------------------------------------ the real freeze

    def _freeze(self, vmim: Obj, vmi: Obj, downtime_ms: float, plan: PrecopyPlan) -> None:
        """Pause the VMI's workload for the modelled stop-and-copy and record the ground truth.

        Times are time.monotonic() (CLOCK_MONOTONIC: comparable across processes on this host) and wall
        clock. `frozen_ms` is the outer bound, from just before SIGSTOP to just after SIGCONT returned;
        `stopped_ms` the inner bound, from /proc confirming the stop to just before SIGCONT.
        """
        key = f"{vmi['metadata']['namespace']}/{vmi['metadata']['name']}"
        pid = self.config.workloads.get(key)
        record: Obj = {"vmi": key, "migration": vmim["metadata"]["name"], "migrationUid": vmim["metadata"]["uid"],
                       "pid": pid, "modelled_downtime_ms": downtime_ms, "model_downtime_ms": plan.downtime_ms,
                       "iterations": plan.iterations, "precopy_s": plan.precopy_s}
        if pid is None:
            record["note"] = "no workload process registered for this VMI: nothing paused"
            time.sleep(downtime_ms / 1000.0)
            self._record_freeze(record)
            return
        with self._lock:
            self._frozen_pids.add(pid)
        wall_before_stop, mono_before_stop = time.time(), time.monotonic()
        stopped = _signal(pid, signal.SIGSTOP)
        mono_after_stop = time.monotonic()
        # kill() returns once the signal is queued; the process stops when the kernel next schedules it.
        # The modelled pause runs from the moment /proc confirms it is stopped.
        confirmed = stopped and _wait_until_stopped(pid, STOP_CONFIRM_TIMEOUT_S)
        mono_confirmed = time.monotonic()
        _sleep_until(mono_confirmed + downtime_ms / 1000.0)
        mono_before_cont = time.monotonic()
        _signal(pid, signal.SIGCONT)
        mono_after_cont, wall_after_cont = time.monotonic(), time.time()
        with self._lock:
            self._frozen_pids.discard(pid)
        record.update({
            "signalled": stopped,
            "stop_confirmed": confirmed, "stop_confirmed_monotonic": mono_confirmed,
            "stop_monotonic": mono_before_stop, "stop_returned_monotonic": mono_after_stop,
            "cont_monotonic": mono_before_cont, "cont_returned_monotonic": mono_after_cont,
            "stop_wall": wall_before_stop, "cont_wall": wall_after_cont,
            "stop_utc": _iso(wall_before_stop), "cont_utc": _iso(wall_after_cont),
            "frozen_ms": (mono_after_cont - mono_before_stop) * 1000.0,
            "stopped_ms": (mono_before_cont - mono_confirmed) * 1000.0,
        })
        self._record_freeze(record)
        if not stopped:
            raise MigrationFailed(f"the workload process {pid} of {key} is gone")

    def _record_freeze(self, record: Obj) -> None:
        with self._lock:
            self._freezes.append(record)
            snapshot = list(self._freezes)
        if self.config.freezes_file:
            tmp = self.config.freezes_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"freezes": snapshot}, indent=1))
            tmp.replace(self.config.freezes_file)

    # ------------------------------------------------------------------ endings

    def _finish_succeeded(self, vmim: Obj, vmi: Obj, source_pod: str | None, target_pod: str, target: str) -> None:
        namespace, vmi_name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        now = _now_rfc3339()
        evacuation = (vmim["metadata"].get("annotations") or {}).get(EVACUATION_ANNOTATION)
        target_pod_uid = self.store.get(PODS, namespace, target_pod)["metadata"]["uid"]

        def move(v: Obj) -> None:
            status = v["status"]
            status["nodeName"] = target
            status["activePods"] = {target_pod_uid: target}
            status["migrationState"].update(completed=True, failed=False, endTimestamp=now,
                                            targetNodeDomainReadyTimestamp=now, targetNodeDomainDetected=True)
            v["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = target
            if evacuation:
                status.pop("evacuationNodeName", None)

        migrated = self.store.mutate(VMIS, namespace, vmi_name, move, "all")
        self._mirror_state(vmim, migrated)
        if source_pod:
            self.store.mutate(PODS, namespace, source_pod, _complete_pod, "all")
        self._set_phase(vmim, "Succeeded")
        self._event(VMIMS, vmim, "Normal", "SuccessfulMigration", "Source node reported migration succeeded")
        self._event(VMIS, migrated, "Normal", "Migrated",
                    f"The VirtualMachineInstance migrated to node {target}.")
        if source_pod:
            self.store.delete(PODS, namespace, source_pod)

    def _finish_failed(self, vmim: Obj, target_pod: str | None, reason: str) -> None:
        namespace = vmim["metadata"]["namespace"]
        vmi = self.store.find(VMIS, namespace, vmim["spec"]["vmiName"])
        if vmi is not None and (vmi.get("status", {}).get("migrationState") or {}).get("migrationUid") == vmim["metadata"]["uid"]:
            self._update_migration_state(vmim, {"completed": True, "failed": True, "failureReason": reason,
                                                "endTimestamp": _now_rfc3339()})
        self._delete_quietly(PODS, namespace, target_pod)
        self._set_phase(vmim, "Failed")
        self._event(VMIMS, vmim, "Warning", "FailedMigration", f"VirtualMachineInstance migration failed: {reason}")

    def _finish_aborted(self, vmim: Obj, target_pod: str | None) -> None:
        namespace = vmim["metadata"]["namespace"]
        vmi = self.store.find(VMIS, namespace, vmim["spec"]["vmiName"])
        ours = vmi is not None and (vmi.get("status", {}).get("migrationState") or {}).get("migrationUid") == vmim["metadata"]["uid"]
        if ours:
            self._update_migration_state(vmim, {"abortRequested": True, "abortStatus": "Aborting"})
        self._add_condition(vmim, "migrationAbortRequested", "Migration abort requested")
        time.sleep(self.config.abort_duration_s)
        if ours:
            self._update_migration_state(vmim, {"abortStatus": "Succeeded", "completed": True, "failed": True,
                                                "endTimestamp": _now_rfc3339()})
        self._delete_quietly(PODS, namespace, target_pod)
        self._set_phase(vmim, "Failed")
        self._event(VMIMS, vmim, "Normal", "SuccessfulAbortMigration", "Live migration aborted")

    # ------------------------------------------------------------------ writes

    def _set_phase(self, vmim: Obj, phase: str) -> None:
        def change(m: Obj) -> None:
            status = m.setdefault("status", {})
            status["phase"] = phase
            status.setdefault("phaseTransitionTimestamps", []).append(
                {"phase": phase, "phaseTransitionTimestamp": _now_rfc3339()})
            if phase in policy.FINAL_PHASES:  # a final migration is released in the same write
                m["metadata"]["finalizers"] = [f for f in m["metadata"].get("finalizers", [])
                                               if f != MIGRATION_FINALIZER]

        self.store.mutate(VMIMS, vmim["metadata"]["namespace"], vmim["metadata"]["name"], change, "all")

    def _add_condition(self, vmim: Obj, kind: str, message: str) -> None:
        def change(m: Obj) -> None:
            m.setdefault("status", {}).setdefault("conditions", []).append(
                {"type": kind, "status": "True", "message": message, "lastTransitionTime": _now_rfc3339()})

        self._mutate_quietly(VMIMS, vmim, change)

    def _update_migration_state(self, vmim: Obj, fields: Obj) -> None:
        namespace = vmim["metadata"]["namespace"]

        def change(v: Obj) -> None:
            state = v.setdefault("status", {}).get("migrationState") or {}
            if state.get("migrationUid") not in (None, vmim["metadata"]["uid"]):
                state = {}  # a previous migration's record is replaced by this one's
            state.update(fields)
            v["status"]["migrationState"] = state

        vmi = self.store.mutate(VMIS, namespace, vmim["spec"]["vmiName"], change, "all")
        self._mirror_state(vmim, vmi)

    def _mirror_state(self, vmim: Obj, vmi: Obj) -> None:
        """The VMIM carries a copy of the VMI's migrationState (KubeVirt v1.x)."""
        state = vmi.get("status", {}).get("migrationState")
        self._mutate_quietly(VMIMS, vmim, lambda m: m.setdefault("status", {}).update(migrationState=state))

    def _mutate_quietly(self, r: ResourceType, obj: Obj, change: Callable[[Obj], Any]) -> None:
        try:
            self.store.mutate(r, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], change, "all")
        except errors.ApiError:
            pass  # deleted meanwhile (e.g. a VMIM whose finalizer is already gone)

    def _delete_quietly(self, r: ResourceType, namespace: str, name: str | None) -> None:
        if name:
            try:
                self.store.delete(r, namespace, name)
            except errors.ApiError:
                pass

    def _remove_finalizer(self, vmim: Obj) -> None:
        def change(m: Obj) -> None:
            m["metadata"]["finalizers"] = [f for f in m["metadata"].get("finalizers", []) if f != MIGRATION_FINALIZER]

        self._mutate_quietly(VMIMS, vmim, change)

    def _event(self, r: ResourceType, obj: Obj, kind: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        now = _now_rfc3339()
        event = {
            "metadata": {"name": f"{meta['name']}.{generated_suffix(10)}", "namespace": meta["namespace"]},
            "involvedObject": {"kind": r.kind, "apiVersion": r.api_version, "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "virtualmachine-controller"}, "reportingComponent": "virt-controller",
        }
        self.store.create(EVENTS, meta["namespace"], event)

    # ------------------------------------------------------------------ pods

    def _launcher_pod_name(self, namespace: str, vmi_name: str, node: str) -> str | None:
        pods, _ = self.store.list(PODS, namespace, lambda p: (p["metadata"].get("labels") or {}).get(VMI_NAME_LABEL)
                                  == vmi_name and p["spec"].get("nodeName") == node
                                  and p.get("status", {}).get("phase") == "Running")
        return pods[0]["metadata"]["name"] if pods else None

    def _create_target_pod(self, vmim: Obj, vmi: Obj) -> str:
        namespace = vmi["metadata"]["namespace"]
        pod = launcher_pod(vmi, node=None)
        pod["metadata"]["labels"]["kubevirt.io/migrationJobUID"] = vmim["metadata"]["uid"]
        return self.store.create(PODS, namespace, pod)["metadata"]["name"]

    # ------------------------------------------------------------------ eviction webhook and evacuation

    def evict(self, namespace: str, pod_name: str, body: Obj) -> Obj:
        """policy/v1 Eviction of a pod, with KubeVirt's eviction webhook in front of virt-launcher pods."""
        with self.store.lock:  # one decision at a time: concurrent evictions see each other's evacuation
            pod = self.store.get(PODS, namespace, pod_name)
            labels = pod["metadata"].get("labels") or {}
            vmi_name = labels.get(VMI_NAME_LABEL)
            vmi = self.store.find(VMIS, namespace, vmi_name) if labels.get(LAUNCHER_LABEL) == "virt-launcher" else None
            serving = (vmi is not None and pod.get("status", {}).get("phase") == "Running"
                       and vmi.get("status", {}).get("nodeName") == pod["spec"].get("nodeName"))
            if serving:
                strategy = policy.eviction_strategy(vmi, self._kubevirt_cr())
                if strategy in ("LiveMigrate", "LiveMigrateIfPossible", "External"):
                    self._deny_eviction(vmi, strategy, pod["spec"]["nodeName"])
            self.store.delete(PODS, namespace, pod_name)
            if serving:  # the VMI's only launcher is gone: the guest is shut down with it
                self.store.mutate(VMIS, namespace, vmi_name, _shut_down, "all")
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _kubevirt_cr(self) -> Obj | None:
        kubevirt_crs, _ = self.store.list(KUBEVIRTS, None)
        return kubevirt_crs[0] if kubevirt_crs else None

    def _deny_eviction(self, vmi: Obj, strategy: str, node: str) -> None:
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        migratable, _, _ = policy.live_migratable(vmi)
        if not migratable and strategy == "LiveMigrate":
            raise errors.too_many_requests(
                WEBHOOK_DENIAL + f"VMI {namespace}/{name} is configured with an eviction strategy but is not "
                "live-migratable")
        if not migratable and strategy == "LiveMigrateIfPossible":
            return  # evicted like any pod: the VMI shuts down
        triggered = f'Eviction triggered evacuation of VMI "{namespace}/{name}"'
        if vmi.get("status", {}).get("evacuationNodeName"):
            raise errors.too_many_requests(WEBHOOK_DENIAL + f"Evacuation in progress: {triggered}")
        self.store.mutate(VMIS, namespace, name, lambda v: v["status"].update(evacuationNodeName=node), "all")
        raise errors.too_many_requests(WEBHOOK_DENIAL + triggered)

    def cancel_evacuation(self, namespace: str, vmi_name: str, body: Obj) -> Obj:
        vmi = self.store.get(VMIS, namespace, vmi_name)
        current = vmi.get("status", {}).get("evacuationNodeName")
        wanted = body.get("evacuationNodeName")
        if not current:
            raise errors.bad_request(f"VMI {namespace}/{vmi_name} is not being evacuated")
        if wanted and wanted != current:
            raise errors.bad_request(f"VMI {namespace}/{vmi_name} is being evacuated from {current}, not {wanted}")
        if not body.get("dryRun"):
            self.store.mutate(VMIS, namespace, vmi_name, lambda v: v["status"].pop("evacuationNodeName", None), "all")
            vmims, _ = self.store.list(VMIMS, namespace)
            for vmim in vmims:
                if (vmim["spec"].get("vmiName") == vmi_name and EVACUATION_ANNOTATION in
                        (vmim["metadata"].get("annotations") or {})
                        and vmim.get("status", {}).get("phase") not in policy.FINAL_PHASES):
                    self.store.delete(VMIMS, namespace, vmim["metadata"]["name"])
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200}

    def migrate_vm(self, namespace: str, vm_name: str, body: Obj) -> Obj:
        """The VM `migrate` subresource (virtctl migrate): a VMIM named kubevirt-migrate-vm-*; returns it."""
        vm = self.store.get(VMS, namespace, vm_name)
        if self.store.find(VMIS, namespace, vm_name) is None:
            raise errors.conflict(KUBEVIRT, "virtualmachines", vm_name, "VM is not running")
        migration = {
            "apiVersion": f"{KUBEVIRT}/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"generateName": "kubevirt-migrate-vm-"},
            "spec": {"vmiName": vm["metadata"]["name"],
                     **({"addedNodeSelector": body["addedNodeSelector"]} if body.get("addedNodeSelector") else {})},
        }
        if body.get("dryRun"):
            return migration
        return self.store.create(VMIMS, namespace, migration)

    def _evacuate(self) -> None:
        vmis, _ = self.store.list(VMIS, None)
        vmims, _ = self.store.list(VMIMS, None)
        in_flight = {(m["metadata"]["namespace"], m["spec"].get("vmiName")) for m in vmims
                     if m.get("status", {}).get("phase") not in policy.FINAL_PHASES}
        now = time.monotonic()
        kubevirt_cr = self._kubevirt_cr()
        for vmi in vmis:
            node = vmi.get("status", {}).get("evacuationNodeName")
            key = (vmi["metadata"]["namespace"], vmi["metadata"]["name"])
            if not node or key in in_flight or now < self._evacuation_backoff.get("/".join(key), 0.0):
                continue
            if policy.eviction_strategy(vmi, kubevirt_cr) == "External":
                continue  # an external controller acts on evacuationNodeName, not KubeVirt
            if vmi.get("status", {}).get("nodeName") != node:
                self.store.mutate(VMIS, key[0], key[1], lambda v: v["status"].pop("evacuationNodeName", None), "all")
                continue
            self._evacuation_backoff["/".join(key)] = now + self.config.evacuation_retry_s
            self.store.create(VMIMS, key[0], {
                "apiVersion": f"{KUBEVIRT}/v1", "kind": "VirtualMachineInstanceMigration",
                "metadata": {"generateName": "kubevirt-evacuation-", "annotations": {EVACUATION_ANNOTATION: node}},
                "spec": {"vmiName": key[1]},
            })


# ---------------------------------------------------------------------- pods and helpers


def launcher_pod(vmi: Obj, node: str | None) -> Obj:
    """A virt-launcher pod for a VMI, Running on `node`, or Pending and unbound when node is None."""
    meta = vmi["metadata"]
    pod: Obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": f"virt-launcher-{meta['name']}-",
            "labels": {LAUNCHER_LABEL: "virt-launcher", "kubevirt.io/created-by": meta.get("uid", ""),
                       VMI_NAME_LABEL: meta["name"], "kubevirt.io/domain": meta["name"]},
            "annotations": {"kubevirt.io/domain": meta["name"]},
            "ownerReferences": [{"apiVersion": f"{KUBEVIRT}/v1", "kind": "VirtualMachineInstance",
                                 "name": meta["name"], "uid": meta.get("uid", ""), "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {"containers": [{"name": "compute", "image": "quay.io/kubevirt/virt-launcher:v1.9.0"}],
                 "restartPolicy": "Never", "nodeSelector": {"kubevirt.io/schedulable": "true"}},
        "status": {"phase": "Pending"},
    }
    if node:
        _bind_pod(pod, node)
        _run_pod(pod, node)
    return pod


def _shut_down(vmi: Obj) -> None:
    status = vmi.setdefault("status", {})
    status["phase"] = "Failed"
    status["conditions"] = [{"type": "Ready", "status": "False", "reason": "PodTerminating",
                             "lastTransitionTime": _now_rfc3339()}]
    status.setdefault("phaseTransitionTimestamps", []).append(
        {"phase": "Failed", "phaseTransitionTimestamp": _now_rfc3339()})


def _start_vmi(vmi: Obj, node: str, pod: Obj) -> None:
    vmi["status"] = running_vmi_status(vmi, node, pod)
    vmi["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = node


def running_vmi_status(vmi: Obj, node: str, pod: Obj) -> Obj:
    """The status virt-handler reports for a VMI running on `node`; LiveMigratable follows its volumes."""
    migratable, reason, message = _migratability(vmi)
    now = _now_rfc3339()
    condition = {"type": "LiveMigratable", "status": "True" if migratable else "False", "lastTransitionTime": now}
    if not migratable:
        condition.update(reason=reason, message=message)
    interfaces = vmi.get("spec", {}).get("domain", {}).get("devices", {}).get("interfaces") or [{"name": "default"}]
    return {
        "phase": "Running", "nodeName": node, "qosClass": "Guaranteed",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                       condition],
        "interfaces": [{"name": interfaces[0]["name"], "ipAddress": "10.0.2.2", "infoSource": "domain"}],
        "activePods": {pod["metadata"]["uid"]: node},
        "launcherContainerImageVersion": "quay.io/kubevirt/virt-launcher:v1.9.0",
        "phaseTransitionTimestamps": [{"phase": "Running", "phaseTransitionTimestamp": _now_rfc3339()}],
    }


def _migratability(vmi: Obj) -> tuple[bool, str, str]:
    """KubeVirt's LiveMigratable rules the lab models: shared (RWX) PVCs only, no bridge on the pod network."""
    for interface in vmi.get("spec", {}).get("domain", {}).get("devices", {}).get("interfaces") or []:
        if "bridge" in interface:
            return False, "InterfaceNotLiveMigratable", "cannot migrate VMI which does not use masquerade or passt"
    access = (vmi["metadata"].get("annotations") or {}).get(KNOB + "pvc-access-mode", "ReadWriteMany")
    for volume in vmi.get("spec", {}).get("volumes") or []:
        if "persistentVolumeClaim" in volume and access != "ReadWriteMany":
            claim = volume["persistentVolumeClaim"]["claimName"]
            return False, "DisksNotLiveMigratable", f"cannot migrate VMI: PVC {claim} is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)"
    return True, "", ""


def _is_launcher(pod: Obj) -> bool:
    return (pod["metadata"].get("labels") or {}).get(LAUNCHER_LABEL) == "virt-launcher"


def _bind_pod(pod: Obj, node: str) -> None:
    pod["spec"]["nodeName"] = node
    pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}


def _run_pod(pod: Obj, node: str) -> None:
    pod["spec"]["nodeName"] = node
    pod["status"] = {
        "phase": "Running", "hostIP": _node_address(node), "podIP": "10.244.0.10", "startTime": _now_rfc3339(),
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "compute", "ready": True, "restartCount": 0,
                               "image": "quay.io/kubevirt/virt-launcher:v1.9.0", "imageID": "",
                               "state": {"running": {"startedAt": _now_rfc3339()}}}],
    }


def _unschedulable(pod: Obj, message: str) -> None:
    pod["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}


def _complete_pod(pod: Obj) -> None:
    pod["status"]["phase"] = "Succeeded"
    for status in pod["status"].get("containerStatuses", []):
        status["ready"] = False
        status["state"] = {"terminated": {"exitCode": 0, "reason": "Completed"}}


def _node_address(node: str) -> str:
    digits = "".join(ch for ch in node if ch.isdigit()) or "0"
    return f"192.168.122.{10 + int(digits) % 200}"


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="microseconds")


def _sleep_until(deadline: float) -> None:
    """Sleep to a monotonic deadline; the last stretch is spun, as a sleep may overshoot by a scheduler tick."""
    while (remaining := deadline - time.monotonic()) > SPIN_S:
        time.sleep(remaining - SPIN_S)
    while time.monotonic() < deadline:
        pass


def _wait_until_stopped(pid: int, timeout_s: float) -> bool:
    """Poll /proc/PID/stat until the process state is stopped ("T"), for at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in (b"T", b"t"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0001)


def _signal(pid: int, sig: signal.Signals) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
