"""Settings and the public record of the two-host libvirt/QEMU lab.

Every wait the lab does is bounded by a budget from `LibvirtLabConfig`, never a literal in the code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabTimeouts(_Record):
    apt_s: float = Field(300.0, gt=0, description="apt-get download of the guest kernel package")
    build_s: float = Field(120.0, gt=0, description="each build command (gcc, dpkg-deb, cpio)")
    command_s: float = Field(15.0, gt=0, description="each ip/mount/useradd command")
    daemon_start_s: float = Field(30.0, gt=0, description="libvirtd answering on its socket")
    guest_boot_s: float = Field(90.0, gt=0, description="guest ledger answering /healthz after domain start (TCG)")
    libvirt_call_s: float = Field(30.0, gt=0, description="one libvirt API call made by the lab itself")
    stop_s: float = Field(15.0, gt=0, description="a process exiting after SIGTERM before it gets SIGKILL")


class DiskGuestConfig(_Record):
    """The lab's second guest, the seed's case: no shared storage. Each host has its own qcow2 file at the same
    path (in the host's private /var/lib/libvirt), so the guest migrates with copy-storage (an NBD drive-mirror).
    Its ledger writes every posting to the disk's first `journal_mib` MiB, bypassing the guest's page cache, and
    reads them back on request, so a posting acknowledged on one host is found on the other host's disk."""

    domain_name: str = "banking-core-disk-vm"
    memory_mib: int = Field(128, ge=128)
    guest_address: str = "10.99.0.11"
    guest_mac: str = "52:54:00:99:00:11"
    disk_mib: int = Field(128, ge=16, description="the disk's virtual size")
    journal_mib: int = Field(32, ge=1, description="the ledger's journal, at the start of the disk (1 KiB a posting)")
    # Random bytes after the journal: the copy carries real data (QEMU's mirror skips unallocated, zero clusters).
    filled_mib: int = Field(64, ge=0)
    image_dir: Path = Path("/var/lib/libvirt/images")  # inside each host's mount namespace: one file per host


class LibvirtLabConfig(_Record):
    domain_name: str = "banking-core-vm"
    guest_memory_mib: int = Field(256, ge=128)
    guest_vcpus: int = Field(1, ge=1)
    host_names: tuple[str, str] = ("host-a", "host-b")
    bridge: str = "ldbr0"
    # Addresses exist only inside the lab's own network namespace; nothing is routed to the outside.
    host_addresses: tuple[str, str] = ("10.99.0.1", "10.99.0.2")
    guest_address: str = "10.99.0.10"
    prefix_len: int = 24
    guest_mac: str = "52:54:00:99:00:10"
    ledger_port: int = 8080
    # Each daemon gets its own QEMU migration port range: both share one network namespace.
    migration_port_ranges: tuple[tuple[int, int], tuple[int, int]] = ((49152, 49183), (49184, 49215))
    disk_guest: DiskGuestConfig | None = Field(default_factory=DiskGuestConfig)
    keepalive_interval_s: int = Field(5, gt=0)
    keepalive_count: int = Field(5, gt=0)
    timeouts: LabTimeouts = Field(default_factory=LabTimeouts)


class LabHost(_Record):
    name: str
    uri: str  # qemu+unix:///system?socket=... usable from any network namespace
    migration_uri: str  # tcp://ADDR inside the lab network namespace
    socket: Path
    root: Path  # the host's private /etc, /run, /var/lib, /var/log, /var/cache for libvirt
    daemon_pid: int  # tini -s (its child is libvirtd)
    host_uuid: str


class LabGuest(_Record):
    """One more guest of a running lab (the first one's fields stay on LibvirtLabInfo itself)."""

    domain: str
    guest_address: str
    ledger_url: str
    forwarder_pid: int
    disk_image: Path  # the same path on every host, each host's own file
    drill_spec: Path


class LibvirtLabInfo(_Record):
    """What a running lab is: written to `<state_dir>/lab.json`, read back by `stop_libvirt_lab`."""

    state_dir: Path
    netns: str
    bridge: str
    hosts: list[LabHost]
    domain: str
    guest_address: str
    ledger_url: str  # http://127.0.0.1:PORT, forwarded into the lab namespace to the guest's ledger
    forwarder_pid: int
    accelerator: str  # "tcg" or "kvm": what the guest really runs with
    accelerator_reason: str
    drill_spec: Path  # drills/lab-libvirt.yaml rendered with this lab's sockets and ledger URL
    disk_guest: LabGuest | None = None  # the copy-storage guest (LibvirtLabConfig.disk_guest)
    kernel_version: str
    setup_s: float
