"""Table tests of libvirt's pre-flight judgments: facts in, one named check out (no libvirt needed)."""

from __future__ import annotations

import pytest

from livedrill.outcomes import CheckStatus
from livedrill.platforms.libvirt.checks import (CpuComparison, TargetCapacity, capacity_check, compares_host_cpu,
                                                cpu_check, domain_active_check, domain_disks, no_job_check, pick_target,
                                                storage_check, target_host_check)

S = "domain core"
GIB_KIB = 1024**2


@pytest.mark.parametrize("active, status", [(["a"], CheckStatus.PASS), ([], CheckStatus.FAIL), (["a", "b"], CheckStatus.FAIL)])
def test_domain_must_be_active_on_exactly_one_host(active, status):
    assert domain_active_check(active, {}, S).status is status


@pytest.mark.parametrize("requested, source, hosts, target, refused", [
    (None, "a", ["a", "b"], "b", False),  # no target asked: the first other host
    ("b", "a", ["a", "b", "c"], "b", False),
    ("a", "a", ["a", "b"], "a", True),  # the host the VM runs on
    (None, "a", ["a"], None, True),  # no other host
])
def test_target_host(requested, source, hosts, target, refused):
    picked = pick_target(requested, source, hosts)
    assert picked == target
    assert (target_host_check(picked, source, S) is not None) == refused


@pytest.mark.parametrize("target, max_kib, vcpus, name, status", [
    (TargetCapacity("b", free_memory_bytes=8 * 2**30, host_cpus=4), 4 * GIB_KIB, 2, "target-capacity", CheckStatus.PASS),
    (TargetCapacity("b", free_memory_bytes=4 * 2**30, host_cpus=4), 4 * GIB_KIB, 4, "target-capacity", CheckStatus.PASS),
    (TargetCapacity("b", free_memory_bytes=3 * 2**30, host_cpus=4), 4 * GIB_KIB, 2, "target-capacity", CheckStatus.FAIL),
    (TargetCapacity("b", free_memory_bytes=8 * 2**30, host_cpus=2), 4 * GIB_KIB, 4, "target-capacity", CheckStatus.FAIL),
    (TargetCapacity("b", unreachable="connection refused"), 4 * GIB_KIB, 2, "target-reachable", CheckStatus.FAIL),
])
def test_target_capacity(target, max_kib, vcpus, name, status):
    check = capacity_check(target, max_kib, vcpus, S)
    assert (check.name, check.status) == (name, status)
    if status is CheckStatus.FAIL:
        assert check.remedy


@pytest.mark.parametrize("mode, has_cpu, host_cpu", [
    ("host-passthrough", True, True), ("host-model", True, True), (None, False, True), ("custom", True, False)])
def test_which_cpus_are_compared(mode, has_cpu, host_cpu):
    assert compares_host_cpu(mode, has_cpu) is host_cpu


@pytest.mark.parametrize("facts, status, words", [
    (CpuComparison("b", "hosts", result="identical"), CheckStatus.PASS, "identical"),
    (CpuComparison("b", "hosts", result="superset"), CheckStatus.PASS, "superset"),
    (CpuComparison("b", "hosts", result="incompatible"), CheckStatus.FAIL, "cannot run"),
    (CpuComparison("b", "hosts", error="no such CPU model"), CheckStatus.FAIL, "comparison on b failed"),
])
def test_cpu_compatibility(facts, status, words):
    check = cpu_check(facts, "host-model", S)
    assert check.status is status and words in check.message


def _xml(*disks: str) -> str:
    return f"<domain><devices>{''.join(disks)}</devices></domain>"


FILE_DISK = "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/core.qcow2'/></disk>"
NET_DISK = "<disk type='network' device='disk'><source protocol='rbd' name='pool/core'/></disk>"
CDROM = "<disk type='file' device='cdrom'><source file='/iso/seed.iso'/></disk>"


@pytest.mark.parametrize("xml, copy_all, unknown, status, words", [
    (_xml(), False, [], CheckStatus.PASS, "no local disks"),
    (_xml(NET_DISK, CDROM), False, [], CheckStatus.PASS, "network/shared"),
    (_xml(FILE_DISK), True, [], CheckStatus.PASS, "will be copied"),
    (_xml(FILE_DISK), False, [], CheckStatus.PASS, "shared storage"),
    (_xml(FILE_DISK), False, ["/var/lib/libvirt/images/core.qcow2"], CheckStatus.FAIL, "local to the source"),
])
def test_storage(xml, copy_all, unknown, status, words):
    check = storage_check(domain_disks(xml), copy_all, unknown, S)
    assert check.status is status and words in check.message


def test_a_running_job_refuses_the_migration():
    assert no_job_check(False, {}, S).status is CheckStatus.PASS
    busy = no_job_check(True, {"operation": 1}, S)
    assert busy.status is CheckStatus.FAIL and "already running" in busy.message
