"""Table tests of the libvirt adapter's pure parts: compliance verdicts, placement, flags, guest build helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("libvirt", reason="libvirt-python is not installed (make sysdeps installs it)")

import libvirt  # noqa: E402

from livedrill_lab.libvirt.guest import GuestBuildError, load_order  # noqa: E402
from livedrill.outcomes import CheckStatus  # noqa: E402
from livedrill.platforms.libvirt.adapter import migration_flags, migration_params, placement_verdict  # noqa: E402
from livedrill.platforms.libvirt.compliance import (  # noqa: E402
    domain_xml_facts,
    is_local_uri,
    judge_hardware_isolation,
    judge_pinning,
    parse_cpuset,
)
from livedrill.platforms.libvirt.config import LibvirtHost, LibvirtMigrationFlags, LibvirtPlatform  # noqa: E402

HW = {"kvm_intel": True, "kvm_amd": False, "kvm": True, "kvm_pvm": False}
PVM = {"kvm_intel": False, "kvm_amd": False, "kvm": True, "kvm_pvm": True}


@pytest.mark.parametrize(
    "domain_type, modules, query_kvm, policy, status, says",
    [
        ("kvm", HW, {"enabled": True, "present": True}, "required", CheckStatus.PASS, "host module kvm_intel"),
        # domcapabilities would say kvm here; the three facts do not
        ("qemu", PVM, {"enabled": False, "present": True}, "required", CheckStatus.FAIL, "only kvm_pvm"),
        ("qemu", PVM, {"enabled": False, "present": True}, "lab-exempt", CheckStatus.NOT_APPLICABLE, "lab runs TCG"),
        # a kvm domain on a PVM host: XML alone would pass
        ("kvm", PVM, {"enabled": True, "present": True}, "required", CheckStatus.FAIL, "no kvm_intel/kvm_amd"),
        # QEMU fell back to TCG although XML and host look right
        ("kvm", HW, {"enabled": False, "present": True}, "required", CheckStatus.FAIL, "KVM not enabled"),
        ("kvm", HW, None, "required", CheckStatus.FAIL, "KVM not enabled"),
        # remote host: modules unknown
        ("kvm", None, {"enabled": True, "present": True}, "required", CheckStatus.WARN, "cannot be read remotely"),
        ("qemu", None, {"enabled": False}, "required", CheckStatus.FAIL, "domain type is 'qemu'"),
    ],
)
def test_judge_hardware_isolation(domain_type, modules, query_kvm, policy, status, says):
    facts = {"domain_type": domain_type, "host_modules": modules, "qemu_query_kvm": query_kvm, "domain_xml": "<x/>"}
    check = judge_hardware_isolation(facts, policy, "domain vm")
    assert check.status is status
    assert says in check.message
    assert "domain_xml" not in check.evidence and check.evidence["domain_type"] == domain_type


@pytest.mark.parametrize(
    "facts, status, says",
    [
        ({"vcpus": 2, "vcpupin": {0: [2], 1: [3]}, "vcpu_affinity": {0: [2], 1: [3]}, "emulatorpin": [0, 1],
          "emulator_affinity": [0, 1]}, CheckStatus.PASS, "2 vCPU(s)"),
        ({"vcpus": 2, "vcpupin": {0: [2], 1: [3]}, "vcpu_affinity": {0: [2], 1: [2, 3]}, "emulatorpin": None,
          "emulator_affinity": [0, 1, 2, 3]}, CheckStatus.FAIL, "vCPU 1: pinned to [3], runs on [2, 3]"),
        ({"vcpus": 2, "vcpupin": {0: [2]}, "vcpu_affinity": {0: [2], 1: [0, 1, 2, 3]}, "emulatorpin": None,
          "emulator_affinity": None}, CheckStatus.FAIL, "vCPU(s) [1] have no vcpupin"),
        ({"vcpus": 1, "vcpupin": {0: [1]}, "vcpu_affinity": {0: [1]}, "emulatorpin": [0],
          "emulator_affinity": [0, 1]}, CheckStatus.FAIL, "emulator pinned to [0]"),
        ({"vcpus": 1, "vcpupin": {}, "vcpu_affinity": {0: [0, 1]}, "emulatorpin": None, "emulator_affinity": [0, 1]},
         CheckStatus.WARN, "no vCPU pinning"),
    ],
)
def test_judge_pinning(facts, status, says):
    check = judge_pinning({**facts, "domain_state": "running"}, "domain vm")
    assert check.status is status and says in check.message


@pytest.mark.parametrize("text, cpus", [("0-3,^2,6", [0, 1, 3, 6]), ("1", [1]), ("", []), (None, []), ("0-1", [0, 1])])
def test_parse_cpuset(text, cpus):
    assert parse_cpuset(text) == cpus


def test_domain_xml_facts():
    xml = """<domain type='kvm'><vcpu placement='static'>2</vcpu>
      <cputune><vcpupin vcpu='0' cpuset='2'/><vcpupin vcpu='1' cpuset='3'/><emulatorpin cpuset='0-1'/></cputune>
      <numatune><memory mode='strict' nodeset='0'/></numatune><cpu mode='host-passthrough'/></domain>"""
    assert domain_xml_facts(xml) == {"domain_type": "kvm", "vcpus": 2, "vcpupin": {0: [2], 1: [3]},
                                     "emulatorpin": [0, 1], "cpu_mode": "host-passthrough",
                                     "numatune": {"mode": "strict", "nodeset": "0"}}


@pytest.mark.parametrize(
    "uri, local",
    [("qemu:///system", True), ("qemu+unix:///system?socket=/x/libvirt-sock", True),
     ("qemu+ssh://dest/system", False), ("qemu+tls://10.0.0.2/system", False)],
)
def test_is_local_uri(uri, local):
    assert is_local_uri(uri) is local


@pytest.mark.parametrize(
    "active_on, verdict",
    [(["b"], "target"), (["a"], "source"), (["a", "b"], "both"), ([], "nowhere"), (["c"], "nowhere")],
)
def test_placement_verdict(active_on, verdict):
    assert placement_verdict(active_on, "a", "b") == verdict


def _platform(**flags) -> LibvirtPlatform:
    return LibvirtPlatform(kind="libvirt", hosts=[LibvirtHost(name="a", uri="qemu:///system"),
                                                  LibvirtHost(name="b", uri="qemu+ssh://b/system",
                                                              migration_uri="tcp://b:49152")],
                           flags=LibvirtMigrationFlags(**flags), bandwidth_mib_s=64)


def test_seed_flags_map_to_libvirt_bits():
    # the bank's runbook migration: virsh migrate --live --persistent --undefinesource --copy-storage-all (+ p2p, abort-on-error)
    bits = migration_flags(_platform(copy_storage_all=True))
    expected = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_NON_SHARED_DISK
                | libvirt.VIR_MIGRATE_ABORT_ON_ERROR)
    assert bits == expected
    assert migration_flags(_platform(allow_post_copy=True, live=False)) & libvirt.VIR_MIGRATE_POSTCOPY
    assert not migration_flags(_platform(live=False)) & libvirt.VIR_MIGRATE_LIVE


def test_migration_params_carry_uri_and_bandwidth():
    platform = _platform()
    params = migration_params(platform, platform.hosts[1], "banking-core-vm")
    assert params == {libvirt.VIR_MIGRATE_PARAM_DEST_NAME: "banking-core-vm",
                      libvirt.VIR_MIGRATE_PARAM_URI: "tcp://b:49152", libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 64}
    assert libvirt.VIR_MIGRATE_PARAM_URI not in migration_params(platform, platform.hosts[0], "x")


def test_module_load_order_puts_dependencies_first(tmp_path):
    def ko(name, deps):
        path = tmp_path / f"{name}.ko"
        path.write_bytes(b"\x7fELF...\x00license=GPL\x00depends=" + ",".join(deps).encode() + b"\x00name=" + name.encode())
        return path

    mods = {"virtio_net": ko("virtio_net", ["net_failover", "virtio"]), "net_failover": ko("net_failover", ["failover"]),
            "failover": ko("failover", []), "virtio": ko("virtio", ["virtio_ring"]), "virtio_ring": ko("virtio_ring", [])}
    order = load_order(("virtio_net",), mods)
    assert order[-1] == "virtio_net" and set(order) == set(mods)
    assert order.index("failover") < order.index("net_failover") and order.index("virtio_ring") < order.index("virtio")
    with pytest.raises(GuestBuildError, match="not in the kernel package"):
        load_order(("virtio_blk",), mods)


@pytest.mark.parametrize(
    "completed, postcopy, status",
    [
        ({"type": 3, "downtime": 42, "data_processed": 1, "memory_iteration": 3, "time_elapsed": 600}, False, CheckStatus.PASS),
        ({"type": 0}, True, CheckStatus.WARN),  # post-copy: libvirt keeps no completed stats on the target
        ({"type": 0}, False, CheckStatus.FAIL),
        ({}, False, CheckStatus.FAIL),
    ],
)
def test_job_stats_check(completed, postcopy, status):
    from livedrill.platforms.libvirt.adapter import job_stats_check

    check = job_stats_check(completed, postcopy, {"data_remaining": 5}, "domain vm")
    assert check.status is status
    assert check.evidence["last_running_job_stats"] == {"data_remaining": 5}


@pytest.mark.parametrize(
    "last_running, says",
    [
        ({"disk_total": 1024, "disk_processed": 1024}, "; disk 1024 of 1024 bytes mirrored (the source's last running"),
        ({"disk_total": 0, "disk_processed": 0}, None),  # shared storage: libvirt reports zeros
        ({}, None),
    ],
)
def test_job_stats_check_names_the_disk_copy_of_a_copy_storage_migration(last_running, says):
    from livedrill.platforms.libvirt.adapter import job_stats_check

    completed = {"type": 3, "downtime": 42, "data_processed": 1, "memory_iteration": 3, "time_elapsed": 600}
    message = job_stats_check(completed, False, last_running, "domain vm").message
    assert (says in message) if says else "disk" not in message


def test_the_lab_guests_xml_diskless_and_on_a_local_qcow2_disk():
    import xml.etree.ElementTree as ET

    from livedrill_lab.libvirt.config import DiskGuestConfig, LibvirtLabConfig
    from livedrill_lab.libvirt.domain import domain_xml

    config = LibvirtLabConfig()
    common = dict(kernel=Path("/k"), initrd=Path("/i"), console_log=Path("/c.log"), virt_type="qemu", host_cpus=2)
    plain = ET.fromstring(domain_xml(config, **common))
    assert plain.findtext("name") == "banking-core-vm" and plain.find("devices/disk") is None
    assert plain.findtext("os/cmdline").endswith("livedrill.ip=10.99.0.10")
    disk = ET.fromstring(domain_xml(config, **common, disk_guest=DiskGuestConfig()))
    assert (disk.findtext("name"), disk.findtext("memory"), disk.find("devices/interface/mac").get("address")) == \
        ("banking-core-disk-vm", "128", "52:54:00:99:00:11")
    [device] = disk.findall("devices/disk")
    assert device.find("driver").attrib == {"name": "qemu", "type": "qcow2", "cache": "unsafe"}
    assert device.find("source").get("file") == "/var/lib/libvirt/images/banking-core-disk-vm.qcow2"
    assert device.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert disk.findtext("os/cmdline").endswith(
        "livedrill.ip=10.99.0.11 livedrill.journal=/dev/vda livedrill.journal_mib=32")
