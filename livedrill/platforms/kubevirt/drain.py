"""Node drain on KubeVirt through the `kubernetes` client: cordon, evict, watch, cancel evacuations, uncordon.

Built on a KubeVirtAdapter (its API client, per-call timeout and bounded retry of reads). Evictions are
NOT retried by the call layer: KubeVirt answers a virt-launcher pod's eviction with HTTP 429 ("Eviction
triggered evacuation of VMI ...") when it starts evacuating the VMI, so every answer goes to
`livedrill.drain.classify_eviction` and the drain loop decides when to ask again.

Lists are read as raw JSON (`_preload_content=False`): a drain polls a hundred pods and VMIs, and the
client's model classes would cost more CPU than the API round trip.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from kubernetes import client as k8s

from livedrill.drain import (EVACUATION_ANNOTATION, DrainObservation, DrainSettings,
                            EvictionAnswer, classify_eviction, drain_preflight_checks, vmi_ref)
from livedrill.errors import PlatformError, UndoNotObserved, call_with_retry
from livedrill.outcomes import CheckResult
from livedrill.platforms.base import MigrationPhase, UndoAction
from livedrill.platforms.kubevirt.api import KV_GROUP, KV_VERSION, translate_error
from livedrill.platforms.kubevirt.checks import vmi_memory_gib
from livedrill.spec import DrainMode, DrillSpec, VMRef, migration_deadline_s

if TYPE_CHECKING:
    from livedrill.platforms.kubevirt.adapter import KubeVirtAdapter

Obj = dict[str, Any]
SUBRESOURCES = "/apis/subresources.kubevirt.io/v1"
MERGE_PATCH = "application/merge-patch+json"
NODE_LABEL = "kubevirt.io/nodeName"


@dataclass(frozen=True)
class EvictionResult:
    answer: EvictionAnswer
    message: str
    retry_after_s: float | None = None


class KubeVirtDrain:
    def __init__(self, adapter: "KubeVirtAdapter", settings: DrainSettings = DrainSettings(), *,
                 cancel_timeout_s: float):
        self.adapter = adapter
        self.settings = settings
        self.cancel_timeout_s = cancel_timeout_s
        self.policy = k8s.PolicyV1Api(adapter.api_client)

    # ------------------------------------------------------------ reads (raw JSON, retried per call)

    def _json(self, describe: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        response = self.adapter.call(describe, fn, *args, _preload_content=False, **kwargs)
        return json.loads(response.data)

    def node(self, name: str) -> Obj | None:
        try:
            return self._json(f"get node {name}", self.adapter.core.read_node, name)
        except PlatformError as exc:
            if exc.status == 404:
                return None
            raise

    def nodes(self) -> list[Obj]:
        return self._json("list nodes", self.adapter.core.list_node).get("items", [])

    def pods_on(self, node: str) -> list[Obj]:
        return self._json(f"list pods on {node}", self.adapter.core.list_pod_for_all_namespaces,
                          field_selector=f"spec.nodeName={node}").get("items", [])

    def vmis(self) -> list[Obj]:
        return self._json("list vmis", self.adapter.custom.list_cluster_custom_object, KV_GROUP, KV_VERSION,
                          "virtualmachineinstances").get("items", [])

    def vmis_on(self, node: str) -> list[Obj]:
        """VMIs labelled as running on `node` (KubeVirt keeps the label `kubevirt.io/nodeName` current)."""
        return self._json(f"list vmis on {node}", self.adapter.custom.list_cluster_custom_object, KV_GROUP, KV_VERSION,
                          "virtualmachineinstances", label_selector=f"{NODE_LABEL}={node}").get("items", [])

    def vmi(self, ref: VMRef) -> Obj | None:
        return self.adapter.get_vmi(ref)

    def vmims(self) -> list[Obj]:
        return self._json("list vmims", self.adapter.custom.list_cluster_custom_object, KV_GROUP, KV_VERSION,
                          "virtualmachineinstancemigrations").get("items", [])

    def pdbs(self) -> list[Obj]:
        """Every PodDisruptionBudget; a cluster (or lab) that does not serve policy/v1 PDBs has none."""
        try:
            return self._json("list poddisruptionbudgets",
                              self.policy.list_pod_disruption_budget_for_all_namespaces).get("items", [])
        except PlatformError as exc:
            if exc.status == 404:
                return []
            raise

    def observe(self, spec: DrillSpec, node: str) -> DrainObservation:
        vmis = [v for v in self.vmis() if v.get("status", {}).get("nodeName") == node]
        deadlines = {vmi_ref(v): migration_deadline_s(spec.budgets, vmi_memory_gib(v)) for v in vmis}
        return DrainObservation(node=node, nodes=self.nodes(), pods=self.pods_on(node), vmis=vmis,
                                kubevirt_cr=self.adapter.kubevirt_cr(), pdbs=self.pdbs(), deadlines_s=deadlines)

    def preflight(self, spec: DrillSpec) -> list[CheckResult]:
        mode = spec.mode
        assert isinstance(mode, DrainMode)
        obs = self.observe(spec, mode.node)
        return drain_preflight_checks(obs, spec.vms, ignore_daemonsets=mode.ignore_daemonsets,
                                      delete_emptydir_data=mode.delete_emptydir_data,
                                      allow_non_migratable=mode.allow_non_migratable, settings=self.settings)

    # ------------------------------------------------------------ cordon / uncordon (reconciled by read-back)

    def _set_unschedulable(self, node: str, value: bool) -> Obj:
        patch = {"spec": {"unschedulable": True if value else None}}
        try:
            self._json(f"{'cordon' if value else 'uncordon'} {node}", self.adapter.core.patch_node, node, patch,
                       _content_type=MERGE_PATCH)
        except PlatformError as exc:
            if not exc.transient:
                raise
            # The patch may have landed although no answer came back: the read below decides.
        observed = self.node(node)
        if observed is None:
            raise PlatformError(f"node {node} is gone", status=404, transient=False)
        if bool(observed.get("spec", {}).get("unschedulable")) != value:
            raise PlatformError(f"node {node}: spec.unschedulable is still {not value} after the patch", transient=False)
        return observed

    def cordon(self, node: str) -> Obj:
        return self._set_unschedulable(node, True)

    def uncordon(self, params: dict[str, Any]) -> str:
        """Undo of "cordon". Idempotent: an already schedulable node is left as it is."""
        node = params["node"]
        current = self.node(node)
        if current is None:
            return f"node {node} no longer exists: nothing to uncordon"
        if not current.get("spec", {}).get("unschedulable"):
            return f"node {node} was already schedulable"
        self._set_unschedulable(node, False)
        return f"node {node} uncordoned"

    # ------------------------------------------------------------ eviction (one attempt; the loop decides)

    def evict(self, namespace: str, pod: str) -> EvictionResult:
        body = k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=pod, namespace=namespace))
        try:
            response = self.adapter.core.create_namespaced_pod_eviction(
                pod, namespace, body, _preload_content=False, _request_timeout=self.adapter.timeout)
            response.read()  # releases the connection to the pool
        except Exception as exc:  # noqa: BLE001 - translated, then classified; KeyboardInterrupt is not an Exception
            error = translate_error(exc, f"evict pod {namespace}/{pod}")
            if not isinstance(error, PlatformError):
                raise error from exc
            return EvictionResult(classify_eviction(error.status, str(error)), str(error), error.retry_after_s)
        return EvictionResult(EvictionAnswer.EVICTED, f"pod {namespace}/{pod} evicted")

    # ------------------------------------------------------------ cancel an evacuation (undo of an eviction)

    def _cancel_subresource(self, namespace: str, vmi: str, node: str) -> int:
        """PUT .../evacuate/cancel (KubeVirt v1.8+); returns the HTTP status (404: not served)."""
        api = self.adapter.api_client
        method, url, headers, body, post = api.param_serialize(
            "PUT", SUBRESOURCES + "/namespaces/{namespace}/virtualmachineinstances/{name}/evacuate/cancel",
            path_params={"namespace": namespace, "name": vmi}, body={"evacuationNodeName": node},
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["BearerToken"])

        def once() -> int:
            try:
                response = api.call_api(method, url, headers, body, post, _request_timeout=self.adapter.timeout)
                response.read()
            except Exception as exc:  # noqa: BLE001 - translated to livedrill's errors
                raise translate_error(exc, f"cancel evacuation of {namespace}/{vmi}") from exc
            if response.status in (400, 404) or 200 <= response.status < 300:
                return response.status
            raise PlatformError(f"cancel evacuation of {namespace}/{vmi}: HTTP {response.status}: "
                                f"{response.data[:300]!r}", status=response.status)

        return call_with_retry(once, self.adapter.retry, describe=f"cancel evacuation of {namespace}/{vmi}")

    def _in_flight_evacuations(self, namespace: str, vmi: str, node: str) -> list[Obj]:
        return [m for m in self.adapter.list_vmims(namespace, label_selector=f"kubevirt.io/vmi-name={vmi}")
                if m.get("spec", {}).get("vmiName") == vmi
                and (m["metadata"].get("annotations") or {}).get(EVACUATION_ANNOTATION) == node
                and m.get("status", {}).get("phase") not in MigrationPhase.TERMINAL]

    def cancel_evacuation(self, params: dict[str, Any]) -> str:
        """Undo of an eviction that triggered an evacuation. Idempotent; judged from the VMI and its migrations."""
        namespace, name, node = params["namespace"], params["vmi"], params["node"]
        vmi = self.adapter.get_vmi(VMRef(namespace=namespace, name=name))
        if vmi is None:
            return f"VMI {namespace}/{name} no longer exists: nothing to cancel"
        status = vmi.get("status", {})
        if status.get("evacuationNodeName") != node:
            return (f"no evacuation from {node} to cancel: VM on {status.get('nodeName')} ({status.get('phase')}), "
                    f"evacuationNodeName={status.get('evacuationNodeName')!r}")
        served = self._cancel_subresource(namespace, name, node) != 404
        if not served:
            # KubeVirt before v1.8: deleting the migration aborts it, but evacuationNodeName stays and
            # KubeVirt starts another evacuation (uncordoning does not stop it: kubevirt#9585).
            for vmim in self._in_flight_evacuations(namespace, name, node):
                self.adapter.cancel_by_params({"namespace": namespace, "name": vmim["metadata"]["name"],
                                               "uid": vmim["metadata"].get("uid"), "vmi": name, "source": node},
                                              timeout_s=self.cancel_timeout_s)
            raise PlatformError(
                f"the cluster does not serve evacuate/cancel (KubeVirt < v1.8): the in-flight evacuation of "
                f"{namespace}/{name} was aborted, but evacuationNodeName={node} remains and KubeVirt will evacuate it "
                f"again; a human must decide (let it finish, or clear status.evacuationNodeName)", transient=False)
        deadline = time.monotonic() + self.cancel_timeout_s
        while self._in_flight_evacuations(namespace, name, node):
            if time.monotonic() >= deadline:
                raise UndoNotObserved(
                    f"evacuation of {namespace}/{name} still in flight {self.cancel_timeout_s:g} s after evacuate/cancel",
                    manual_action=f"finish the cancel of the evacuation of {namespace}/{name} by hand (evacuate/cancel "
                                  f"was accepted, its migration from {node} still runs): watch `kubectl get vmim -n "
                                  f"{namespace} -l kubevirt.io/vmi-name={name}` until none runs, then check where the "
                                  f"VM runs and that its status.evacuationNodeName is cleared")
            time.sleep(self.adapter.poll_interval_s)
        after = self.adapter.get_vmi(VMRef(namespace=namespace, name=name)) or {}
        where = after.get("status", {}).get("nodeName")
        return (f"evacuation cancelled; VM on {where} ({after.get('status', {}).get('phase')})" if where == node else
                f"evacuation cancelled too late: the VM had already moved to {where}")

    def undo_actions(self) -> dict[str, UndoAction]:
        """What KubeVirtAdapter.undo_actions() merges in: the undo of a cordon and of each triggered evacuation."""
        return {"uncordon": self.uncordon, "cancel-evacuation": self.cancel_evacuation}
