"""libvirt/KVM adapter: drills on plain KVM hosts through libvirt-python (what `virsh migrate` does).

- Hosts are reached by URI (qemu+ssh, qemu+tls, qemu+unix with a socket); every call is bounded
  (connection keepalive plus a timeout around each call, see connection.py).
- `start_migration` runs the blocking migrate call (peer-to-peer `migrateToURI3`, or managed `migrate3`
  when `flags.peer2peer` is false) in its own thread and returns at once.
- `observe_migration` is one step of the monitor: it reads the source's job stats, asks the pure
  decisions in `livedrill.migration_monitor` what to do (raise the allowed downtime, switch to post-copy,
  abort) and does it. When the migrate call has returned, the outcome is reconciled from what both hosts
  show (where is the domain active?), never from the call's return value, and the completed job stats
  (downtime, data, memory iterations) are read on the host that now runs the VM.
- `cancel_migration` aborts the job (never in post-copy) and waits until the VM runs on one host only.
VMRef.namespace is ignored for libvirt; VMRef.name is the domain name.
"""

from __future__ import annotations

import random
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import libvirt

from livedrill.errors import InputError, PlatformError, PlatformUnreachable, UndoNotObserved
from livedrill.forecast import DirtyRateReading, MigrationFigures, MigrationLimits, busiest_reading
from livedrill.migration_monitor import (
    Decision,
    GIB,
    MonitorAction,
    MonitorConfig,
    Progress,
    decide,
    downtime_due,
    downtime_steps,
    track_progress,
)
from livedrill.outcomes import CheckResult, CheckStatus, TimelineEvent, utcnow
from livedrill.platforms.base import (Capabilities, EmitEvent, MigrationHandle, MigrationObservation, MigrationPhase,
                                      RegisterCompensation, UndoAction, VMPreflight, VMState)
from livedrill.platforms.libvirt.checks import (
    CpuComparison,
    TargetCapacity,
    capacity_check,
    check,
    compares_host_cpu,
    cpu_check,
    domain_active_check,
    domain_disks,
    libvirt_migration_figures,
    local_disks,
    migration_limits,
    no_job_check,
    persistent_check,
    pick_target,
    storage_check,
    target_host_check,
)
from livedrill.platforms.libvirt.compliance import (
    STATE_NAMES,
    domain_xml_facts,
    gather_isolation_facts,
    judge_hardware_isolation,
    judge_pinning,
)
from livedrill.platforms.libvirt.connection import (
    LibvirtCallTimeout,
    LibvirtTimeouts,
    call_bounded,
    close_quietly,
    is_no_domain,
    is_transient,
    open_connection,
)
from livedrill.platforms.libvirt.touched import PAGE, ZERO_PAGE, guest_ram_ranges, sample_addresses, touched_estimate
from livedrill.platforms.libvirt.config import LibvirtHost, LibvirtPlatform
from livedrill.platforms.libvirt.dirtyrate import dirty_rate_reading
from livedrill.spec import Budgets, DrillSpec, TargetedMode, VMRef, migration_deadline_s

T = TypeVar("T")
POSTCOPY_STATES = {
    (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY),
}


def migration_flags(platform: LibvirtPlatform) -> int:
    f = platform.flags
    bits = {
        libvirt.VIR_MIGRATE_LIVE: f.live,
        libvirt.VIR_MIGRATE_PEER2PEER: f.peer2peer,
        libvirt.VIR_MIGRATE_PERSIST_DEST: f.persist_dest,
        libvirt.VIR_MIGRATE_UNDEFINE_SOURCE: f.undefine_source,
        libvirt.VIR_MIGRATE_NON_SHARED_DISK: f.copy_storage_all,
        libvirt.VIR_MIGRATE_ABORT_ON_ERROR: f.abort_on_error,
        libvirt.VIR_MIGRATE_AUTO_CONVERGE: f.auto_converge,
        libvirt.VIR_MIGRATE_POSTCOPY: f.allow_post_copy,
    }
    value = 0
    for bit, wanted in bits.items():
        if wanted:
            value |= bit
    return value


def migration_params(platform: LibvirtPlatform, target: LibvirtHost, vm_name: str) -> dict[str, Any]:
    params: dict[str, Any] = {libvirt.VIR_MIGRATE_PARAM_DEST_NAME: vm_name}
    if target.migration_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = target.migration_uri
    if platform.bandwidth_mib_s:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = platform.bandwidth_mib_s
    return params


_CPU_COMPARE = {libvirt.VIR_CPU_COMPARE_IDENTICAL: "identical", libvirt.VIR_CPU_COMPARE_SUPERSET: "superset",
                libvirt.VIR_CPU_COMPARE_INCOMPATIBLE: "incompatible"}


def placement_verdict(active_on: list[str], source: str, target: str) -> str:
    """Where the VM runs, judged from observation: 'target', 'source', 'both' or 'nowhere'."""
    on_source, on_target = source in active_on, target in active_on
    if on_target and not on_source:
        return "target"
    if on_source and not on_target:
        return "source"
    return "both" if on_source and on_target else "nowhere"


@dataclass
class _Job:
    """One migration this adapter started and is monitoring."""

    handle: MigrationHandle
    started_s: float
    budget_s: float
    schedule: list[tuple[float, int]]
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    done_s: float | None = None
    call_error: str | None = None
    progress: Progress = field(default_factory=lambda: Progress(None, time.monotonic()))
    applied_downtime_ms: int | None = None
    postcopy_requested: bool = False
    abort_reason: str | None = None
    last_stats: dict[str, Any] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    final: MigrationObservation | None = None


class LibvirtAdapter:
    def __init__(
        self,
        platform: LibvirtPlatform,
        *,
        budgets: Budgets | None = None,
        monitor: MonitorConfig | None = None,
        timeouts: LibvirtTimeouts | None = None,
        emit: EmitEvent | None = None,
    ):
        self.platform = platform
        self.timeouts = timeouts or LibvirtTimeouts()
        self.budgets = budgets or Budgets()
        self.monitor = monitor or MonitorConfig()
        self.poll_interval_s = self.timeouts.poll_interval_s
        self.emit = emit
        self._hosts = {h.name: h for h in platform.hosts}
        self._conns: dict[str, libvirt.virConnect] = {}
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ plumbing

    def _event(self, kind: str, **detail: Any) -> None:
        if self.emit:
            self.emit(TimelineEvent(at=utcnow(), monotonic=time.monotonic(), source="libvirt", kind=kind, detail=detail))

    def _host(self, name: str) -> LibvirtHost:
        if name not in self._hosts:
            raise InputError(f"platform.hosts: no host named {name!r} (hosts: {sorted(self._hosts)})")
        return self._hosts[name]

    def _conn(self, host: str) -> libvirt.virConnect:
        with self._lock:
            conn = self._conns.get(host)
            if conn is not None:
                try:
                    if call_bounded(conn.isAlive, self.timeouts.call_s, "isAlive"):
                        return conn
                except (libvirt.libvirtError, LibvirtCallTimeout):
                    pass
                close_quietly(conn, self.timeouts)
            uri = self._host(host).uri
            try:
                conn = open_connection(uri, self.timeouts)
            except (libvirt.libvirtError, LibvirtCallTimeout) as exc:
                raise PlatformUnreachable(f"host {host} ({uri}): cannot connect: {exc}") from None
            self._conns[host] = conn
            return conn

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return call_bounded(fn, self.timeouts.call_s, what, *args)
        except LibvirtCallTimeout as exc:
            raise PlatformUnreachable(str(exc)) from None
        except libvirt.libvirtError as exc:
            raise PlatformError(f"{what}: {exc}", reason=str(exc.get_error_code()), transient=is_transient(exc)) from None

    def _lookup(self, host: str, name: str) -> libvirt.virDomain | None:
        conn = self._conn(host)
        try:
            return call_bounded(conn.lookupByName, self.timeouts.call_s, f"lookupByName({name})", name)
        except libvirt.libvirtError as exc:
            if is_no_domain(exc):
                return None
            raise PlatformError(f"{host}: lookup {name}: {exc}", transient=is_transient(exc)) from None
        except LibvirtCallTimeout as exc:
            raise PlatformUnreachable(f"{host}: {exc}") from None

    def _placement(self, name: str) -> dict[str, dict[str, Any]]:
        """What every host shows for the domain now: defined? active? persistent? state."""
        seen = {}
        for host in self._hosts:
            dom = self._lookup(host, name)
            if dom is None:
                seen[host] = {"defined": False, "active": False, "persistent": False, "state": None}
                continue
            state, reason = self._call(f"{host}: state", dom.state)
            seen[host] = {
                "defined": True,
                "active": bool(self._call(f"{host}: isActive", dom.isActive)),
                "persistent": bool(self._call(f"{host}: isPersistent", dom.isPersistent)),
                "state": STATE_NAMES.get(state, str(state)),
                "state_code": [state, reason],
            }
        return seen

    @staticmethod
    def _active_on(placement: dict[str, dict[str, Any]]) -> list[str]:
        return [h for h, p in placement.items() if p["active"]]

    def capabilities(self) -> Capabilities:
        # polled job stats, no change watch; hosts have no node drain; QEMU measures the guest's dirty rate and
        # its memory can be sampled for pages holding data
        return Capabilities(kind="libvirt", dirty_rate_meter=self, touched_memory_meter=self, migration_figures=self)

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                close_quietly(conn, self.timeouts)
            self._conns.clear()

    # ------------------------------------------------------------ reads

    def versions(self) -> dict[str, str]:
        out = {"libvirt-client-library": _version_text(libvirt.getVersion())}
        for host in self._hosts:
            conn = self._conn(host)
            out[f"{host}:libvirt"] = _version_text(self._call("getLibVersion", conn.getLibVersion))
            out[f"{host}:hypervisor"] = f"{self._call('getType', conn.getType)} " \
                                        f"{_version_text(self._call('getVersion', conn.getVersion))}"
        return out

    def describe_vm(self, vm: VMRef) -> VMState:
        placement = self._placement(vm.name)
        active = self._active_on(placement)
        defined = [h for h, p in placement.items() if p["defined"]]
        if not defined:
            raise InputError(f"vms: domain {vm.name!r} is not defined on any host ({sorted(self._hosts)})")
        host = active[0] if len(active) == 1 else (None if active else defined[0])
        dom = self._lookup(host, vm.name) if host else None
        memory_gib = 0.0
        raw: dict[str, Any] = {"placement": placement}
        if dom is not None:
            info = self._call("info", dom.info)
            memory_gib = info[1] / 1024**2  # KiB
            raw["xml"] = self._call("XMLDesc", dom.XMLDesc, 0)
            raw["info"] = {"state": info[0], "max_memory_kib": info[1], "memory_kib": info[2], "vcpus": info[3]}
        return VMState(ref=vm, node=host if len(active) == 1 else None, running=len(active) == 1,
                       memory_gib=memory_gib, raw=raw)

    def job_stats(self, host: str, name: str, completed: bool = False) -> dict[str, Any]:
        dom = self._lookup(host, name)
        if dom is None:
            return {}
        # KEEP_COMPLETED: reading completed stats would otherwise delete them (post-checks and evidence read again).
        flags = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED if completed else 0
        return dict(self._call(f"{host}: jobStats", dom.jobStats, flags))

    # ------------------------------------------------------------ pre-flight

    def preflight(self, spec: DrillSpec, vm: VMRef) -> VMPreflight:
        checks = self._preflight_checks(spec, vm)
        before = self.describe_vm(vm)
        return VMPreflight(checks=checks, before=before, limits=self._limits(before))

    def _limits(self, state: VMState) -> MigrationLimits | None:
        dom = self._lookup(state.node, state.ref.name) if state.node else None
        if dom is None:
            return None
        disk_bytes = self._data_bytes(dom, state.raw.get("xml", "")) - state.raw["info"]["max_memory_kib"] * 1024
        return migration_limits(self.platform, disk_bytes)

    def _preflight_checks(self, spec: DrillSpec, vm: VMRef) -> list[CheckResult]:
        """Gather the facts each judgment in checks.py needs, in the order a failure makes the next meaningless."""
        subject = f"domain {vm.name}"
        placement = self._placement(vm.name)
        active = self._active_on(placement)
        checks = [domain_active_check(active, placement, subject)]
        if len(active) != 1:
            return checks
        source = active[0]
        dom = self._lookup(source, vm.name)
        assert dom is not None
        checks.append(persistent_check(placement[source]["persistent"], source, subject))
        requested = spec.mode.target_node if isinstance(spec.mode, TargetedMode) else None
        target = pick_target(requested, source, list(self._hosts))
        refused = target_host_check(target, source, subject)
        if refused is not None or target is None:
            return checks + ([refused] if refused else [])
        xml = self._call("XMLDesc", dom.XMLDesc, libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        info = self._call("info", dom.info)
        checks.append(capacity_check(self._target_capacity(target), info[1], info[3], subject))
        checks.append(cpu_check(self._compare_cpu(source, target, xml), domain_xml_facts(xml)["cpu_mode"], subject))
        disks = domain_disks(xml)
        unknown = [] if self.platform.flags.copy_storage_all else self._unknown_paths(target, local_disks(disks))
        checks.append(storage_check(disks, self.platform.flags.copy_storage_all, unknown, subject))
        stats = self._call("jobStats", dom.jobStats, 0)
        checks.append(no_job_check(stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE,
                                   stats, subject))
        facts = gather_isolation_facts(dom, self._host(source).uri, self.timeouts)
        checks.append(judge_hardware_isolation(facts, self.platform.hardware_isolation, subject))
        checks.append(judge_pinning(facts, subject))
        return checks

    def measure_dirty_rate(self, vm: VMRef, window_s: int, windows: int) -> DirtyRateReading:
        """The highest of `windows` QEMU measurements of `window_s` s one after another (busiest_reading)."""
        return busiest_reading([self._measure_one_window(vm, window_s) for _ in range(windows)])

    def _measure_one_window(self, vm: VMRef, window_s: int) -> DirtyRateReading:
        """The running guest's dirty rate in bytes/s over `window_s` s, or why not (also in the timeline): the
        domain does not run on exactly one host (the domain-active check says more) or its hypervisor cannot measure."""
        host = None
        try:
            running = self._running_domain(vm)
            if isinstance(running, str):
                reason = running
            else:
                host, dom = running
                conn = self._conn(host)
                previous = self._dirty_rate_stats(host, conn, dom).get("dirtyrate.calc_start_time")
                self._call(f"{host}: startDirtyRateCalc", dom.startDirtyRateCalc, window_s, 0)
                deadline = time.monotonic() + window_s + self.timeouts.call_s
                while time.monotonic() < deadline:
                    time.sleep(self.poll_interval_s)
                    rate = dirty_rate_reading(self._dirty_rate_stats(host, conn, dom), previous)
                    if rate is not None:
                        self._event("dirty-rate", host=host, vm=str(vm), bytes_per_s=rate, window_s=window_s)
                        return DirtyRateReading(bytes_per_s=rate, source=f"QEMU calc-dirty-rate on {host} over {window_s} s")
                reason = f"no result within the {window_s} s window and {self.timeouts.call_s:g} s"
        except PlatformError as exc:
            reason = str(exc)
        self._event("dirty-rate-unmeasured", host=host, vm=str(vm), reason=reason)
        return DirtyRateReading(source=f"QEMU calc-dirty-rate on {host or 'no host'}", unknown=reason)

    def measure_touched_memory(self, vm: VMRef, sample_pages: int) -> float | None:
        """Bytes of the running guest's memory holding data, from `sample_pages` pages read with memoryPeek and
        only tested for zeros (touched.py); None (with the reason in the timeline) when it cannot be sampled."""
        host = None
        try:
            running = self._running_domain(vm)
            if isinstance(running, str):
                reason = running
            else:
                host, dom = running
                os_type = ET.fromstring(self._call(f"{host}: XMLDesc", dom.XMLDesc, 0)).find("os/type")
                machine = os_type.get("machine", "") if os_type is not None else ""
                memory = self._call(f"{host}: info", dom.info)[1] * 1024
                ranges = guest_ram_ranges(memory, machine)
                if ranges is None:
                    reason = f"machine type {machine!r} has no known guest-physical RAM layout"
                else:
                    began = time.monotonic()
                    addresses = sample_addresses(ranges, sample_pages, random.Random())
                    zero = sum(self._call(f"{host}: memoryPeek", dom.memoryPeek, address, PAGE,
                                          libvirt.VIR_MEMORY_PHYSICAL) == ZERO_PAGE for address in addresses)
                    touched = touched_estimate(zero, len(addresses), memory)
                    self._event("touched-memory", host=host, vm=str(vm), bytes=touched, sampled_pages=len(addresses),
                                zero_pages=zero, memory_bytes=memory, seconds=round(time.monotonic() - began, 3))
                    return touched
        except PlatformError as exc:
            reason = str(exc)
        self._event("touched-memory-unmeasured", host=host, vm=str(vm), reason=reason)
        return None

    def _running_domain(self, vm: VMRef) -> tuple[str, libvirt.virDomain] | str:
        """The host the domain runs on and its handle, or why there is none (the domain-active check says more)."""
        active = self._active_on(self._placement(vm.name))
        if len(active) != 1:
            return f"domain {vm.name} is active on {len(active)} hosts, not one"
        dom = self._lookup(active[0], vm.name)
        return (active[0], dom) if dom is not None else f"domain {vm.name} not found on {active[0]}"

    def _dirty_rate_stats(self, host: str, conn: libvirt.virConnect, dom: libvirt.virDomain) -> dict[str, Any]:
        [(_, stats)] = self._call(f"{host}: domainListGetStats(dirtyrate)", conn.domainListGetStats, [dom],
                                  libvirt.VIR_DOMAIN_STATS_DIRTYRATE, 0)
        return dict(stats)

    def _target_capacity(self, target: str) -> TargetCapacity:
        try:
            conn = self._conn(target)
            node = self._call("getInfo", conn.getInfo)
            free = self._call("getFreeMemory", conn.getFreeMemory)
        except PlatformError as exc:
            return TargetCapacity(host=target, unreachable=str(exc))
        return TargetCapacity(host=target, free_memory_bytes=free, host_cpus=node[2], node_info=node)

    def _compare_cpu(self, source: str, target: str, xml: str) -> CpuComparison:
        dst = self._conn(target)
        root = ET.fromstring(xml)
        cpu = root.find("cpu")
        os_type = root.find("os/type")
        host_cpu = compares_host_cpu(domain_xml_facts(xml)["cpu_mode"], cpu is not None)
        compared = "source host CPU vs target host CPU (compareCPU)" if host_cpu else \
            "domain CPU vs target hypervisor (compareHypervisorCPU)"
        try:
            if host_cpu:
                caps = ET.fromstring(self._call("getCapabilities", self._conn(source).getCapabilities))
                cpu_xml = ET.tostring(caps.find("host/cpu"), encoding="unicode")
                result = self._call("compareCPU", dst.compareCPU, cpu_xml, 0)
            else:
                cpu_xml = ET.tostring(cpu, encoding="unicode")
                result = self._call("compareHypervisorCPU", dst.compareHypervisorCPU, None,
                                    os_type.get("arch") if os_type is not None else None,
                                    os_type.get("machine") if os_type is not None else None,
                                    root.get("type"), cpu_xml, 0)
        except PlatformError as exc:
            return CpuComparison(target=target, compared=compared, error=str(exc))
        return CpuComparison(target=target, compared=compared, result=_CPU_COMPARE.get(result, str(result)),
                             cpu_xml=cpu_xml)

    def _unknown_paths(self, target: str, disks: list[dict[str, Any]]) -> list[str]:
        """Disk paths the target's storage pools do not know: the disk is not shared with the target."""
        dst = self._conn(target)
        unknown = []
        for disk in disks:
            try:
                call_bounded(dst.storageVolLookupByPath, self.timeouts.call_s, "storageVolLookupByPath", disk["source"])
            except (libvirt.libvirtError, LibvirtCallTimeout):
                unknown.append(disk["source"])
        return unknown

    # ------------------------------------------------------------ migration

    def _pick_target(self, source: str, target: str | None) -> str:
        if target is None:
            target = next(h for h in self._hosts if h != source)
        self._host(target)
        if target == source:
            raise InputError(f"mode.target_node: the VM already runs on {target}")
        return target

    def _data_bytes(self, dom: libvirt.virDomain, xml: str) -> int:
        data = self._call("info", dom.info)[1] * 1024
        if self.platform.flags.copy_storage_all:
            for disk in ET.fromstring(xml).findall("devices/disk/target"):
                data += self._call("blockInfo", dom.blockInfo, disk.get("dev"), 0)[0]
        return data

    def start_migration(self, vm: VMRef, target: str | None, register: RegisterCompensation) -> MigrationHandle:
        state = self.describe_vm(vm)
        if state.node is None:
            raise InputError(f"vms: domain {vm.name} must run on exactly one host to migrate "
                             f"({state.raw.get('placement')})")
        source = state.node
        target = self._pick_target(source, target)
        dom = self._lookup(source, vm.name)
        assert dom is not None
        data = self._data_bytes(dom, state.raw.get("xml", ""))
        schedule = downtime_steps(self.platform.max_downtime_ms, self.monitor.downtime_steps,
                                  self.monitor.downtime_delay_per_gib_s, data) if self.platform.max_downtime_ms else []
        handle = MigrationHandle(vm=vm, platform_id=f"{vm.name}:{source}->{target}", source=source, target=target)
        job = _Job(handle=handle, started_s=time.monotonic(), budget_s=migration_deadline_s(self.budgets, data / GIB),
                   schedule=schedule)
        job.progress = Progress(None, job.started_s)
        self._jobs[handle.platform_id] = job
        flags = migration_flags(self.platform)
        params = migration_params(self.platform, self._host(target), vm.name)
        job.thread = threading.Thread(target=self._migrate_worker, args=(job, flags, params), daemon=True,
                                      name=f"migrate:{handle.platform_id}")
        job.thread.start()
        register("cancel-migration", {"vm": vm.name, "source": source, "target": target,
                                      "platform_id": handle.platform_id})
        self._event("migrate-call", source=source, target=target, flags=flags,
                    params={k: v for k, v in params.items()}, budget_s=job.budget_s, downtime_schedule=schedule)
        return handle

    def _migrate_worker(self, job: _Job, flags: int, params: dict[str, Any]) -> None:
        """Runs the blocking migrate call on its own connection; only records how the call ended."""
        src_uri = self._host(job.handle.source).uri
        dst_host = self._host(job.handle.target or "")
        conn = dconn = None
        try:
            conn = open_connection(src_uri, self.timeouts)
            dom = conn.lookupByName(job.handle.vm.name)
            if flags & libvirt.VIR_MIGRATE_PEER2PEER:
                dom.migrateToURI3(dst_host.uri, params, flags)
            else:
                dconn = open_connection(dst_host.uri, self.timeouts)
                dom.migrate3(dconn, params, flags)
        except (libvirt.libvirtError, LibvirtCallTimeout) as exc:
            job.call_error = str(exc)
        finally:
            job.done_s = time.monotonic()
            job.done.set()
            close_quietly(dconn, self.timeouts)
            close_quietly(conn, self.timeouts)

    def observe_migration(self, handle: MigrationHandle) -> MigrationObservation:
        job = self._jobs.get(handle.platform_id)
        if job is not None and job.final is not None:
            return job.final
        if job is not None and not job.done.is_set():
            return self._monitor_step(job)
        return self._reconcile(handle, job)

    def _monitor_step(self, job: _Job) -> MigrationObservation:
        h = job.handle
        dom = self._lookup(h.source, h.vm.name)
        now = time.monotonic()
        stats: dict[str, Any] = {}
        state = None
        try:
            if dom is not None:
                stats = dict(self._call("jobStats", dom.jobStats, 0))
                state = tuple(self._call("state", dom.state))
        except PlatformError as exc:
            # Gone from the source, or no longer running there = the migration is finishing;
            # transient = look again next time. Either way the next observation tells.
            finishing = exc.reason in (str(libvirt.VIR_ERR_NO_DOMAIN), str(libvirt.VIR_ERR_OPERATION_INVALID))
            if not (exc.transient or finishing):
                raise
            return MigrationObservation(phase=MigrationPhase.RUNNING, terminal=False, succeeded=False, source=h.source,
                                        target=h.target, raw={"observe_error": str(exc)})
        in_postcopy = state in POSTCOPY_STATES
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE and not in_postcopy:
            # The job is not (yet / any more) visible: the migrate call is starting or finishing.
            return MigrationObservation(phase=MigrationPhase.PENDING if not job.last_stats else MigrationPhase.RUNNING, terminal=False,
                                        succeeded=False, source=h.source, target=h.target, raw={"job_stats": stats})
        job.last_stats = stats
        job.progress = track_progress(job.progress, stats.get("data_remaining"), now)
        elapsed = now - job.started_s
        decision = decide(
            elapsed_s=elapsed, budget_s=job.budget_s, progress=job.progress, now_s=now,
            progress_timeout_s=self.monitor.progress_timeout_s, in_postcopy=in_postcopy,
            postcopy_requested=job.postcopy_requested, allow_post_copy=self.platform.flags.allow_post_copy,
            downtime_now_ms=downtime_due(job.schedule, elapsed, job.applied_downtime_ms),
        )
        self._act(job, dom, decision, elapsed)
        return MigrationObservation(
            phase=MigrationPhase.POSTCOPY if in_postcopy else MigrationPhase.RUNNING, terminal=False, succeeded=False, source=h.source,
            target=h.target,
            raw={"job_stats": stats, "elapsed_s": round(elapsed, 3), "budget_s": job.budget_s,
                 "low_water_bytes": job.progress.low_water_bytes, "decision": decision.action.value})

    def _act(self, job: _Job, dom: libvirt.virDomain | None, decision: Decision, elapsed: float) -> None:
        if decision.action is MonitorAction.CONTINUE or dom is None:
            return
        record = {"at_s": round(elapsed, 3), "action": decision.action.value, "reason": decision.reason}
        try:
            if decision.action is MonitorAction.SET_DOWNTIME:
                self._call("migrateSetMaxDowntime", dom.migrateSetMaxDowntime, decision.downtime_ms, 0)
                job.applied_downtime_ms = decision.downtime_ms
                record["downtime_ms"] = decision.downtime_ms
            elif decision.action is MonitorAction.START_POSTCOPY:
                self._call("migrateStartPostCopy", dom.migrateStartPostCopy, 0)
                job.postcopy_requested = True
            elif decision.action is MonitorAction.ABORT:
                job.abort_reason = decision.reason
                self._call("abortJob", dom.abortJob)
        except PlatformError as exc:
            # The job may have ended between the observation and the action: the next observation shows it.
            record["error"] = str(exc)
        job.decisions.append(record)
        self._event("monitor-" + decision.action.value, migration=job.handle.platform_id, **record)

    def _reconcile(self, handle: MigrationHandle, job: _Job | None) -> MigrationObservation:
        """The migrate call has returned (or this adapter never ran it): judge from what the hosts show."""
        placement = self._placement(handle.vm.name)
        active = self._active_on(placement)
        verdict = placement_verdict(active, handle.source, handle.target or "")
        raw: dict[str, Any] = {"placement": placement, "where": verdict}
        if job is not None:
            raw.update({"migrate_call_error": job.call_error, "abort_reason": job.abort_reason,
                        "monitor_decisions": job.decisions, "last_job_stats": job.last_stats,
                        "budget_s": job.budget_s})
        if job is None:
            # No migrate call of ours: a job still active on the source means it is running.
            stats = self.job_stats(handle.source, handle.vm.name) if verdict == "source" else {}
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                return MigrationObservation(phase=MigrationPhase.RUNNING, terminal=False, succeeded=False, source=handle.source,
                                            target=handle.target, raw={**raw, "job_stats": stats})
        if verdict == "target":
            raw["completed_job_stats"] = self.job_stats(handle.target or "", handle.vm.name, completed=True)
            obs = MigrationObservation(phase=MigrationPhase.SUCCEEDED, terminal=True, succeeded=True, source=handle.source,
                                       target=handle.target, raw=raw)
        elif verdict == "source":
            reason = (job.abort_reason if job and job.abort_reason else None) or \
                (f"migrate call failed: {job.call_error}" if job and job.call_error else
                 "the migration ended and the VM still runs on the source")
            raw["source_completed_job_stats"] = self.job_stats(handle.source, handle.vm.name, completed=True)
            obs = MigrationObservation(phase=MigrationPhase.FAILED, terminal=True, succeeded=False, source=handle.source,
                                       target=handle.target, failure_reason=reason, raw=raw)
        else:
            settling = job is not None and job.done_s is not None and \
                time.monotonic() - job.done_s < self.timeouts.settle_s
            if settling:
                return MigrationObservation(phase=MigrationPhase.SETTLING, terminal=False, succeeded=False, source=handle.source,
                                            target=handle.target, raw=raw)
            obs = MigrationObservation(phase=MigrationPhase.FAILED, terminal=True, succeeded=False, source=handle.source,
                                       target=handle.target, raw=raw,
                                       failure_reason=f"the VM is active on {verdict} hosts after the migration "
                                                      f"({active}); a human must decide which copy is authoritative")
        if job is not None:
            job.final = obs
            self._event("migration-" + obs.phase.lower(), migration=handle.platform_id, where=verdict,
                        failure_reason=obs.failure_reason,
                        downtime_ms=(raw.get("completed_job_stats") or {}).get("downtime"))
        return obs

    # ------------------------------------------------------------ cancel / rollback

    def cancel_migration(self, handle: MigrationHandle, timeout_s: float) -> str:
        return self.cancel_by_params({"vm": handle.vm.name, "source": handle.source, "target": handle.target,
                                      "platform_id": handle.platform_id}, timeout_s)

    def cancel_by_params(self, params: dict[str, Any], timeout_s: float) -> str:
        """Abort the job (unless in post-copy), then wait until the VM runs on one host with no job. Idempotent."""
        name, source, target = params["vm"], params["source"], params["target"]
        job = self._jobs.get(params.get("platform_id", ""))
        deadline = time.monotonic() + timeout_s
        dom = self._lookup(source, name)
        postcopy = job is not None and job.postcopy_requested
        if dom is not None:
            state = tuple(self._call("state", dom.state))
            postcopy = postcopy or state in POSTCOPY_STATES
            stats = self._call("jobStats", dom.jobStats, 0)
            if not postcopy and stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                if job is not None and job.abort_reason is None:
                    job.abort_reason = "cancelled by the drill"
                try:
                    self._call("abortJob", dom.abortJob)
                except PlatformError as exc:
                    if exc.transient:
                        raise
                    # permanent = no job any more: it ended on its own; the observation below tells how
                self._event("abort-requested", vm=name, source=source)
        while True:
            if job is None or job.done.wait(timeout=0):
                placement = self._placement(name)
                active = self._active_on(placement)
                verdict = placement_verdict(active, source, target)
                src_stats = self.job_stats(source, name) if verdict == "source" else {}
                idle = src_stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE
                if verdict == "source" and idle:
                    what = "post-copy could not be aborted; " if postcopy else ""
                    return f"{what}migration aborted; VM running on the source {source} only"
                if verdict == "target":
                    why = "post-copy cannot be aborted, it completed" if postcopy else \
                        "the migration completed before the abort took effect"
                    return f"{why}; VM running on the target {target} only"
            if time.monotonic() >= deadline:
                raise UndoNotObserved(
                    f"cancel of migration {name} {source}->{target} not settled within {timeout_s:g} s",
                    manual_action=f"finish the abort of domain {name}'s migration by hand: `virsh domjobinfo {name}` "
                                  f"on {source}, and `virsh domjobabort {name}` there while a job still runs; then "
                                  f"`virsh list --all` on {source} and {target} must show it running on exactly one host")
            time.sleep(self.poll_interval_s)

    def undo_actions(self, abort_timeout_s: float) -> dict[str, UndoAction]:
        def cancel_migration(params: dict[str, Any]) -> str:
            return self.cancel_by_params(params, timeout_s=abort_timeout_s)

        return {"cancel-migration": cancel_migration}

    # ------------------------------------------------------------ post-checks

    def migration_figures(self, handle: MigrationHandle) -> MigrationFigures | None:
        if not handle.target:
            return None
        job = self._jobs.get(handle.platform_id)
        return libvirt_migration_figures(self.job_stats(handle.target, handle.vm.name, completed=True),
                                         job.last_stats if job else {})

    def postcheck(self, handle: MigrationHandle, before: VMState, phases_seen: list[str] | None = None) -> list[CheckResult]:
        name, target, source = handle.vm.name, handle.target or "", handle.source
        subject = f"domain {name}"
        placement = self._placement(name)
        active = self._active_on(placement)
        verdict = placement_verdict(active, source, target)
        checks = [check("vm-on-target", verdict == "target", subject,
                         f"running on the target {target} only (was on {source})" if verdict == "target" else
                         f"expected the VM on {target} only; it runs on: {active or 'no host'}",
                         "inspect both hosts (virsh list --all) before touching either copy", {"placement": placement})]
        if self.platform.flags.persist_dest:
            persistent = placement.get(target, {}).get("persistent", False)
            checks.append(check("persistent-on-target", persistent, subject,
                                 f"persistently defined on {target}" if persistent else f"not persistent on {target}",
                                 "virsh define the domain on the target", {"target": placement.get(target)}))
        if self.platform.flags.undefine_source:
            gone = not placement.get(source, {}).get("defined", True)
            checks.append(check("source-undefined", gone, subject,
                                 f"no longer defined on {source}" if gone else f"still defined on {source}",
                                 "virsh undefine the stale definition on the source", {"source": placement.get(source)}))
        if verdict == "target":
            stats = self.job_stats(target, name, completed=True)
            job = self._jobs.get(handle.platform_id)
            checks.append(job_stats_check(stats, job.postcopy_requested if job else False,
                                          job.last_stats if job else {}, subject))
            dom = self._lookup(target, name)
            if dom is not None:
                facts = gather_isolation_facts(dom, self._host(target).uri, self.timeouts)
                checks.append(judge_hardware_isolation(facts, self.platform.hardware_isolation, subject))
                checks.append(judge_pinning(facts, subject))
        return checks


def job_stats_check(completed: dict[str, Any], postcopy: bool, last_running: dict[str, Any], subject: str) -> CheckResult:
    """libvirt's completed-job figures from the target; after post-copy libvirt keeps none there, which is expected."""
    evidence = {"completed_job_stats": completed, "last_running_job_stats": last_running, "postcopy": postcopy}
    if completed.get("downtime") is not None:
        return CheckResult(name="migration-job-stats", status=CheckStatus.PASS, subject=subject, evidence=evidence,
                           message=f"libvirt downtime {completed.get('downtime')} ms, {completed.get('data_processed')} "
                                   f"bytes in {completed.get('memory_iteration')} memory pass(es), "
                                   f"{completed.get('time_elapsed')} ms total" + _disk_copy_text(last_running))
    if postcopy:
        return CheckResult(name="migration-job-stats", status=CheckStatus.WARN, subject=subject, evidence=evidence,
                           message="finished in post-copy: the target keeps no completed job statistics; the last "
                                   "running statistics before the switch are attached",
                           remedy="rely on the probe series for the guest-visible interruption of this migration")
    return CheckResult(name="migration-job-stats", status=CheckStatus.FAIL, subject=subject, evidence=evidence,
                       message="the target holds no completed job statistics for a pre-copy migration",
                       remedy="read `virsh domjobinfo --completed --keep-completed` on the target by hand")


def _disk_copy_text(last_running: dict[str, Any]) -> str:
    # The destination's completed statistics carry no disk figures (the NBD mirror runs on the source, whose
    # domain is gone after the switch): the source's last running statistics are where they are.
    if not last_running.get("disk_total"):
        return ""
    return (f"; disk {last_running.get('disk_processed')} of {last_running['disk_total']} bytes mirrored "
            "(the source's last running statistics)")


def _version_text(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
