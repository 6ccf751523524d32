"""The lab's virt-handler and virt-controller metrics: a Prometheus text endpoint, `GET /metrics`, on 127.0.0.1.

Names, labels and when a series exists follow KubeVirt's source (pkg/monitoring/metrics/):
  virt-handler, domainstats/dirty_rate_*.go (v1.6+): kubevirt_vmi_dirty_rate_bytes_per_second{node,namespace,name}
    for each Running VMI that is not migrating (its migrationState has a start and is neither completed nor
    failed); libvirt reports whole MiB/s (KubeVirt multiplies MegabytesPerSecond by 1024 x 1024), so the lab
    reports its modelled rate rounded down to a whole MiB/s.
  virt-handler, migrationdomainstats: while the guest's memory is copied, on the source node,
    kubevirt_vmi_migration_data_bytes_total, _data_processed_bytes, _data_remaining_bytes,
    _dirty_memory_rate_bytes, _memory_transfer_rate_bytes {node,namespace,name}, from the lab's pre-copy model.
  virt-controller, vmistats_collector.go: kubevirt_vmi_migration_start_time_seconds{node,namespace,name,
    migration_name} and _end_time_seconds{..., status} from the VMI's migrationState, in whole seconds;
    migrationstats_collector.go: kubevirt_vmi_migrations_in_{pending,scheduling,unset,running}_phase and
    kubevirt_vmi_migration_succeeded / _failed {vmi,vmim,namespace}.
A cluster serves these from two components; the lab's one process serves both. An empty label value is left
out, as KubeVirt's operator-observability toolkit does.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, NamedTuple

from livedrill.metrics.encode import render_text
from livedrill.metrics.samples import Sample
from livedrill_lab.kube import cluster
from livedrill_lab.kube.cluster import VMIMS, VMIS, Obj
from livedrill_lab.kube.config import ControllerConfig
from livedrill_lab.kube.migration import LiveCopy, knobs_of, modelled_dirty_rate
from livedrill_lab.kube.precopy import transfer_at
from livedrill_lab.kube.store import Store

MIB = 1024**2
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (type, help), in KubeVirt's words.
FAMILIES: dict[str, tuple[str, str]] = {
    "kubevirt_vmi_dirty_rate_bytes_per_second": ("gauge", "Guest dirty-rate in bytes per second."),
    "kubevirt_vmi_migration_data_bytes_total": ("counter", "The total Guest OS data to be migrated to the new VM."),
    "kubevirt_vmi_migration_data_processed_bytes": ("gauge", "The total Guest OS data processed and migrated to the new VM."),
    "kubevirt_vmi_migration_data_remaining_bytes": ("gauge", "The remaining guest OS data to be migrated to the new VM."),
    "kubevirt_vmi_migration_dirty_memory_rate_bytes": ("gauge", "The rate of memory being dirty in the Guest OS."),
    "kubevirt_vmi_migration_memory_transfer_rate_bytes": ("gauge", "The rate at which the memory is being transferred."),
    "kubevirt_vmi_migration_start_time_seconds": ("gauge", "The time at which the migration started."),
    "kubevirt_vmi_migration_end_time_seconds": ("gauge", "The time at which the migration ended."),
    "kubevirt_vmi_migrations_in_pending_phase": ("gauge", "Number of current pending migrations."),
    "kubevirt_vmi_migrations_in_scheduling_phase": ("gauge", "Number of current scheduling migrations."),
    "kubevirt_vmi_migrations_in_unset_phase": ("gauge", "Number of current unset migrations."),
    "kubevirt_vmi_migrations_in_running_phase": ("gauge", "Number of current running migrations."),
    "kubevirt_vmi_migration_succeeded": ("gauge", "Indicates if the VMI migration succeeded."),
    "kubevirt_vmi_migration_failed": ("gauge", "Indicates if the VMI migration failed."),
}
# virt-controller's count of "running" migrations takes every phase between scheduled and done.
RUNNING_PHASES = frozenset({"Running", "Scheduled", "PreparingTarget", "TargetReady", "WaitingForSync", "Synchronizing"})


class Series(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


def _unix(rfc3339: str) -> float:
    return float(int(datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()))


def migrating(vmi: Obj) -> bool:
    state = vmi.get("status", {}).get("migrationState") or {}
    return bool(state.get("startTimestamp")) and not state.get("completed") and not state.get("failed")


def vmi_series(vmi: Obj, dirty_rate: float, vmim_names: dict[str, str]) -> list[Series]:
    """Pure: one VMI's dirty rate (virt-handler) and its migration's start and end (virt-controller)."""
    status = vmi.get("status", {})
    ids = {"node": status.get("nodeName", ""), "namespace": vmi["metadata"]["namespace"], "name": vmi["metadata"]["name"]}
    series = []
    if status.get("phase") == "Running" and not migrating(vmi):
        series.append(Series("kubevirt_vmi_dirty_rate_bytes_per_second", ids, float(math.floor(dirty_rate / MIB) * MIB)))
    state = status.get("migrationState") or {}
    migration = {**ids, "migration_name": vmim_names.get(state.get("migrationUid", ""), "")}
    if state.get("startTimestamp"):
        series.append(Series("kubevirt_vmi_migration_start_time_seconds", migration, _unix(state["startTimestamp"])))
    if state.get("endTimestamp"):
        outcome = ("failed" if state.get("failed") else "succeeded") if state.get("completed") else ""
        series.append(Series("kubevirt_vmi_migration_end_time_seconds", {**migration, "status": outcome},
                             _unix(state["endTimestamp"])))
    return series


def migration_phase_series(vmims: list[Obj]) -> list[Series]:
    """Pure: virt-controller's in-flight counts and each finished migration's outcome."""
    counts = {"pending": 0, "scheduling": 0, "unset": 0, "running": 0}
    series = []
    for vmim in vmims:
        phase = vmim.get("status", {}).get("phase", "")
        ids = {"vmi": vmim["spec"].get("vmiName", ""), "vmim": vmim["metadata"]["name"],
               "namespace": vmim["metadata"]["namespace"]}
        if phase == "Pending":
            counts["pending"] += 1
        elif phase == "Scheduling":
            counts["scheduling"] += 1
        elif phase == "":
            counts["unset"] += 1
        elif phase in RUNNING_PHASES:
            counts["running"] += 1
        elif phase == "Succeeded":
            series.append(Series("kubevirt_vmi_migration_succeeded", ids, 1.0))
        elif phase == "Failed":
            series.append(Series("kubevirt_vmi_migration_failed", ids, 1.0))
    return series + [Series(f"kubevirt_vmi_migrations_in_{name}_phase", {}, float(n)) for name, n in counts.items()]


def live_copy_series(copy: LiveCopy, now: float) -> list[Series]:
    """Pure: virt-handler's transfer figures of a migration `now - copy.started` seconds into its live copy."""
    ids = {"node": copy.source_node, "namespace": copy.namespace, "name": copy.vmi}
    processed, remaining = transfer_at(copy.inputs, copy.plan, now - copy.started)
    return [Series("kubevirt_vmi_migration_data_bytes_total", ids, float(copy.inputs.memory_bytes)),
            Series("kubevirt_vmi_migration_data_processed_bytes", ids, processed),
            Series("kubevirt_vmi_migration_data_remaining_bytes", ids, remaining),
            Series("kubevirt_vmi_migration_dirty_memory_rate_bytes", ids, copy.inputs.dirty_rate_bytes_per_s),
            Series("kubevirt_vmi_migration_memory_transfer_rate_bytes", ids, copy.inputs.bandwidth_bytes_per_s)]


def exposition(series: list[Series]) -> str:
    """Pure: the Prometheus text format (livedrill's encoder), a HELP and TYPE block per family present; an empty
    label value is left out, as Prometheus reads it."""
    return render_text((Sample(name=s.name, labels={k: v for k, v in s.labels.items() if v}, value=s.value,
                               timestamp_ms=0) for s in series), with_timestamps=False, catalogue=FAMILIES)


def scrape(store: Store, config: ControllerConfig, live: list[LiveCopy], now: float) -> str:
    """What a scrape sees now: the store's VMIs and VMIMs, and the live copies under way."""
    vmis, _ = store.list(VMIS, None)
    vmims, _ = store.list(VMIMS, None)
    names = {m["metadata"]["uid"]: m["metadata"]["name"] for m in vmims}
    series = []
    for vmi in vmis:
        settings = cluster.migration_settings(store, vmi)
        series += vmi_series(vmi, modelled_dirty_rate(knobs_of(vmi), config, settings), names)
    series += migration_phase_series(vmims)
    for copy in live:
        series += live_copy_series(copy, now)
    return exposition(series)


class HandlerMetricsServer(ThreadingHTTPServer):
    """`GET /metrics` on its own loopback port (plain HTTP: Prometheus scrapes it without the API's token)."""

    daemon_threads = True

    def __init__(self, host: str, store: Store, config: ControllerConfig, live: Callable[[], list[LiveCopy]]):
        super().__init__((host, 0), _MetricsHandler)
        self.page = lambda: scrape(store, config, live(), time.monotonic())
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="virt-handler-metrics", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _MetricsHandler(BaseHTTPRequestHandler):
    server: HandlerMetricsServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass  # a scrape a second would drown the lab's log

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404, "only /metrics here")
            return
        body = self.server.page().encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
