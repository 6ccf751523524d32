"""The libvirt pre-flight judgments: pure functions of the facts the adapter gathered (no libvirt here).

The adapter reads placement, domain XML, host info, a CPU comparison and job stats; each function
below turns one set of those facts into one named CheckResult, as KubeVirt's checks.py does for VMIs.
Hardware isolation and pinning are judged in compliance.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from livedrill.forecast import MIB, MigrationFigures, MigrationLimits
from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.platforms.libvirt.config import LibvirtPlatform

# What libvirt's CPU comparison answers (virCPUCompareResult), by name: the adapter maps the number.
CPU_RUNS_GUEST = ("identical", "superset")


def check(name: str, ok: bool, subject: str, message: str, remedy: str | None, evidence: dict[str, Any]) -> CheckResult:
    return CheckResult(name=name, status=CheckStatus.PASS if ok else CheckStatus.FAIL, message=message,
                       remedy=None if ok else remedy, subject=subject, evidence=evidence)


def domain_active_check(active_on: list[str], placement: dict[str, Any], subject: str) -> CheckResult:
    ok = len(active_on) == 1
    return check("domain-active", ok, subject,
                 f"active on exactly one host: {active_on[0]}" if ok else
                 f"the domain must be active on exactly one host, active on: {active_on or 'none'}",
                 "start the domain on one host (and only one)", {"placement": placement})


def persistent_check(persistent: bool, source: str, subject: str) -> CheckResult:
    return check("domain-persistent", persistent, subject,
                 f"persistently defined on {source}" if persistent else
                 f"transient on {source}: a persistent definition must exist to migrate with persist/undefine",
                 "virsh define the domain's XML", {"persistent": persistent})


def pick_target(requested: str | None, source: str, hosts: list[str]) -> str | None:
    """The spec's target host, else the first other host; None when there is no other host."""
    return requested or next((h for h in hosts if h != source), None)


def target_host_check(target: str | None, source: str, subject: str) -> CheckResult | None:
    """A failing check when the target is the source (or missing); None when the target is usable."""
    if target is not None and target != source:
        return None
    return check("target-host", False, subject, f"target {target!r} is the host the VM runs on",
                 "choose another host in mode.target_node", {"source": source, "target": target})


@dataclass(frozen=True)
class TargetCapacity:
    """The target host's answer to getInfo/getFreeMemory, or why it gave none."""

    host: str
    free_memory_bytes: int = 0
    host_cpus: int = 0
    node_info: tuple | list | None = None
    unreachable: str | None = None


def capacity_check(target: TargetCapacity, guest_max_memory_kib: int, guest_vcpus: int, subject: str) -> CheckResult:
    if target.unreachable is not None:
        return check("target-reachable", False, subject, f"target host {target.host} unreachable: {target.unreachable}",
                     "check the host's libvirtd and the URI in platform.hosts", {"target": target.host})
    need = guest_max_memory_kib * 1024
    cpus_ok, mem_ok = guest_vcpus <= target.host_cpus, target.free_memory_bytes >= need
    return check("target-capacity", cpus_ok and mem_ok, subject,
                 f"{target.host} reachable; free memory {target.free_memory_bytes // 2**20} MiB for {need // 2**20} MiB, "
                 f"{target.host_cpus} CPUs for {guest_vcpus} vCPU(s)" + ("" if cpus_ok and mem_ok else ": not enough"),
                 "free memory/CPUs on the target or pick another one",
                 {"target": target.host, "free_memory_bytes": target.free_memory_bytes, "needed_bytes": need,
                  "host_cpus": target.host_cpus, "vcpus": guest_vcpus, "node_info": target.node_info})


def compares_host_cpu(cpu_mode: str | None, has_cpu_element: bool) -> bool:
    """host-passthrough/host-model guests (or no <cpu>) see the source host's CPU: compare the hosts, not the model."""
    return not has_cpu_element or cpu_mode in ("host-passthrough", "host-model")


@dataclass(frozen=True)
class CpuComparison:
    target: str
    compared: str  # which comparison libvirt made
    result: str | None = None  # identical, superset, incompatible (or libvirt's number as text)
    cpu_xml: str | None = None
    error: str | None = None  # the comparison itself failed


def cpu_check(facts: CpuComparison, cpu_mode: str | None, subject: str) -> CheckResult:
    evidence: dict[str, Any] = {"cpu_mode": cpu_mode, "target": facts.target, "compared": facts.compared}
    if facts.error is not None:
        return check("cpu-compatible", False, subject, f"CPU comparison on {facts.target} failed: {facts.error}",
                     "compare the CPU models by hand (virsh hypervisor-cpu-compare)", evidence)
    evidence.update(cpu_xml=facts.cpu_xml, result=facts.result)
    ok = facts.result in CPU_RUNS_GUEST
    return check("cpu-compatible", ok, subject, f"target {facts.target} CPU is {facts.result} to the guest's"
                 if ok else f"target {facts.target} cannot run the guest's CPU ({facts.result})",
                 "use a CPU model both hosts support (baseline) or another target", evidence)


def domain_disks(xml: str) -> list[dict[str, Any]]:
    """Every <disk> of the domain XML: type, device, source path, shareable."""
    disks = []
    for disk in ET.fromstring(xml).findall("devices/disk"):
        source = disk.find("source")
        path = None if source is None else (source.get("file") or source.get("dev") or source.get("name"))
        disks.append({"type": disk.get("type"), "device": disk.get("device"), "source": path,
                      "shareable": disk.find("shareable") is not None})
    return disks


def local_disks(disks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Disks backed by a file or block device on the host (network disks and CD-ROMs move with nothing)."""
    return [d for d in disks if d["type"] in ("file", "block") and d["source"] and d["device"] == "disk"]


def storage_check(disks: list[dict[str, Any]], copy_storage_all: bool, unknown_on_target: list[str],
                  subject: str) -> CheckResult:
    """`unknown_on_target`: local disk paths the target host's storage does not know (not shared)."""
    local = local_disks(disks)
    evidence = {"disks": disks, "copy_storage_all": copy_storage_all}
    if not local:
        return check("storage", True, subject, "no local disks to move" if not disks else
                     "all disks are network/shared storage", None, evidence)
    if copy_storage_all:
        return check("storage", True, subject, f"{len(local)} local disk(s) will be copied (copy_storage_all)",
                     None, evidence)
    return check("storage", not unknown_on_target, subject,
                 f"the target knows every disk path (shared storage): {[d['source'] for d in local]}"
                 if not unknown_on_target else
                 f"disk(s) {unknown_on_target} are local to the source and copy_storage_all is off",
                 "put the disks on shared storage or set platform.flags.copy_storage_all", evidence)


def no_job_check(job_running: bool, stats: dict[str, Any], subject: str) -> CheckResult:
    return check("no-job-running", not job_running, subject, "no job runs on the domain" if not job_running else
                 f"a job is already running on the domain (operation {stats.get('operation')})",
                 "wait for the running job to end or abort it (virsh domjobabort)", {"job_stats": stats})


def migration_limits(platform: LibvirtPlatform, disk_bytes: int) -> MigrationLimits:
    """What the adapter migrates a domain with (the convergence forecast's platform inputs): libvirt's bandwidth
    parameter is in MiB/s; the disks count only when copy-storage copies them."""
    flags = platform.flags
    return MigrationLimits(
        bandwidth_bytes_per_s=platform.bandwidth_mib_s * MIB if platform.bandwidth_mib_s else None,
        max_downtime_ms=platform.max_downtime_ms, auto_converge=flags.auto_converge, post_copy=flags.allow_post_copy,
        disk_bytes=disk_bytes if flags.copy_storage_all else 0, source="platform (libvirt flags and limits)")


def libvirt_migration_figures(completed: dict[str, Any], last_running: dict[str, Any]) -> MigrationFigures | None:
    """libvirt's completed-job statistics (virDomainGetJobStats with COMPLETED, read on the destination) as the
    figures set beside the forecast: time_elapsed and downtime in ms, data_processed in bytes, memory_iteration
    passes. The destination's figures leave out a copy-storage migration's disk (the NBD mirror ran on the source):
    its bytes come from the source's last running statistics. None when the destination keeps none (after
    post-copy, or no migration finished)."""
    elapsed_ms = completed.get("time_elapsed")
    if elapsed_ms is None:
        return None
    data = completed.get("data_processed")
    if data is not None and last_running.get("disk_processed"):
        data += last_running["disk_processed"]
    return MigrationFigures(migration_s=elapsed_ms / 1000.0, switchover_pause_ms=completed.get("downtime"),
                            data_bytes=data, memory_rounds=completed.get("memory_iteration"),
                            source="libvirt completed job statistics on the destination"
                                   + (", disk from the source's last running ones" if last_running.get("disk_processed")
                                      else ""))
