"""KubeVirt adapter: the one class that talks to a cluster through the `kubernetes` client.

Every call carries an explicit timeout and goes through the one error classifier with a bounded
retry. Mutations are reconciled from what the cluster shows afterwards, never from their return value:
a create that timed out may still have created the object.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from livedrill.drain import DrainSettings
from livedrill.errors import InputError, PlatformError, RetryPolicy, UndoNotObserved, call_with_retry
from livedrill.forecast import MigrationFigures
from livedrill.metrics.config import PrometheusQuery
from livedrill.metrics.kubevirt import PrometheusDirtyRateMeter
from livedrill.outcomes import CheckResult, CheckStatus, utcnow
from livedrill.platforms.base import (Capabilities, MigrationHandle, MigrationObservation, MigrationPhase,
                                      RegisterCompensation, UndoAction, VMPreflight, VMState)
from livedrill.platforms.kubevirt.api import KV_GROUP, KV_VERSION, MIGRATIONS_GROUP, MIGRATIONS_VERSION, translate_error
from livedrill.platforms.kubevirt.checks import (CheckPolicy, ClusterObjects, migration_limits, missing_vmi_check, vm_checks,
                                                 vmi_memory_gib, vmi_running_check)
from livedrill.platforms.kubevirt.config import KubeVirtPlatform
from livedrill.platforms.kubevirt.drain import KubeVirtDrain
from livedrill.platforms.kubevirt.postchecks import kubevirt_migration_figures, kubevirt_postchecks
from livedrill.spec import DrillSpec, TargetedMode, VMRef

T = TypeVar("T")
RUN_LABEL = "livedrill.io/run-id"


def load_client() -> None:
    """Import the client classes the adapter uses: kubernetes.client imports its APIs and models on first
    attribute access, 2.4 s of a drill's pre-flight measured on 2 shared CPUs (pyinstrument)."""
    k8s.CoreV1Api, k8s.CustomObjectsApi  # noqa: B018 - the access is the import


class KubeVirtAdapter:
    def __init__(self, platform: KubeVirtPlatform, *, run_id: str = "", call_deadline_s: float | None = None,
                 poll_interval_s: float = 0.1, metrics: PrometheusQuery | None = None):
        self.platform = platform
        # The guest's dirty rate is virt-handler's metric, read from the cluster's Prometheus (the spec's
        # metrics.kubevirt): the KubeVirt API has no dirty-rate call. Without it the meter says so.
        self.dirty_rate_meter = PrometheusDirtyRateMeter(metrics)
        self.run_id = run_id
        self.timeout = platform.request_timeout_s
        self.retry = RetryPolicy(deadline_s=call_deadline_s if call_deadline_s is not None
                                 else platform.call_retry_deadline_s)
        self.poll_interval_s = poll_interval_s
        try:
            self.api_client = k8s_config.new_client_from_config(
                config_file=str(platform.kubeconfig) if platform.kubeconfig else None,
                context=platform.context, persist_config=False)
        except (ConfigException, OSError) as exc:
            raise InputError(f"platform.kubeconfig: cannot load {platform.kubeconfig or 'the default kubeconfig'}"
                             f" (context {platform.context!r}): {exc}") from None
        # The classifier decides about retries; urllib3's own silent retries would hide faults and time.
        self.api_client.configuration.retries = False
        self.core = k8s.CoreV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)

    # ------------------------------------------------------------ plumbing

    def call(self, describe: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One API call with the per-call timeout, its errors classified, transient ones retried within the deadline."""
        kwargs.setdefault("_request_timeout", self.timeout)

        def once() -> T:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - translated to livedrill's own errors
                raise translate_error(exc, describe) from exc

        return call_with_retry(once, self.retry, describe=describe)

    def _get_or_none(self, describe: str, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return self.call(describe, fn, *args)
        except PlatformError as exc:
            if exc.status == 404:
                return None
            raise

    def close(self) -> None:
        self.api_client.close()

    def capabilities(self) -> Capabilities:
        return Capabilities(kind="kubevirt", watch=self.watch_migration, drain=self.drain,
                            dirty_rate_meter=self.dirty_rate_meter, migration_figures=self)

    def drain(self, settings: DrainSettings, cancel_timeout_s: float) -> KubeVirtDrain:
        return KubeVirtDrain(self, settings, cancel_timeout_s=cancel_timeout_s)

    # ------------------------------------------------------------ reads

    def get_vmi(self, vm: VMRef) -> dict | None:
        return self._get_or_none(f"get vmi {vm}", self.custom.get_namespaced_custom_object, KV_GROUP, KV_VERSION,
                                 vm.namespace, "virtualmachineinstances", vm.name)

    def get_vmim(self, namespace: str, name: str) -> dict | None:
        return self._get_or_none(f"get vmim {namespace}/{name}", self.custom.get_namespaced_custom_object, KV_GROUP,
                                 KV_VERSION, namespace, "virtualmachineinstancemigrations", name)

    def list_vmims(self, namespace: str, label_selector: str = "") -> list[dict]:
        result = self.call(f"list vmims in {namespace}", self.custom.list_namespaced_custom_object, KV_GROUP, KV_VERSION,
                            namespace, "virtualmachineinstancemigrations", label_selector=label_selector)
        return result.get("items", [])

    def list_nodes(self) -> list[dict]:
        nodes = self.call("list nodes", self.core.list_node)
        return self.api_client.sanitize_for_serialization(nodes).get("items", [])

    def kubevirt_cr(self) -> dict | None:
        items = self.call("list kubevirt CRs", self.custom.list_custom_object_for_all_namespaces,
                           KV_GROUP, KV_VERSION, "kubevirts").get("items", [])
        return items[0] if items else None

    def get_vm(self, vm: VMRef) -> dict | None:
        return self._get_or_none(f"get vm {vm}", self.custom.get_namespaced_custom_object, KV_GROUP, KV_VERSION,
                                 vm.namespace, "virtualmachines", vm.name)

    def list_all(self, group: str, version: str, plural: str, label_selector: str = "",
                 cluster_scoped: bool = False) -> list[dict]:
        """Custom objects of every namespace (or cluster-scoped ones); an API the cluster lacks lists nothing."""
        describe = f"list {plural}.{group}"
        try:
            if cluster_scoped:
                result = self.call(describe, self.custom.list_cluster_custom_object, group, version, plural,
                                    label_selector=label_selector)
            else:
                result = self.call(describe, self.custom.list_custom_object_for_all_namespaces, group, version, plural,
                                    label_selector=label_selector)
        except PlatformError as exc:
            if exc.status == 404:
                return []
            raise
        return result.get("items", [])

    def list_pods(self, label_selector: str = "") -> list[dict]:
        pods = self.call("list pods", self.core.list_pod_for_all_namespaces, label_selector=label_selector)
        return self.api_client.sanitize_for_serialization(pods).get("items", [])

    def list_pvcs(self, namespace: str | None = None) -> list[dict]:
        if namespace:
            claims = self.call(f"list pvcs in {namespace}", self.core.list_namespaced_persistent_volume_claim, namespace)
        else:
            claims = self.call("list pvcs", self.core.list_persistent_volume_claim_for_all_namespaces)
        return self.api_client.sanitize_for_serialization(claims).get("items", [])

    def list_namespaces(self) -> list[dict]:
        namespaces = self.call("list namespaces", self.core.list_namespace)
        return self.api_client.sanitize_for_serialization(namespaces).get("items", [])

    def events_for(self, namespace: str, names: set[str]) -> list[dict]:
        events = self.call(f"list events in {namespace}", self.core.list_namespaced_event, namespace)
        items = self.api_client.sanitize_for_serialization(events).get("items", [])
        return [e for e in items if e.get("involvedObject", {}).get("name") in names]

    def versions(self) -> dict[str, str]:
        info = self.call("get version", k8s.VersionApi(self.api_client).get_code)
        cr = self.kubevirt_cr() or {}
        return {"kubernetes": info.git_version,
                "kubevirt": cr.get("status", {}).get("observedKubeVirtVersion", "unknown")}

    def describe_vm(self, vm: VMRef) -> VMState:
        vmi = self.get_vmi(vm)
        if vmi is None:
            raise InputError(f"vms: VirtualMachineInstance {vm} not found in the cluster")
        return self._state(vm, vmi)

    @staticmethod
    def _state(vm: VMRef, vmi: dict) -> VMState:
        return VMState(ref=vm, node=vmi.get("status", {}).get("nodeName"),
                       running=vmi.get("status", {}).get("phase") == "Running",
                       memory_gib=vmi_memory_gib(vmi), raw={"vmi": vmi})

    # ------------------------------------------------------------ pre-flight

    def preflight(self, spec: DrillSpec, vm: VMRef) -> VMPreflight:
        vmi = self.get_vmi(vm)
        if vmi is None:
            return VMPreflight(checks=[missing_vmi_check(vm, self.get_vm(vm))], before=None)
        target = spec.mode.target_node if isinstance(spec.mode, TargetedMode) else None
        objects = self.cluster_objects(vm.namespace)
        checks = vm_checks(CheckPolicy.from_spec(spec), vm, vmi, objects, target)
        running = vmi_running_check(vm, vmi).status is not CheckStatus.FAIL
        return VMPreflight(checks=checks, before=self._state(vm, vmi) if running else None,
                           limits=migration_limits(vmi, objects, spec.preflight.core_tier_selector))

    def cluster_objects(self, namespace: str | None = None) -> ClusterObjects:
        """One read of everything the checks judge (GETs and LISTs only). PVCs: `namespace`'s, or all."""
        return ClusterObjects(
            kubevirt_cr=self.kubevirt_cr() or {},
            nodes={n["metadata"]["name"]: n for n in self.list_nodes()},
            vmims=self.list_all(KV_GROUP, KV_VERSION, "virtualmachineinstancemigrations"),
            pods=self.list_pods(),
            pvcs=self.list_pvcs(namespace),
            policies=self.list_all(MIGRATIONS_GROUP, MIGRATIONS_VERSION, "migrationpolicies", cluster_scoped=True),
            namespaces={n["metadata"]["name"]: n for n in self.list_namespaces()},
            now=utcnow())

    # ------------------------------------------------------------ migration

    def start_migration(self, vm: VMRef, target: str | None, register: RegisterCompensation) -> MigrationHandle:
        vmi = self.get_vmi(vm)
        if vmi is None:
            raise InputError(f"vms: VirtualMachineInstance {vm} not found in the cluster")
        source = vmi.get("status", {}).get("nodeName", "")
        body = vmim_manifest(vm, target, self.run_id)
        try:
            created = self.call(f"create migration for {vm}", self.custom.create_namespaced_custom_object, KV_GROUP,
                                 KV_VERSION, vm.namespace, "virtualmachineinstancemigrations", body)
        except PlatformError as exc:
            if not exc.transient:
                raise
            created = None  # the create may have landed although we saw no answer: look for it
        if created is None or not created.get("metadata", {}).get("name"):
            mine = self.list_vmims(vm.namespace, label_selector=f"{RUN_LABEL}={self.run_id}")
            if not mine:
                raise PlatformError(f"create migration for {vm}: no VirtualMachineInstanceMigration was created")
            created = mine[-1]
        meta = created["metadata"]
        register("cancel-migration", {"namespace": vm.namespace, "name": meta["name"], "uid": meta.get("uid"),
                                      "vmi": vm.name, "source": source})
        return MigrationHandle(vm=vm, platform_id=meta["name"], source=source, target=target, uid=meta.get("uid"))

    def observe_migration(self, handle: MigrationHandle) -> MigrationObservation:
        vmim = self.get_vmim(handle.vm.namespace, handle.platform_id)
        vmi = self.get_vmi(handle.vm) or {}
        state = vmi.get("status", {}).get("migrationState") or {}
        if vmim is None:
            return MigrationObservation(phase=MigrationPhase.DELETED, terminal=True, succeeded=False, source=handle.source,
                                        target=state.get("targetNode"), failure_reason="the migration object is gone",
                                        raw={"vmi": vmi})
        phase = vmim.get("status", {}).get("phase") or MigrationPhase.PENDING
        return MigrationObservation(
            phase=phase, terminal=phase in MigrationPhase.TERMINAL, succeeded=phase == MigrationPhase.SUCCEEDED,
            source=state.get("sourceNode") or handle.source, target=state.get("targetNode"),
            failure_reason=state.get("failureReason") if phase == MigrationPhase.FAILED else None,
            raw={"vmim": vmim, "vmi": vmi})

    def watch_migration(self, handle: MigrationHandle) -> "MigrationWatch":
        """A background watch of the migration object: `changed` fires on every event, so the loop reacts at once."""
        return MigrationWatch(self, handle.vm.namespace, handle.platform_id)

    def cancel_migration(self, handle: MigrationHandle, timeout_s: float) -> str:
        return self.cancel_by_params({"namespace": handle.vm.namespace, "name": handle.platform_id,
                                      "uid": handle.uid, "vmi": handle.vm.name, "source": handle.source},
                                     timeout_s=timeout_s)

    def cancel_by_params(self, params: dict[str, Any], timeout_s: float) -> str:
        """Cancel = delete the VMIM, then wait until the VMI shows the migration over. Idempotent."""
        ns, name, vmi_ref = params["namespace"], params["name"], VMRef(namespace=params["namespace"], name=params["vmi"])
        vmim = self.get_vmim(ns, name)
        if vmim is not None and vmim.get("status", {}).get("phase") in MigrationPhase.TERMINAL and \
                not vmim.get("metadata", {}).get("deletionTimestamp"):
            phase = vmim["status"]["phase"]
            vmi = self.get_vmi(vmi_ref) or {}
            return f"nothing to cancel: migration {name} had already {phase}; VM on {vmi.get('status', {}).get('nodeName')}"
        if vmim is not None:
            try:
                self.call(f"delete vmim {ns}/{name}", self.custom.delete_namespaced_custom_object, KV_GROUP, KV_VERSION,
                           ns, "virtualmachineinstancemigrations", name)
            except PlatformError as exc:
                if exc.status != 404:
                    raise
        deadline = time.monotonic() + timeout_s
        while True:
            vmi = self.get_vmi(vmi_ref) or {}
            state = vmi.get("status", {}).get("migrationState") or {}
            settled = abort_settled(state, params.get("uid"))
            if settled is not None and self.get_vmim(ns, name) is None:
                return f"{settled}; VM on {vmi.get('status', {}).get('nodeName')} ({vmi.get('status', {}).get('phase')})"
            if time.monotonic() >= deadline:
                raise UndoNotObserved(
                    f"cancel of migration {ns}/{name} not observed within {timeout_s:g} s (migrationState: {state})",
                    manual_action=f"finish the abort of migration {ns}/{name} by hand (its object was deleted, the "
                                  f"abort not seen to end): watch `kubectl get vmi -n {ns} {vmi_ref.name} -o "
                                  f"jsonpath='{{.status.migrationState}}'` until it shows abortStatus Succeeded (VM "
                                  f"stays on {params.get('source')}) or completed (VM moved), then confirm the VM has "
                                  f"exactly one running virt-launcher pod and no migration of it is left in {ns}")
            time.sleep(self.poll_interval_s)

    def undo_actions(self, abort_timeout_s: float) -> dict[str, UndoAction]:
        def cancel_migration(params: dict[str, Any]) -> str:
            return self.cancel_by_params(params, timeout_s=abort_timeout_s)

        return {"cancel-migration": cancel_migration,
                **KubeVirtDrain(self, cancel_timeout_s=abort_timeout_s).undo_actions()}

    def postcheck(self, handle: MigrationHandle, before: VMState, phases_seen: list[str] | None = None) -> list[CheckResult]:
        vmim = self.get_vmim(handle.vm.namespace, handle.platform_id) or {}
        vmi = self.get_vmi(handle.vm) or {}
        phases = phases_seen if phases_seen is not None else [
            p.get("phase") for p in vmim.get("status", {}).get("phaseTransitionTimestamps", [])]
        return kubevirt_postchecks(vmim, vmi, before.node or "", phases)

    def migration_figures(self, handle: MigrationHandle) -> MigrationFigures | None:
        return kubevirt_migration_figures(self.get_vmi(handle.vm) or {})


class MigrationWatch:
    """Watches one VMIM from the last seen resourceVersion; on 410 Gone it relists and resumes from there.

    It only signals: the loop still reads the objects with GET, so a missed or duplicated event can never
    make the drill act on stale state (reconcile from observed state).
    """

    def __init__(self, adapter: KubeVirtAdapter, namespace: str, name: str, window_s: int = 5):
        self.adapter, self.namespace, self.name, self.window_s = adapter, namespace, name, window_s
        self.changed = threading.Event()
        self.resource_version: str | None = None
        self.events = 0
        self.restarts = 0
        self._stop = threading.Event()
        self._watch = k8s_watch.Watch()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def __enter__(self) -> "MigrationWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watch.stop()
        self._thread.join(timeout=self.window_s + self.adapter.timeout)

    def wait(self, timeout_s: float) -> bool:
        fired = self.changed.wait(timeout_s)
        self.changed.clear()
        return fired

    def stats(self) -> dict[str, Any]:
        return {"events": self.events, "restarts": self.restarts, "resource_version": self.resource_version}

    def _relist(self) -> None:
        listed = self.adapter.call(f"list vmims in {self.namespace}", self.adapter.custom.list_namespaced_custom_object,
                                    KV_GROUP, KV_VERSION, self.namespace, "virtualmachineinstancemigrations",
                                    field_selector=f"metadata.name={self.name}")
        self.resource_version = listed.get("metadata", {}).get("resourceVersion")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                    self.changed.set()
                stream = self._watch.stream(
                    self.adapter.custom.list_namespaced_custom_object, KV_GROUP, KV_VERSION, self.namespace,
                    "virtualmachineinstancemigrations", field_selector=f"metadata.name={self.name}",
                    resource_version=self.resource_version, timeout_seconds=self.window_s,
                    _request_timeout=(self.adapter.timeout, self.window_s + self.adapter.timeout))
                for event in stream:
                    if event.get("type") == "ERROR":
                        raise ApiException(status=event["raw_object"].get("code"), reason="watch error")
                    self.resource_version = event["raw_object"].get("metadata", {}).get("resourceVersion")
                    self.events += 1
                    self.changed.set()
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                self.restarts += 1
                if exc.status == 410:
                    self.resource_version = None  # too old: relist, then resume from the list's version
                else:
                    self._stop.wait(self.adapter.poll_interval_s)
            except Exception:  # noqa: BLE001 - connection dropped: resume from the last version seen
                self.restarts += 1
                self._stop.wait(self.adapter.poll_interval_s)


# ------------------------------------------------------------------ pure helpers (table-tested)


def vmim_manifest(vm: VMRef, target: str | None, run_id: str) -> dict:
    spec: dict[str, Any] = {"vmiName": vm.name}
    if target:
        spec["addedNodeSelector"] = {"kubernetes.io/hostname": target}
    labels = {"kubevirt.io/vmi-name": vm.name, "app.kubernetes.io/managed-by": "livedrill"}
    if run_id:
        labels[RUN_LABEL] = run_id
    return {"apiVersion": f"{KV_GROUP}/{KV_VERSION}", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"generateName": f"livedrill-{vm.name}-"[:58], "namespace": vm.namespace, "labels": labels},
            "spec": spec}


def abort_settled(state: dict, uid: str | None) -> str | None:
    """Has a cancelled migration settled on the VMI? Returns what happened, or None while still in flight."""
    if not state or (uid and state.get("migrationUid") and state.get("migrationUid") != uid):
        return "cancelled before the migration started on the VMI"
    if state.get("abortStatus") == "Succeeded" or (state.get("completed") and state.get("failed")):
        return "migration aborted (abortStatus Succeeded)"
    if state.get("abortStatus") == "Failed":
        return "abort failed: the migration completed anyway"
    if state.get("completed") and not state.get("failed"):
        return "the migration completed before the cancel took effect"
    return None
