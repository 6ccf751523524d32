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

This module is the reconcile loop (which migrations start, and when; finished ones collected) and the
lifecycle. The jobs it composes have modules of their own, listed in kube/__init__.py: migration.py (one
migration's state machine), admission.py, eviction.py, scheduling.py and freezer.py.
"""

from __future__ import annotations

import functools
import threading
import time
import traceback

from livedrill_lab.kube import cluster, errors, policy, scheduling
from livedrill_lab.kube.admission import admit_migration
from livedrill_lab.kube.cluster import MIGRATION_FINALIZER, VMIMS, VMIS, Obj
from livedrill_lab.kube.config import ControllerConfig
from livedrill_lab.kube.eviction import Eviction
from livedrill_lab.kube.freezer import Freezer
from livedrill_lab.kube.migration import LiveCopy, Migration, finish_failed
from livedrill_lab.kube.store import Store


class VirtController:
    def __init__(self, store: Store, config: ControllerConfig):
        self.store = store
        self.config = config
        self.freezer = Freezer(config.workloads, config.freezes_file)
        self.eviction = Eviction(store, config.evacuation_retry_s)
        self._migration = Migration(store, config, self.freezer)
        self._stop = threading.Event()
        self._workers: dict[str, threading.Thread] = {}  # VMIM uid -> its migration thread
        self._aborts: dict[str, threading.Event] = {}  # VMIM uid -> abort requested
        self._sources: dict[str, str] = {}  # VMIM uid -> source node, while it runs
        self._worker_ended = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="virt-controller", daemon=True)
        store.add_admission_hook(functools.partial(admit_migration, store))

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
        self.freezer.thaw_all()

    # ------------------------------------------------------------------ what the API server asks (LabHooks)

    def freezes(self) -> list[Obj]:
        return self.freezer.freezes()

    def evict(self, namespace: str, pod_name: str, body: Obj) -> Obj:
        return self.eviction.evict(namespace, pod_name, body)

    def cancel_evacuation(self, namespace: str, vmi_name: str, body: Obj) -> Obj:
        return self.eviction.cancel_evacuation(namespace, vmi_name, body)

    def migrate_vm(self, namespace: str, vm_name: str, body: Obj) -> Obj:
        return self.eviction.migrate_vm(namespace, vm_name, body)

    # ------------------------------------------------------------------ what virt-handler's metrics report

    def live_copies(self) -> list[LiveCopy]:
        """The migrations whose guest's memory is being copied now (handler_metrics.py)."""
        return self._migration.live_copies()

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
                    cluster.remove_finalizer(self.store, vmim)
                continue
            if phase == "":
                cluster.set_phase(self.store, vmim, "Pending")
                continue
            if phase == "Pending":
                vmi = self.store.find(VMIS, vmim["metadata"]["namespace"], vmim["spec"]["vmiName"])
                if vmi is None:
                    finish_failed(self.store, vmim, None, "the VMI no longer exists")
                    continue
                source = vmi.get("status", {}).get("nodeName", "")
                if policy.may_start(source, running_sources, cluster.migration_settings(self.store, vmi)):
                    running_sources.append(source)
                    self._start_worker(vmim, source)
        scheduling.start_new_vmis(self.store)
        self.eviction.evacuate()
        self._collect_garbage(vmims)

    def _start_worker(self, vmim: Obj, source_node: str) -> None:
        uid = vmim["metadata"]["uid"]
        abort = threading.Event()
        thread = threading.Thread(target=self._run_worker, args=(vmim, abort), daemon=True,
                                  name=f"migration-{vmim['metadata']['name']}")
        with self._lock:
            self._aborts[uid] = abort
            self._workers[uid] = thread
            self._sources[uid] = source_node
        thread.start()

    def _run_worker(self, vmim: Obj, abort: threading.Event) -> None:
        uid = vmim["metadata"]["uid"]
        try:
            self._migration.run(vmim, abort)
        finally:
            with self._lock:
                self._workers.pop(uid, None)
                self._aborts.pop(uid, None)
                self._sources.pop(uid, None)
            self._worker_ended.set()

    def _collect_garbage(self, vmims: list[Obj]) -> None:
        by_vmi: dict[tuple[str, str], list[Obj]] = {}
        for vmim in vmims:
            by_vmi.setdefault((vmim["metadata"]["namespace"], vmim["spec"].get("vmiName", "")), []).append(vmim)
        for (namespace, _), group in by_vmi.items():
            for name in policy.finished_to_collect(group, self.config.finished_kept_per_vmi):
                self.store.delete(VMIMS, namespace, name)
