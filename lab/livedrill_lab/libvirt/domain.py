"""The lab guest's libvirt domain XML (pure: settings in, XML out)."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

from livedrill_lab.libvirt.config import DiskGuestConfig, LibvirtLabConfig

JOURNAL_DEVICE = "/dev/vda"  # the disk guest's one disk, virtio-blk


def domain_xml(
    config: LibvirtLabConfig,
    *,
    kernel: Path,
    initrd: Path,
    console_log: Path,
    virt_type: str,
    host_cpus: int,
    disk_guest: DiskGuestConfig | None = None,
) -> str:
    """A guest booting kernel+initramfs, with one virtio NIC on the lab bridge: diskless (the first guest), or
    with `disk_guest`, that guest and its local qcow2 disk, which the ledger journals to.

    virt_type is "kvm" only where the host really has hardware virtualization, else "qemu" (TCG).
    vCPUs are pinned one-to-one from the last host CPU downward and the emulator to all host CPUs,
    so the compliance check has real pinning to verify. The guest's init reads its address (and journal device)
    from the kernel command line, so both guests boot the same initramfs.
    """
    name, memory_mib, mac = config.domain_name, config.guest_memory_mib, config.guest_mac
    cmdline, disk = f"livedrill.ip={config.guest_address}", ""
    if disk_guest is not None:
        name, memory_mib, mac = disk_guest.domain_name, disk_guest.memory_mib, disk_guest.guest_mac
        cmdline = (f"livedrill.ip={disk_guest.guest_address} livedrill.journal={JOURNAL_DEVICE} "
                   f"livedrill.journal_mib={disk_guest.journal_mib}")
        # cache='unsafe': the guest's flushes stop at QEMU, so a posting costs no fsync on the lab machine's disk
        # (what the drill measures is the migration, not this machine's storage); every write still reaches the
        # qcow2 file, which is what the copy-storage mirror carries.
        disk = f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe'/>
      <source file={quoteattr(str(disk_image_path(disk_guest)))}/>
      <target dev='{Path(JOURNAL_DEVICE).name}' bus='virtio'/>
    </disk>"""
    vcpupins = "\n".join(
        f"    <vcpupin vcpu='{i}' cpuset='{(host_cpus - 1 - i) % host_cpus}'/>" for i in range(config.guest_vcpus)
    )
    # Under TCG the model is kvm64 (GenuineIntel), not QEMU's default qemu64 (AuthenticAMD family 15 model 107):
    # for that one the guest kernel flags AMD erratum 400 and idles in amd_e400_idle, switching its local timer
    # to broadcast in C1E, where a TCG guest on a loaded host was once seen to stop answering (its console's last
    # words a stack trace in amd_e400_idle).
    cpu = (
        "<cpu mode='host-passthrough' check='none'/>"
        if virt_type == "kvm"
        else "<cpu mode='custom' match='exact' check='none'><model fallback='forbid'>kvm64</model></cpu>"
    )
    return f"""<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu placement='static'>{config.guest_vcpus}</vcpu>
  <cputune>
{vcpupins}
    <emulatorpin cpuset='0-{host_cpus - 1}'/>
  </cputune>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 {cmdline}</cmdline>
  </os>
  {cpu}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>{disk}
    <interface type='bridge'>
      <mac address='{mac}'/>
      <source bridge='{config.bridge}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path={quoteattr(str(console_log))} append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={quoteattr(str(console_log))} append='on'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def disk_image_path(disk_guest: DiskGuestConfig) -> Path:
    """The disk's path as each host's QEMU sees it (each host's /var/lib/libvirt is its own)."""
    return disk_guest.image_dir / f"{disk_guest.domain_name}.qcow2"
