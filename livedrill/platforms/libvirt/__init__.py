"""libvirt/KVM platform: the only package that imports `libvirt` (import-linter contract in pyproject.toml).

A package rather than one module so each part stays small: connection.py (bounded calls, error classes),
adapter.py (LibvirtAdapter), compliance.py (hardware-isolation checks). The lab's host administration
(define/start/remove domains) lives with the lab, in livedrill_lab.libvirt.admin.
"""

import libvirt

from livedrill.platforms.libvirt.adapter import LibvirtAdapter
from livedrill.platforms.libvirt.connection import LibvirtTimeouts

# libvirt prints every error to stderr as well as raising it; the drill reports errors itself, once.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

__all__ = ["LibvirtAdapter", "LibvirtTimeouts"]
