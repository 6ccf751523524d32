"""The real two-host libvirt/QEMU lab: `start_libvirt_lab(state_dir)` / `stop_libvirt_lab(state_dir)`."""

from livedrill_lab.libvirt.config import LabHost, LibvirtLabConfig, LibvirtLabInfo
from livedrill_lab.libvirt.manager import (
    LabError,
    lab_processes_alive,
    libvirt_lab_status,
    missing_requirements,
    read_lab_info,
    start_libvirt_lab,
    stop_libvirt_lab,
)

__all__ = [
    "LabError",
    "LabHost",
    "LibvirtLabConfig",
    "LibvirtLabInfo",
    "lab_processes_alive",
    "libvirt_lab_status",
    "missing_requirements",
    "read_lab_info",
    "start_libvirt_lab",
    "stop_libvirt_lab",
]
