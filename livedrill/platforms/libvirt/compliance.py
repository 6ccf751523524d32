"""Hardware-isolation compliance (the bank's rule: core VMs run hardware-virtualized): does the core VM really run hardware-virtualized, pinned as asked?

`domcapabilities` alone proves nothing (on a kvm_pvm host it lists kvm although a normal guest cannot
run on it), so the verdict needs three independent facts, all recorded as evidence:
  1. the domain XML asks for `type='kvm'`;
  2. the host has a hardware KVM vendor module (kvm_intel / kvm_amd) loaded — read from /sys/module,
     which is only possible for a host on this machine (a remote host's modules are reported unknown);
  3. QEMU itself says KVM is enabled (QMP `query-kvm` through libvirt-qemu; libvirt marks the domain
     "custom-monitor" tainted for that, a harmless note in its log).
Pinning: the actual vCPU and emulator thread affinities must equal the domain's <cputune>; the domain
state and NUMA placement are evidence. `gather_*` read libvirt; `judge_*` are pure and table-tested.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import libvirt
import libvirt_qemu

from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.platforms.libvirt.connection import LibvirtTimeouts, call_bounded

VENDOR_MODULES = ("kvm_intel", "kvm_amd")
STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate", libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused", libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown", libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def is_local_uri(uri: str) -> bool:
    """A URI naming no remote host (qemu:///system, qemu+unix:///system?socket=...)."""
    return not urlparse(uri).hostname


def host_kvm_modules(sys_module: Path = Path("/sys/module")) -> dict[str, bool]:
    return {name: (sys_module / name).exists() for name in (*VENDOR_MODULES, "kvm", "kvm_pvm")}


def parse_cpuset(text: str | None) -> list[int]:
    """libvirt cpuset syntax ('0-3,^2,6') to a sorted CPU list."""
    if not text:
        return []
    cpus: set[int] = set()
    excluded: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        target = excluded if part.startswith("^") else cpus
        part = part.lstrip("^")
        if "-" in part:
            lo, hi = part.split("-", 1)
            target.update(range(int(lo), int(hi) + 1))
        elif part:
            target.add(int(part))
    return sorted(cpus - excluded)


def cpumap_to_list(cpumap: tuple[bool, ...] | list[bool]) -> list[int]:
    return [i for i, on in enumerate(cpumap) if on]


def domain_xml_facts(xml: str) -> dict[str, Any]:
    root = ET.fromstring(xml)
    cputune = root.find("cputune")
    vcpupin = {}
    emulatorpin = None
    if cputune is not None:
        for pin in cputune.findall("vcpupin"):
            vcpupin[int(pin.get("vcpu", "0"))] = parse_cpuset(pin.get("cpuset"))
        emu = cputune.find("emulatorpin")
        emulatorpin = parse_cpuset(emu.get("cpuset")) if emu is not None else None
    numatune = root.find("numatune/memory")
    cpu = root.find("cpu")
    return {
        "domain_type": root.get("type"),
        "vcpus": int(root.findtext("vcpu", "1")),
        "vcpupin": vcpupin,
        "emulatorpin": emulatorpin,
        "cpu_mode": cpu.get("mode") if cpu is not None else None,
        "numatune": dict(numatune.attrib) if numatune is not None else None,
    }


def gather_isolation_facts(dom: libvirt.virDomain, host_uri: str, timeouts: LibvirtTimeouts) -> dict[str, Any]:
    """Everything the two compliance checks judge, read now from libvirt, QEMU and (for local hosts) /sys."""
    xml = call_bounded(dom.XMLDesc, timeouts.call_s, "XMLDesc", 0)
    facts = domain_xml_facts(xml)
    state, reason = call_bounded(dom.state, timeouts.call_s, "state")
    facts["domain_state"] = STATE_NAMES.get(state, str(state))
    facts["domain_state_reason"] = reason
    facts["host_uri"] = host_uri
    facts["host_modules"] = host_kvm_modules() if is_local_uri(host_uri) else None
    try:
        answer = call_bounded(libvirt_qemu.qemuMonitorCommand, timeouts.call_s, "query-kvm", dom,
                              json.dumps({"execute": "query-kvm"}), 0)
        facts["qemu_query_kvm"] = json.loads(answer).get("return")
    except libvirt.libvirtError as exc:
        facts["qemu_query_kvm"] = None
        facts["qemu_query_kvm_error"] = str(exc)
    try:
        _, vcpu_maps = call_bounded(dom.vcpus, timeouts.call_s, "vcpus")
        facts["vcpu_affinity"] = {i: cpumap_to_list(m) for i, m in enumerate(vcpu_maps)}
    except libvirt.libvirtError as exc:
        facts["vcpu_affinity"] = None
        facts["vcpu_affinity_error"] = str(exc)
    try:
        facts["emulator_affinity"] = cpumap_to_list(call_bounded(dom.emulatorPinInfo, timeouts.call_s, "emulatorPinInfo", 0))
    except libvirt.libvirtError as exc:
        facts["emulator_affinity"] = None
        facts["emulator_affinity_error"] = str(exc)
    try:
        facts["numa_parameters"] = call_bounded(dom.numaParameters, timeouts.call_s, "numaParameters", 0)
    except libvirt.libvirtError as exc:
        facts["numa_parameters"] = {"error": str(exc)}
    facts["domain_xml"] = xml
    return facts


def judge_hardware_isolation(facts: dict[str, Any], policy: str, subject: str) -> CheckResult:
    """PASS only when XML type, host vendor module and QEMU's accelerator all say hardware KVM.

    policy "lab-exempt" turns a failure into not_applicable with the reason, visibly; "required" fails.
    """
    evidence = {k: v for k, v in facts.items() if k != "domain_xml"}
    modules = facts.get("host_modules")
    qemu_kvm = facts.get("qemu_query_kvm") or {}
    vendor = [m for m in VENDOR_MODULES if modules and modules.get(m)]
    problems = []
    if facts.get("domain_type") != "kvm":
        problems.append(f"domain type is {facts.get('domain_type')!r}, not 'kvm' (software emulation)")
    if modules is not None and not vendor:
        extra = " (only kvm_pvm: paravirtual KVM, not VT-x/AMD-V)" if modules.get("kvm_pvm") else ""
        problems.append(f"no kvm_intel/kvm_amd module on the host{extra}")
    if qemu_kvm.get("enabled") is not True:
        problems.append(f"QEMU reports KVM not enabled (query-kvm: {facts.get('qemu_query_kvm')})")
    if not problems and modules is None:
        return CheckResult(
            name="hardware-isolation", status=CheckStatus.WARN, subject=subject, evidence=evidence,
            message="domain type kvm and QEMU reports KVM enabled; the host's kvm vendor module cannot be read remotely",
            remedy="confirm kvm_intel/kvm_amd on the host (lsmod) and attach it to the evidence")
    if not problems:
        return CheckResult(name="hardware-isolation", status=CheckStatus.PASS, subject=subject, evidence=evidence,
                           message=f"hardware-virtualized: domain type kvm, host module {vendor[0]}, QEMU KVM enabled")
    message = "not hardware-isolated: " + "; ".join(problems)
    if policy == "lab-exempt":
        return CheckResult(
            name="hardware-isolation", status=CheckStatus.NOT_APPLICABLE, subject=subject, evidence=evidence,
            message=f"lab runs TCG: no hardware virtualization on this machine ({message}); "
                    "platform.hardware_isolation is lab-exempt, so this does not fail the drill")
    return CheckResult(
        name="hardware-isolation", status=CheckStatus.FAIL, subject=subject, evidence=evidence, message=message,
        remedy="run the core VM with <domain type='kvm'> on a host with VT-x/AMD-V (kvm_intel/kvm_amd loaded)")


def judge_pinning(facts: dict[str, Any], subject: str) -> CheckResult:
    """Actual vCPU/emulator affinities against the domain's <cputune>; state and NUMA as evidence."""
    evidence = {k: facts.get(k) for k in ("vcpupin", "vcpu_affinity", "emulatorpin", "emulator_affinity",
                                          "numatune", "numa_parameters", "domain_state", "vcpus")}
    wanted: dict[int, list[int]] = facts.get("vcpupin") or {}
    if not wanted and facts.get("emulatorpin") is None:
        return CheckResult(name="cpu-pinning", status=CheckStatus.WARN, subject=subject, evidence=evidence,
                           message="the domain asks for no vCPU pinning (the core tier expects 1:1 pCPU pinning)",
                           remedy="add <cputune><vcpupin .../></cputune> to the domain")
    actual = facts.get("vcpu_affinity") or {}
    problems = [f"vCPU {v}: pinned to {cpus}, runs on {actual.get(v)}" for v, cpus in sorted(wanted.items())
                if actual.get(v) != cpus]
    unpinned = [v for v in range(facts.get("vcpus") or 0) if v not in wanted]
    if unpinned:
        problems.append(f"vCPU(s) {unpinned} have no vcpupin")
    if facts.get("emulatorpin") is not None and facts.get("emulator_affinity") != facts["emulatorpin"]:
        problems.append(f"emulator pinned to {facts['emulatorpin']}, runs on {facts.get('emulator_affinity')}")
    if problems:
        return CheckResult(name="cpu-pinning", status=CheckStatus.FAIL, subject=subject, evidence=evidence,
                           message="pinning differs from the domain's cputune: " + "; ".join(problems),
                           remedy="re-apply the pinning (virsh vcpupin / emulatorpin) and find what changed it")
    return CheckResult(name="cpu-pinning", status=CheckStatus.PASS, subject=subject, evidence=evidence,
                       message=f"{len(wanted)} vCPU(s) and the emulator run exactly where <cputune> pins them "
                               f"(state {facts.get('domain_state')})")
